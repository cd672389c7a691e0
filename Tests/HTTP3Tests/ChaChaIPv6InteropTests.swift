import Foundation
import HTTP3
import HTTPAPI
import HTTPTypes
import NIOCore
import QUIC
import QUICTestSupport
import Testing
import HTTPTestSupport

@Suite("HTTP/3 with ChaCha20 only, over IPv4 and IPv6, against gtlsserver")
struct ChaChaIPv6InteropTests {
    /// A 3 MB file for gtlsserver to serve, in a directory of its own.
    static let file: (directory: URL, hash: [UInt8], size: Int) = {
        let directory = TestPKI.shared.directory.appendingPathComponent("htdocs-chacha")
        try? FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let size = 3 << 20
        var generator = PatternGenerator(seed: 41)
        let buffer = generator.next(size)
        _ = FileManager.default.createFile(atPath: directory.appendingPathComponent("file-3m").path,
                                           contents: Data(buffer.readableBytesView))
        return (directory, sha256(buffer), size)
    }()

    @Test("GET a 3 MB file from gtlsserver, byte-exact, negotiating ChaCha20-Poly1305", arguments: ["127.0.0.1", "::1"])
    func getWithChaCha(_ host: String) async throws {
        guard let gtlsserver = requirePeer("gtlsserver") else { return }
        let pki = TestPKI.shared
        let file = Self.file
        let port = try freeUDPPort()
        let server = try PeerProcess(gtlsserver, ["-q", "--htdocs=\(file.directory.path)", host, "\(port)",
                                                  pki.keyFile, pki.certFile], directory: pki.directory)
        defer { server.stop() }
        var tls = pki.clientTLS(alpn: ["h3"])
        tls.cipherSuites = .chacha20Poly1305
        let client = HTTP3Transport(configuration: .init(tls: tls, resolve: ["localhost:\(port)": host]))
        try await withTimeout(60) {
            let request = HTTPRequest(method: .get, scheme: "https", authority: "localhost:\(port)", path: "/file-3m")
            let response = try await roundTripWhenUp(client, request)
            #expect(response.head.status == .ok)
            let (hash, size) = try await hashBody(response.body)
            #expect(size == file.size)
            #expect(hash == file.hash, "the body is not byte-exact")
            let connection = response.metadata.connection
            let parameters = connection?.tlsParameters ?? ""
            #expect(parameters.contains("(CHACHA20-POLY1305)") && parameters.contains("TLS1.3"), "\(parameters)")
            let remote = connection?.remoteAddress ?? ""
            #expect(remote == (host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"), "remote \(remote)")
        }
        await client.shutdown()
    }
}
