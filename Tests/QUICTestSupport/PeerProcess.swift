import Foundation

/// Finds a peer program in the usual directories.
public func findExecutable(_ name: String, in directories: [String] = ["/usr/bin", "/usr/sbin", "/usr/local/bin"]) -> String? {
    for directory in directories {
        let path = "\(directory)/\(name)"
        if FileManager.default.isExecutableFile(atPath: path) { return path }
    }
    return nil
}

/// Whether tests run in CI, where a missing peer is a failure rather than a skip.
public var runningInCI: Bool { ProcessInfo.processInfo.environment["CI"] == "true" }

/// A child process that is killed when the test ends.
public final class PeerProcess: @unchecked Sendable {
    public let process = Process()
    public let outputFile: URL

    /// Where standard output went when it is kept apart from standard error (else `nil`).
    public let standardOutputFile: URL?

    /// Starts a process. Standard error (and standard output, unless `separateStandardOutput`)
    /// go to ``outputFile`` in `directory`.
    public init(_ executable: String, _ arguments: [String], directory: URL, separateStandardOutput: Bool = false,
                standardInput: String? = nil, workingDirectory: URL? = nil, environment: [String: String]? = nil) throws {
        let id = UUID().uuidString
        outputFile = directory.appendingPathComponent("peer-\(id).log")
        _ = FileManager.default.createFile(atPath: outputFile.path, contents: nil)
        let handle = try FileHandle(forWritingTo: outputFile)
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardError = handle
        if separateStandardOutput {
            let stdoutFile = directory.appendingPathComponent("peer-\(id).stdout")
            _ = FileManager.default.createFile(atPath: stdoutFile.path, contents: nil)
            process.standardOutput = try FileHandle(forWritingTo: stdoutFile)
            standardOutputFile = stdoutFile
        } else {
            process.standardOutput = handle
            standardOutputFile = nil
        }
        if let standardInput {
            guard let input = FileHandle(forReadingAtPath: standardInput) else {
                throw CocoaError(.fileReadNoSuchFile)
            }
            process.standardInput = input
        } else {
            process.standardInput = FileHandle.nullDevice
        }
        if let workingDirectory { process.currentDirectoryURL = workingDirectory }
        if let environment {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        }
        try process.run()
    }

    /// The bytes written to standard output, when kept apart.
    public var standardOutput: Data {
        standardOutputFile.flatMap { FileManager.default.contents(atPath: $0.path) } ?? Data()
    }

    /// Waits for the peer to exit by itself; returns its exit status, or `nil` (after killing
    /// it) if it is still running after `seconds`.
    ///
    /// Async, so that waiting never blocks a thread of the (small) cooperative pool that the
    /// server under test needs.
    public func waitForExit(seconds: Double) async -> Int32? {
        let pid = process.processIdentifier
        var status: Int32 = 0
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            let rv = waitpid(pid, &status, WNOHANG)
            if rv == pid { return (status >> 8) & 0xff }
            if rv == -1 {
                // Foundation reaped it first; its bookkeeping may lag the reaping by a moment.
                while process.isRunning && Date() < deadline {
                    try? await Task.sleep(for: .milliseconds(5))
                }
                return process.isRunning ? nil : process.terminationStatus
            }
            try? await Task.sleep(for: .milliseconds(20))
        }
        stop()
        return nil
    }

    public var output: String { (try? String(contentsOf: outputFile, encoding: .utf8)) ?? "" }

    /// Terminates the peer and reaps it. (Not `Process.waitUntilExit()`: under `swift test` it
    /// can spin forever waiting for a SIGCHLD it never sees.)
    public func stop() {
        let pid = process.processIdentifier
        guard pid > 0 else { return }
        kill(pid, SIGTERM)
        var status: Int32 = 0
        for attempt in 0..<200 {
            let rv = waitpid(pid, &status, WNOHANG)
            if rv == pid || rv == -1 { return }  // reaped (here or by Foundation)
            if attempt == 100 { kill(pid, SIGKILL) }
            usleep(10_000)
        }
    }

    deinit { stop() }
}

