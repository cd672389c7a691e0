import Foundation
import NIOCore
import Testing
@testable import QUIC
import QUICTestSupport

@Suite("Failure paths give clear errors")
struct FailureTests {
    private func expectConnectFailure(_ configuration: QUICConfiguration, port: Int,
                                      _ check: (QUICError) -> Bool, sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let result = try await withTimeout(20) { () -> QUICError? in
            do {
                let connection = try await QUICClient.connect(host: "127.0.0.1", port: port, configuration: configuration)
                await connection.close()
                return nil
            } catch let error as QUICError {
                return error
            }
        }
        let error = try #require(result, "the connection should have failed", sourceLocation: sourceLocation)
        #expect(check(error), "unexpected error: \(error)", sourceLocation: sourceLocation)
    }

    @Test("a certificate from an untrusted CA is rejected")
    func untrustedCertificate() async throws {
        let server = try await EchoServer(configuration: serverConfiguration())
        defer { Task { await server.close() } }
        let otherCA = try CertificateGenerator.makeCertificateAuthority(commonName: "someone else")
        var configuration = clientConfiguration()
        configuration.tls.trustRoots = .certificates(.pem(otherCA.certificatePEM))
        try await expectConnectFailure(configuration, port: server.port) { error in
            guard case .certificateVerificationFailed(let why) = error else { return false }
            return why.contains("signer not trusted") && error.description.hasPrefix("certificate verify failed")
        }
    }

    @Test("a hostname that the certificate does not name is rejected")
    func hostnameMismatch() async throws {
        let server = try await EchoServer(configuration: serverConfiguration())
        defer { Task { await server.close() } }
        try await expectConnectFailure(clientConfiguration(serverName: "wrong.example.com"), port: server.port) { error in
            error == .certificateVerificationFailed("hostname mismatch")
                && error.description == "certificate verify failed: hostname mismatch"
        }
    }

    @Test("insecure mode accepts an untrusted certificate")
    func insecureAccepts() async throws {
        let server = try await EchoServer(configuration: serverConfiguration())
        defer { Task { await server.close() } }
        var configuration = clientConfiguration(serverName: "wrong.example.com")
        configuration.tls.trustRoots = .system
        configuration.tls.certificateVerification = .insecureNoVerification
        try await withTimeout(30) { [configuration] in
            let connection = try await QUICClient.connect(host: "127.0.0.1", port: server.port, configuration: configuration)
            #expect(connection.negotiatedApplicationProtocol == "test")
            await connection.close()
        }
    }

    @Test("no common ALPN fails the handshake with no_application_protocol")
    func noCommonALPN() async throws {
        let server = try await EchoServer(configuration: serverConfiguration(alpn: ["h3"]))
        defer { Task { await server.close() } }
        try await expectConnectFailure(clientConfiguration(alpn: ["nope"]), port: server.port) { error in
            guard case .tlsHandshakeFailed(let alert, let why) = error else { return false }
            return alert == 120 && why.contains("no_application_protocol")
        }
    }

    @Test("a port nobody listens on is reported as connection refused at once")
    func notListening() async throws {
        let port = try freeUDPPort()
        // A long handshake timeout: only the ICMP error can end this quickly.
        let configuration = clientConfiguration { $0.handshakeTimeout = .seconds(60) }
        try await expectConnectFailure(configuration, port: port) { error in
            guard case .connectionRefused(let why) = error else { return false }
            return why.contains("ICMP port unreachable")
        }
    }

