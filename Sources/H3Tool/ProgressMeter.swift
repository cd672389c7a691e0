import Foundation

/// A one-line progress meter on stderr (size, percent, speed, ETA), redrawn in place.
/// Shown only when stderr is a terminal, `-s` is not given and the body is not going to the
/// terminal, as curl does.
/// `@unchecked Sendable`: every mutable member is read and written under `lock`.
final class ProgressMeter: @unchecked Sendable {
    private let lock = NSLock()
    private var received: Int64 = 0
    private var total: Int64?
    private let started = ContinuousClock.now
    private var task: Task<Void, Never>?
    private var drew = false

    /// Starts redrawing twice a second.
    func start() {
        task = Task { [weak self] in
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(500))
                guard let self, !Task.isCancelled else { return }
                self.draw()
            }
        }
    }

    func setTotal(_ total: Int64?) {
        lock.withLock { self.total = total }
    }

    func add(_ bytes: Int) {
        lock.withLock { received += Int64(bytes) }
    }

    /// Draws the final state and moves to a new line.
    func finish() {
        task?.cancel()
        draw()
        if drew { Console.write("\n", to: 2) }
    }

    private func draw() {
        let (received, total) = lock.withLock { (self.received, self.total) }
        let elapsed = ContinuousClock.now - started
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        Console.write("\r" + ProgressMeter.line(received: received, total: total, elapsed: seconds), to: 2)
        drew = true
    }

    /// The meter's text for a state (pure, for tests).
    static func line(received: Int64, total: Int64?, elapsed: Double) -> String {
        let speed = elapsed > 0 ? Double(received) / elapsed : 0
        var parts: [String] = []
        if let total, total > 0 {
            let percent = min(100, Double(received) * 100 / Double(total))
            parts.append(String(format: "%5.1f%%", percent))
            parts.append("\(size(received)) of \(size(total))")
            parts.append("\(size(Int64(speed)))/s")
            let left = speed > 0 ? Double(total - received) / speed : -1
            parts.append("ETA " + (left >= 0 ? clock(left) : "--:--:--"))
        } else {
            parts.append(size(received))
            parts.append("\(size(Int64(speed)))/s")
            parts.append(clock(elapsed))
        }
        return parts.joined(separator: "  ")
    }

    /// Sizes as curl prints them: bytes, then k, M, G with one decimal (powers of 1024).
    static func size(_ bytes: Int64) -> String {
        let units = ["k", "M", "G", "T"]
        var value = Double(bytes)
        if value < 1024 { return "\(bytes) B" }
        var unit = -1
        while value >= 1024 && unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        return String(format: "%.1f", value) + " " + units[unit] + "B"
    }

    static func clock(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        return String(format: "%d:%02d:%02d", s / 3600, (s / 60) % 60, s % 60)
    }
}
