import Foundation
import HTTP2
import HTTP3
import HTTPAPI
import HTTPServer
import HTTPTypes
import NIOCore
import QUIC
import QUICTestSupport
import Testing

/// Certificates chosen by SNI on both transports of one server (HTTP/3 over QUIC with GnuTLS,
/// HTTP/2 over TCP with BoringSSL), replaced while it runs.
@Suite("Certificates by SNI on HTTP/3 and HTTP/2")
struct SNICertificateTests {
    let pki = TestPKI.shared

    struct Leaves {
        let alpha: GeneratedCertificate
        let beta: GeneratedCertificate
        let alphaRenewed: GeneratedCertificate

        init(ca: GeneratedCertificate) throws {
            alpha = try CertificateGenerator.makeLeaf(.init(commonName: "alpha", dnsNames: ["alpha.test"]), issuer: ca)
            beta = try CertificateGenerator.makeLeaf(.init(commonName: "beta", dnsNames: ["*.beta.test"]), issuer: ca)
            alphaRenewed = try CertificateGenerator.makeLeaf(.init(commonName: "alpha renewed", dnsNames: ["alpha.test"]),
                                                             issuer: ca)
        }
    }

    static func entry(_ leaf: GeneratedCertificate) -> TLSCertificateSet.Entry {
        .init(certificateChain: .pem(leaf.certificatePEM), privateKey: .pem(leaf.privateKeyPEM))
    }

    /// Answers every request with "ok".
    struct OK: HTTPHandler {
        func handle(_ request: HTTPRequest, body: HTTPBody, context: HTTPRequestContext,
                    response: HTTPResponseWriter) async throws {
            try await response.respond(HTTPResponse(status: .ok), body: ByteBuffer(string: "ok"))
        }
    }

    /// The subject of the certificate a client sees for `host`, over HTTP/3 and over HTTP/2
    /// (fresh transports: a fresh handshake each), or the errors they got.
    func subjects(for host: String, port: Int) async -> (http3: Result<String, any Error>, http2: Result<String, any Error>) {
        let resolve = ["\(host):\(port)": "127.0.0.1"]
        let http3 = HTTP3Transport(configuration: .init(tls: pki.clientTLS(alpn: ["h3"], serverName: nil), resolve: resolve))
        let http2 = HTTP2Transport(configuration: .init(tls: pki.clientTLS(alpn: ["h2"], serverName: nil), resolve: resolve))
        let request = HTTPRequest(method: .get, scheme: "https", authority: "\(host):\(port)", path: "/")
        func subject(_ transport: some HTTPRoundTripper) async -> Result<String, any Error> {
            do {
                return .success(try await withTimeout(30) {
                    let response = try await transport.roundTrip(request)
                    _ = try await response.body.collect(upTo: 100)
                    return response.metadata.connection?.peerCertificateSubject ?? "none"
                })
            } catch {
                return .failure(error)
            }
        }
        let result = (await subject(http3), await subject(http2))
        await http3.shutdown()
        await http2.shutdown()
        return result
    }

    func bind(_ store: TLSCertificateStore) async throws -> HTTPServer {
        var tls = QUICTLSConfiguration.makeServerConfiguration(certificates: store, applicationProtocols: ["h3"])
        tls.trustRoots = .certificates(.file(pki.caFile))
        var configuration = HTTPServerConfiguration(host: "127.0.0.1", port: 0, tls: tls)
        configuration.http2.gracefulShutdownTimeout = .seconds(2)
        configuration.http3.gracefulShutdownTimeout = .seconds(2)
        return try await HTTPServer.bind(configuration: configuration, handler: OK())
    }

    @Test("each name gets its own certificate on both transports; unknown names get the default; a replaced set serves new handshakes")
    func chosenByName() async throws {
        let leaves = try Leaves(ca: pki.ca)
        let store = try TLSCertificateStore(TLSCertificateSet(entries: [Self.entry(leaves.alpha), Self.entry(leaves.beta)]))
        let server = try await bind(store)
        do {
            for (host, expected) in [("alpha.test", "CN=alpha"), ("x.beta.test", "CN=beta"), ("ALPHA.test", "CN=alpha")] {
                let seen = await subjects(for: host, port: server.port)
                #expect((try? seen.http3.get()) == expected, "HTTP/3 \(host): \(seen.http3)")
                #expect((try? seen.http2.get()) == expected, "HTTP/2 \(host): \(seen.http2)")
            }
            // localhost is in no entry: the default (alpha) answers, and the client's name check fails.
            let unknown = await subjects(for: "localhost", port: server.port)
            #expect("\(unknown.http3)".contains("hostname mismatch"), "HTTP/3: \(unknown.http3)")
            #expect((try? unknown.http2.get()) == nil, "HTTP/2: \(unknown.http2)")

            try store.replace(with: TLSCertificateSet(entries: [Self.entry(leaves.alphaRenewed), Self.entry(leaves.beta)]))
            let renewed = await subjects(for: "alpha.test", port: server.port)
            #expect((try? renewed.http3.get()) == "CN=alpha renewed", "HTTP/3: \(renewed.http3)")
            #expect((try? renewed.http2.get()) == "CN=alpha renewed", "HTTP/2: \(renewed.http2)")
        } catch {
            await server.shutdown()
            throw error
        }
        await server.shutdown()
    }

    @Test("without a default, a name no certificate serves is refused with unrecognized_name on both transports")
    func unrecognizedName() async throws {
        let leaves = try Leaves(ca: pki.ca)
        let store = try TLSCertificateStore(TLSCertificateSet(entries: [Self.entry(leaves.alpha)], defaultIndex: nil))
        let server = try await bind(store)
        let refused = await subjects(for: "localhost", port: server.port)
        let served = await subjects(for: "alpha.test", port: server.port)
        await server.shutdown()
        guard case .failure(let quicError) = refused.http3 else {
            Issue.record("HTTP/3 was served: \(refused.http3)")
            return
        }
        #expect("\(quicError)".contains("unrecognized_name"), "HTTP/3: \(quicError)")
        guard case .failure(let tcpError) = refused.http2 else {
            Issue.record("HTTP/2 was served: \(refused.http2)")
            return
        }
        #expect("\(tcpError)".uppercased().contains("UNRECOGNIZED_NAME"), "HTTP/2: \(tcpError)")
        #expect((try? served.http3.get()) == "CN=alpha")
        #expect((try? served.http2.get()) == "CN=alpha")
    }

    @Test("a refused replacement (a key of another certificate) leaves both transports serving the previous set")
    func bindRefusesUnusable() async throws {
        let leaves = try Leaves(ca: pki.ca)
        let store = try TLSCertificateStore(TLSCertificateSet(entries: [Self.entry(leaves.alpha)]))
        let server = try await bind(store)
        // The key of another certificate: both GnuTLS and BoringSSL refuse the pair.
        let mismatched = TLSCertificateSet.Entry(certificateChain: .pem(leaves.beta.certificatePEM),
                                                 privateKey: .pem(leaves.alpha.privateKeyPEM))
        #expect(throws: QUICError.self) { try store.replace(with: TLSCertificateSet(entries: [mismatched])) }
        let still = await subjects(for: "alpha.test", port: server.port)
        await server.shutdown()
        #expect((try? still.http3.get()) == "CN=alpha", "\(still.http3)")
        #expect((try? still.http2.get()) == "CN=alpha", "\(still.http2)")
    }
}