    @Test("a peer that never answers ends in a handshake timeout")
    func silentPeer() async throws {
        // A bound socket that nobody reads: datagrams vanish, no ICMP comes back.
        let blackhole = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(blackhole) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(blackhole, $0, length) == 0 && getsockname(blackhole, $0, &length) == 0 }
        }
        #expect(bound)
        let port = Int(UInt16(bigEndian: address.sin_port))
        let configuration = clientConfiguration { $0.handshakeTimeout = .seconds(1) }
        try await expectConnectFailure(configuration, port: port) { $0 == .handshakeTimeout }
    }

    @Test("an idle connection closes after the idle timeout")
    func idleTimeout() async throws {
        let server = try await EchoServer(configuration: serverConfiguration { $0.quic.idleTimeout = .seconds(2) })
        defer { Task { await server.close() } }
        try await withTimeout(30) {
            let connection = try await QUICClient.connect(
                host: "127.0.0.1", port: server.port, configuration: clientConfiguration { $0.idleTimeout = .seconds(2) })
            #expect(await connection.waitUntilClosed() == .idleTimeout)
            await #expect(throws: QUICError.idleTimeout) { _ = try await connection.openStream() }
        }
    }

    @Test("keep-alive keeps an idle connection open past the idle timeout")
    func keepAlive() async throws {
        let server = try await EchoServer(configuration: serverConfiguration { $0.quic.idleTimeout = .seconds(2) })
        defer { Task { await server.close() } }
        try await withTimeout(30) {
            let connection = try await QUICClient.connect(
                host: "127.0.0.1", port: server.port,
                configuration: clientConfiguration { $0.idleTimeout = .seconds(2); $0.keepAliveInterval = .milliseconds(400) })
            try await Task.sleep(for: .seconds(5))
            let stream = try await connection.openStream()
            try await stream.write(Array("still here".utf8))
            try await stream.finish()
            #expect(String(buffer: try await stream.readAll(limit: 100)) == "still here")
            await connection.close()
        }
    }

    @Test("a peer that closes with an application error reports its code and reason")
    func peerApplicationClose() async throws {
        let listener = try await QUICListener.bind(host: "127.0.0.1", port: 0, configuration: serverConfiguration())
        defer { Task { await listener.close() } }
        let serverSide = Task {
            for await connection in listener.connections {
                await connection.close(applicationError: 0x42, reason: "bye")
                return
            }
        }
        try await withTimeout(30) {
            // The server may close before the client's side of the handshake has returned (a
            // loaded machine delays the client's task); then connect itself reports the close.
            let error: QUICError?
            do {
                let connection = try await QUICClient.connect(host: "127.0.0.1", port: listener.localAddress.port ?? 0,
                                                              configuration: clientConfiguration())
                error = await connection.waitUntilClosed()
            } catch let thrown as QUICError {
                error = thrown
            }
            #expect(error == .applicationClosed(code: 0x42, reason: "bye", remote: true))
            #expect(error?.description == "connection closed by peer with application error 66: bye")
        }
        serverSide.cancel()
    }

    @Test("mutual TLS: a required client certificate is checked")
    func mutualTLS() async throws {
        let pki = TestPKI.shared
        let server = try await EchoServer(configuration: serverConfiguration {
            $0.quic.tls.clientAuthentication = .required
            $0.quic.tls.trustRoots = .certificates(.file(pki.caFile))
        })
        defer { Task { await server.close() } }
        // Without a certificate the server refuses. In TLS 1.3 the client's side of the
        // handshake may finish first; the server's refusal then closes the connection.
        let refusal = try await withTimeout(30) { () -> QUICError? in
            do {
                let connection = try await QUICClient.connect(host: "127.0.0.1", port: server.port,
                                                              configuration: clientConfiguration())
                return await connection.waitUntilClosed()
            } catch let error as QUICError {
                return error
            }
        }
        guard case .tlsHandshakeFailed(let alert, _) = try #require(refusal) else {
            Issue.record("expected a TLS failure, got \(String(describing: refusal))")
            return
        }
        #expect(alert == 116 || alert == 40 || alert == 42, "alert \(alert)")
        // With one signed by the CA it serves.
        let clientCert = try CertificateGenerator.makeLeaf(.init(commonName: "client"), issuer: pki.ca)
        var configuration = clientConfiguration()
        configuration.tls.certificateChain = .pem(clientCert.certificatePEM)
        configuration.tls.privateKey = .pem(clientCert.privateKeyPEM)
        try await withTimeout(30) { [configuration] in
            let connection = try await QUICClient.connect(host: "127.0.0.1", port: server.port, configuration: configuration)
            await connection.close()
        }
    }

    @Test("bad configuration is rejected with a clear error")
    func badConfiguration() async throws {
        await #expect(throws: QUICError.invalidArgument("at least one application protocol (ALPN) is required")) {
            _ = try await QUICClient.connect(host: "127.0.0.1", port: 1, configuration: clientConfiguration(alpn: []))
        }
        var missing = serverConfiguration()
        missing.quic.tls.certificateChain = .file("/nonexistent/cert.pem")
        await #expect(throws: QUICError.fileError("could not read certificate chain file /nonexistent/cert.pem")) {
            _ = try await QUICListener.bind(host: "127.0.0.1", port: 0, configuration: missing)
        }
        await #expect(throws: QUICError.self) {
            _ = try await QUICClient.connect(host: "127.0.0.1", port: 1,
                                             configuration: clientConfiguration { $0.idleTimeout = .zero })
        }
    }
}
