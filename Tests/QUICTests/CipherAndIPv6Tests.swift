import Foundation
import NIOCore
import QUIC
import QUICTestSupport
import Testing

/// ChaCha20-Poly1305-only handshakes and IPv6 (::1) paths, against our own server and ngtcp2's
/// gtlsserver. The cipher is read back from GnuTLS (`gnutls_session_get_desc`) on both sides.
@Suite("ChaCha20 and IPv6")
struct CipherAndIPv6Tests {
    struct Case: CustomTestStringConvertible, Sendable {
        var host: String
        var suites: QUICTLSConfiguration.CipherSuites
        /// The cipher GnuTLS must report.
        var cipher: String
        var testDescription: String { "\(host), \(cipher)" }
    }

    static let cases = [
        Case(host: "127.0.0.1", suites: .chacha20Poly1305, cipher: "CHACHA20-POLY1305"),
        Case(host: "::1", suites: .chacha20Poly1305, cipher: "CHACHA20-POLY1305"),
        // A control: the same check must see AES when AES is what was offered.
        Case(host: "::1", suites: .aes128GCM, cipher: "AES-128-GCM"),
    ]

    @Test("handshake and a 4 MB download, byte-exact, with the offered cipher on the expected address family",
          arguments: cases)
    func ownServer(_ test: Case) async throws {
        let server = try await DownloadServer(host: test.host, configuration: serverConfiguration())
        let total = 4 << 20
        try await withTimeout(60) {
            let expected = await PatternGenerator.hash(seed: 31, total: total)
            let connection = try await QUICClient.connect(host: test.host, port: server.port, configuration: clientConfiguration {
                $0.tls.cipherSuites = test.suites
            })
            let serverSide = try await server.firstConnection()
            let result = try await download(connection, total: total, seed: 31)
            #expect(result.received == total)
            #expect(result.hash == expected, "the download is not byte-exact")

            let clientCipher = try await connection.tlsParameters() ?? ""
            let serverCipher = try await serverSide.tlsParameters() ?? ""
            #expect(clientCipher.contains("(\(test.cipher))") && clientCipher.contains("TLS1.3"), "client: \(clientCipher)")
            #expect(serverCipher.contains("(\(test.cipher))"), "server: \(serverCipher)")

            let local = try await connection.localAddress
            let remote = try await serverSide.currentRemoteAddress()
            let family: NIOBSDSocket.ProtocolFamily = test.host.contains(":") ? .inet6 : .inet
            #expect(local.protocol == family && remote.protocol == family)
            #expect(connection.remoteAddress.ipAddress == test.host)
            #expect(remote.ipAddress == local.ipAddress && remote.port == local.port)
            await connection.close()
        }
        await server.close()
    }

    @Test("ChaCha20-only handshake with ngtcp2's gtlsserver, over IPv4 and IPv6", arguments: ["127.0.0.1", "::1"])
    func gtlsserver(_ host: String) async throws {
        guard let gtlsserver = peerExecutable("gtlsserver") else { return }
        let pki = TestPKI.shared
        let port = try freeUDPPort()
        let server = try PeerProcess(gtlsserver, ["-q", "--htdocs=\(pki.directory.path)", host, "\(port)",
                                                  pki.keyFile, pki.certFile], directory: pki.directory)
        defer { server.stop() }
        var configuration = clientConfiguration(alpn: ["h3"]) { $0.tls.cipherSuites = .chacha20Poly1305 }
        configuration.handshakeTimeout = .seconds(5)
        let finalConfiguration = configuration
        try await withTimeout(30) {
            var connection: QUICConnection?
            for _ in 0..<30 where connection == nil {
                do {
                    connection = try await QUICClient.connect(host: host, port: port, configuration: finalConfiguration)
                } catch QUICError.connectionRefused {
                    try await Task.sleep(for: .milliseconds(100))  // the server is still starting
                }
            }
            let client = try #require(connection, "gtlsserver did not come up: \(server.output.suffix(500))")
            #expect(client.negotiatedApplicationProtocol == "h3")
            let parameters = try await client.tlsParameters() ?? ""
            #expect(parameters.contains("(CHACHA20-POLY1305)") && parameters.contains("TLS1.3"), "\(parameters)")
            #expect(client.remoteAddress.ipAddress == host && client.remoteAddress.port == port)
            #expect(try await client.localAddress.protocol == (host.contains(":") ? .inet6 : .inet))
            await client.close(applicationError: 0x100)
            #expect(await client.waitUntilClosed() == .applicationClosed(code: 0x100, reason: "", remote: false))
        }
    }
}
