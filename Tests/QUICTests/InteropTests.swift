import Foundation
import NIOCore
import Testing
@testable import QUIC

/// Finds a peer program; under `CI=true` a missing peer is a failure, elsewhere the test is skipped.
func peerExecutable(_ name: String, in directories: [String] = ["/usr/bin", "/usr/sbin", "/usr/local/bin"]) -> String? {
    for directory in directories {
        let path = "\(directory)/\(name)"
        if FileManager.default.isExecutableFile(atPath: path) { return path }
    }
    if ProcessInfo.processInfo.environment["CI"] == "true" {
        Issue.record("\(name) is not installed; CI must provide it (apt: ngtcp2-server / ngtcp2-client)")
    }
    return nil
}

/// A child process that is killed when the test ends.
final class PeerProcess: @unchecked Sendable {
    let process = Process()
    let outputFile: URL

    init(_ executable: String, _ arguments: [String], directory: URL) throws {
        outputFile = directory.appendingPathComponent("peer-\(UUID().uuidString).log")
        _ = FileManager.default.createFile(atPath: outputFile.path, contents: nil)
        let handle = try FileHandle(forWritingTo: outputFile)
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
    }

    var output: String { (try? String(contentsOf: outputFile, encoding: .utf8)) ?? "" }

    /// Terminates the peer and reaps it. (Not `Process.waitUntilExit()`: under `swift test` it
    /// can spin forever waiting for a SIGCHLD it never sees.)
    func stop() {
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

@Suite("Interop with ngtcp2's gtlsserver")
struct InteropTests {
    @Test("our client completes a TLS 1.3 handshake with gtlsserver (ALPN h3) and closes cleanly")
    func handshakeWithGtlsserver() async throws {
        guard let gtlsserver = peerExecutable("gtlsserver") else { return }
        let pki = TestPKI.shared
        let port = try freeUDPPort()
        // Without -q the server logs every frame it receives: the log shows our CONNECTION_CLOSE.
        let server = try PeerProcess(gtlsserver, ["--htdocs=\(pki.directory.path)", "127.0.0.1", "\(port)",
                                                  pki.keyFile, pki.certFile], directory: pki.directory)
        defer { server.stop() }
        var configuration = clientConfiguration(alpn: ["h3"])
        configuration.handshakeTimeout = .seconds(5)
        let finalConfiguration = configuration
        try await withTimeout(20) {
            var lastError: (any Error)?
            for _ in 0..<20 {
                do {
                    let connection = try await QUICClient.connect(host: "127.0.0.1", port: port, configuration: finalConfiguration)
                    #expect(connection.negotiatedApplicationProtocol == "h3")
                    // Let the handshake be confirmed (HANDSHAKE_DONE) so the close goes in a 1-RTT packet.
                    try await Task.sleep(for: .milliseconds(200))
                    // H3_NO_ERROR (0x100): the clean close of an HTTP/3 connection.
                    await connection.close(applicationError: 0x100)
                    #expect(await connection.waitUntilClosed() == .applicationClosed(code: 0x100, reason: "", remote: false))
                    return
                } catch QUICError.connectionRefused {
                    lastError = QUICError.connectionRefused("gtlsserver not up yet")
                    try await Task.sleep(for: .milliseconds(100))  // the server is still starting
                }
            }
            throw lastError ?? QUICError.connectionClosed
        }
        try await Task.sleep(for: .milliseconds(300))
        let log = server.output
        let closeLines = log.split(separator: "\n").filter { $0.contains("frm rx") && $0.contains("CONNECTION_CLOSE(0x1d)") }
        #expect(!closeLines.isEmpty, "gtlsserver saw no application CONNECTION_CLOSE: \(log.suffix(1500))")
        #expect(closeLines.contains { $0.contains("0x100") || $0.contains("H3_NO_ERROR") }, "\(closeLines)")
    }
}
