import Foundation
import NIOCore
import Testing
@testable import QUIC
import QUICTestSupport

/// Finds a peer; under `CI=true` a missing peer fails the test, elsewhere the test is skipped.
func peerExecutable(_ name: String) -> String? {
    if let path = findExecutable(name) { return path }
    if runningInCI { Issue.record("\(name) is not installed; CI must provide it") }
    return nil
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
        try await withTimeout(60) {
            var lastError: (any Error)?
            for _ in 0..<300 {  // gtlsserver may take a while to start on a loaded machine (up to 30 s)
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
        // gtlsserver logs the close when it reads it: wait for that line (bounded), not 300 ms.
        for _ in 0..<1000 where !server.output.contains("CONNECTION_CLOSE(0x1d)") {
            try await Task.sleep(for: .milliseconds(20))
        }
        let log = server.output
        let closeLines = log.split(separator: "\n").filter { $0.contains("frm rx") && $0.contains("CONNECTION_CLOSE(0x1d)") }
        #expect(!closeLines.isEmpty, "gtlsserver saw no application CONNECTION_CLOSE: \(log.suffix(1500))")
        #expect(closeLines.contains { $0.contains("0x100") || $0.contains("H3_NO_ERROR") }, "\(closeLines)")
    }
}
