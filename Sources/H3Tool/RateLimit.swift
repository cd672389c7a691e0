import NIOCore

/// `--limit-rate`: a transfer rate in bytes per second, parsed the way curl reads it (a number
/// with an optional K, M or G suffix, any case, in powers of 1024).
struct TransferRate: Sendable, Equatable {
    let bytesPerSecond: Int64

    init?(_ text: String) {
        var digits = Substring(text)
        var multiplier: Int64 = 1
        switch text.last?.lowercased() {
        case "k": multiplier = 1 << 10
        case "m": multiplier = 1 << 20
        case "g": multiplier = 1 << 30
        default: break
        }
        if multiplier != 1 { digits = digits.dropLast() }
        // Decimal fractions as curl allows ("1.5M"); the result is whole bytes per second.
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }),
              let value = Double(digits), value.isFinite, value > 0 else { return nil }
        let bytes = value * Double(multiplier)
        guard bytes >= 1, bytes <= Double(Int64.max / 2) else { return nil }
        bytesPerSecond = Int64(bytes)
    }

    /// A chunk size for reading an upload at this rate: about a tenth of a second of data,
    /// between 1 KiB and 256 KiB, so that the pace is even rather than bursty.
    var uploadChunkSize: Int {
        Int(Swift.max(1 << 10, Swift.min(Int64(256 << 10), bytesPerSecond / 10)))
    }
}

/// Paces one direction of a transfer: after each chunk, waits until the bytes counted so far
/// are no ahead of the rate measured from the first chunk. A slower peer is never hurried.
struct RatePacer: Sendable {
    let rate: TransferRate
    private var started: ContinuousClock.Instant?
    private var bytes: Int64 = 0

    init(_ rate: TransferRate) { self.rate = rate }

    /// Counts `count` bytes and sleeps as long as the transfer is ahead of the rate.
    mutating func consumed(_ count: Int) async throws {
        let now = ContinuousClock.now
        let start = started ?? now
        started = start
        bytes += Int64(count)
        let due = start + .nanoseconds(Int64(Double(bytes) / Double(rate.bytesPerSecond) * 1e9))
        if due > now { try await Task.sleep(until: due, clock: .continuous) }
    }
}

/// An upload body's chunks, paced by `--limit-rate`.
struct RateLimitedChunks<Base: AsyncSequence & Sendable>: AsyncSequence, Sendable where Base.Element == ByteBuffer {
    typealias Element = ByteBuffer
    let base: Base
    let rate: TransferRate

    struct AsyncIterator: AsyncIteratorProtocol {
        var base: Base.AsyncIterator
        var pacer: RatePacer
        mutating func next() async throws -> ByteBuffer? {
            guard let chunk = try await base.next() else { return nil }
            try await pacer.consumed(chunk.readableBytes)
            return chunk
        }
    }

    func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(base: base.makeAsyncIterator(), pacer: RatePacer(rate))
    }
}

/// An inline body (`-d`) cut into chunks, so that `--limit-rate` can pace it.
struct InlineChunks: AsyncSequence, Sendable {
    typealias Element = ByteBuffer
    let bytes: [UInt8]
    let chunkSize: Int

    struct AsyncIterator: AsyncIteratorProtocol {
        let bytes: [UInt8]
        let chunkSize: Int
        var offset = 0
        mutating func next() async -> ByteBuffer? {
            guard offset < bytes.count else { return nil }
            let end = Swift.min(bytes.count, offset + chunkSize)
            defer { offset = end }
            return ByteBuffer(bytes: bytes[offset..<end])
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(bytes: bytes, chunkSize: chunkSize) }
}
