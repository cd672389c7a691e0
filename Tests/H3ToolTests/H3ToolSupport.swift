import Foundation
import NIOCore
import QUIC
import QUICTestSupport
import Testing

/// The built `h3` binary (the test target depends on it, so `swift test` builds it first).
let h3Binary: String = {
    if let path = ProcessInfo.processInfo.environment["H3_BINARY"] { return path }
    let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    var candidates: [String] = []
    if let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
        candidates.append(URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("h3").path)
    }
    candidates.append(packageRoot.appendingPathComponent(".build/debug/h3").path)
    return candidates.first { FileManager.default.isExecutableFile(atPath: $0) } ?? candidates[0]
}()

/// What a finished `h3` process left behind.
struct ToolRun: CustomStringConvertible {
    let status: Int32?
    let stdout: Data
    let stderr: String
    var text: String { String(decoding: stdout, as: UTF8.self) }
    var description: String { "exit \(status.map(String.init) ?? "none (killed)"); stderr: \(stderr.suffix(1500))" }
}

/// Files served by `h3 serve` in these tests, and a secret outside them.
struct ServedFiles: Sendable {
    let base: URL
    let root: URL
    let random: Data
    let secret = "TOP-SECRET-OUTSIDE-THE-ROOT"

    static let shared: ServedFiles = {
        do { return try ServedFiles() } catch { preconditionFailure("cannot make the served files: \(error)") }
    }()

    private init() throws {
        base = TestPKI.shared.directory.appendingPathComponent("h3-served")
        root = base.appendingPathComponent("www")
        let manager = FileManager.default
        try? manager.removeItem(at: base)
        try manager.createDirectory(at: root.appendingPathComponent("sub"), withIntermediateDirectories: true)
        try manager.createDirectory(at: root.appendingPathComponent("site"), withIntermediateDirectories: true)
        var generator = PatternGenerator(seed: 0x5eed)
        var bytes = Data()
        for _ in 0..<16 { bytes.append(contentsOf: generator.next(256 << 10).readableBytesView) }
        random = bytes  // 4 MiB
        try random.write(to: root.appendingPathComponent("random.bin"))
        try Data("hello h3\n".utf8).write(to: root.appendingPathComponent("small.txt"))
        try Data("inner\n".utf8).write(to: root.appendingPathComponent("sub/inner.txt"))
        try Data("<p>site</p>\n".utf8).write(to: root.appendingPathComponent("site/index.html"))
        try Data(secret.utf8).write(to: base.appendingPathComponent("secret.txt"))
        try manager.createSymbolicLink(atPath: root.appendingPathComponent("escape").path,
                                       withDestinationPath: base.appendingPathComponent("secret.txt").path)
        try manager.createSymbolicLink(atPath: root.appendingPathComponent("escape-dir").path, withDestinationPath: base.path)
        try manager.createSymbolicLink(atPath: root.appendingPathComponent("alias.txt").path, withDestinationPath: "small.txt")
    }
}

/// Runs `h3` with arguments; bounded in time.
func runH3(_ arguments: [String], standardInput: String? = nil, workingDirectory: URL? = nil,
           environment: [String: String]? = nil, timeout: Double = 60) async throws -> ToolRun {
    let process = try PeerProcess(h3Binary, arguments, directory: TestPKI.shared.directory, separateStandardOutput: true,
                                  standardInput: standardInput, workingDirectory: workingDirectory, environment: environment)
    let status = await process.waitForExit(seconds: timeout)
    return ToolRun(status: status, stdout: process.standardOutput, stderr: process.output)
}

/// A running `h3 serve`, stopped when released.
final class ServeProcess: @unchecked Sendable {
    let process: PeerProcess
    let port: Int
    var url: String { "https://127.0.0.1:\(port)" }
    var log: String { process.output }

    private init(process: PeerProcess, port: Int) {
        self.process = process
        self.port = port
    }

    /// Starts `h3 serve ARGS --port 0` and waits until it prints where it listens.
    static func start(_ arguments: [String]) async throws -> ServeProcess {
        let process = try PeerProcess(h3Binary, ["serve"] + arguments + ["--port", "0"], directory: TestPKI.shared.directory)
        for _ in 0..<2400 {  // up to 60 s: a debug binary starts slowly on a loaded machine
            let log = process.output
            if let range = log.range(of: #"https://127\.0\.0\.1:[0-9]+/"#, options: .regularExpression) {
                let port = Int(log[range].dropFirst("https://127.0.0.1:".count).dropLast()) ?? 0
                return ServeProcess(process: process, port: port)
            }
            if !process.process.isRunning { break }
            try await Task.sleep(for: .milliseconds(25))
        }
        process.stop()
        throw ServeStartError(log: process.output)
    }

    /// The served directory with the test CA's certificate.
    static func files() async throws -> ServeProcess {
        let pki = TestPKI.shared
        return try await start([ServedFiles.shared.root.path, "--cert", pki.certFile, "--key", pki.keyFile])
    }

    deinit { process.stop() }
}

struct ServeStartError: Error, CustomStringConvertible {
    let log: String
    var description: String { "h3 serve did not start: \(log)" }
}

/// Client options that trust the test CA.
var trust: [String] { ["--cacert", TestPKI.shared.caFile] }

/// A peer program, or `nil` (an issue in CI, where it must be installed).
func peerProgram(_ name: String) -> String? {
    if let path = findExecutable(name) { return path }
    if runningInCI { Issue.record("\(name) is not installed; CI must provide it") }
    return nil
}

/// A fresh scratch directory for one test.
func scratchDirectory() throws -> URL {
    let url = TestPKI.shared.directory.appendingPathComponent("scratch-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// Whether two byte strings are equal. A Bool, so that a failed expectation reports sizes
/// instead of making Swift Testing diff megabytes.
func sameBytes(_ actual: Data?, _ expected: Data) -> Bool {
    guard let actual else {
        Issue.record("no data (expected \(expected.count) bytes)")
        return false
    }
    if actual != expected {
        let firstDifference = zip(actual, expected).enumerated().first { $0.element.0 != $0.element.1 }?.offset
        Issue.record("\(actual.count) bytes, expected \(expected.count); first difference at \(firstDifference.map(String.init) ?? "the end")")
        return false
    }
    return true
}
