import Foundation
import HTTP2
import HTTP3
import HTTPAPI
import HTTPServer
import HTTPTypes
import NIOCore
import QUICTestSupport
import Testing
import HTTPTestSupport

@Suite("HTTP/3 and HTTP/2 on one port, with Alt-Svc")
struct HTTPServerTests {
    let pki = TestPKI.shared

    @Test("one port serves HTTP/3 over UDP and HTTP/2 over TCP; TCP responses advertise h3 on that port")
    func bothOnOnePort() async throws {
        let observations = Observations()
        let server = try await HTTPServer.bind(configuration: .init(host: "127.0.0.1", port: 0, tls: pki.serverTLS()),
                                               handler: TestHandler(observations: observations))
        let http3 = HTTP3Transport(configuration: .init(tls: pki.clientTLS(alpn: ["h3"])))
        let http2 = HTTP2Transport(configuration: .init(tls: pki.clientTLS(alpn: ["h2"])))
        let port = server.port
        let request = HTTPRequest(method: .get, scheme: "https", authority: "localhost:\(port)", path: "/context")
        do {
            try await withTimeout(30) {
                let overUDP = try await http3.roundTrip(request)
                #expect(overUDP.metadata.protocolVersion == .http3)
                #expect(overUDP.metadata.connection?.remoteAddress == "127.0.0.1:\(port)")
                #expect(String(buffer: try await overUDP.body.collect(upTo: 100)) == "3 localhost true")
                #expect(overUDP.head.headerFields[HTTPField.Name("alt-svc")!] == nil, "HTTP/3 responses need no Alt-Svc")

                let overTCP = try await http2.roundTrip(request)
                #expect(overTCP.metadata.protocolVersion == .http2)
                #expect(overTCP.metadata.connection?.transport == "tcp")
                #expect(overTCP.metadata.connection?.remoteAddress == "127.0.0.1:\(port)")
                #expect(String(buffer: try await overTCP.body.collect(upTo: 100)) == "2 localhost true")
                #expect(overTCP.head.headerFields[HTTPField.Name("alt-svc")!] == "h3=\":\(port)\"; ma=86400")
            }
        } catch {
            await http3.shutdown()
            await http2.shutdown()
            await server.shutdown()
            throw error
        }
        await http3.shutdown()
        await http2.shutdown()
        await server.shutdown()
    }

    @Test("the advertised port and max-age can differ from the bound ones (a server behind a port-mapping proxy)")
    func advertisedPort() async throws {
        var configuration = HTTPServerConfiguration(host: "127.0.0.1", port: 0, tls: pki.serverTLS(), advertisedPort: 8443,
                                                    altSvcMaxAge: 3600)
        configuration.http2.gracefulShutdownTimeout = .seconds(2)
        let server = try await HTTPServer.bind(configuration: configuration,
                                               handler: TestHandler(observations: Observations()))
        #expect(server.altSvc == "h3=\":8443\"; ma=3600")
        let http2 = HTTP2Transport(configuration: .init(tls: pki.clientTLS(alpn: ["h2"])))
        let request = HTTPRequest(method: .get, scheme: "https", authority: "localhost:\(server.port)", path: "/hello")
        do {
            try await withTimeout(30) {
                let response = try await http2.roundTrip(request)
                #expect(response.head.headerFields[HTTPField.Name("alt-svc")!] == "h3=\":8443\"; ma=3600")
                #expect(String(buffer: try await response.body.collect(upTo: 100)) == "hello")
            }
        } catch {
            await http2.shutdown()
            await server.shutdown()
            throw error
        }
        await http2.shutdown()
        await server.shutdown()
    }

    @Test("binding a port whose TCP side is taken fails and leaves nothing bound")
    func tcpPortTaken() async throws {
        // The blocker's TCP port number may already be used by some other test's UDP socket (the
        // two port spaces are separate), so a few blockers are tried; a UDP socket leaked by the
        // failed bind would make every attempt fail.
        var lastError: (any Error)?
        for _ in 0..<5 {
            let blocker = try await HTTP2Server.bind(
                configuration: HTTP2ServerConfiguration(host: "127.0.0.1", port: 0, tls: pki.serverTLS()),
                handler: TestHandler(observations: Observations()))
            let port = blocker.localAddress.port ?? 0
            await #expect(throws: (any Error).self) {
                _ = try await HTTPServer.bind(configuration: .init(host: "127.0.0.1", port: port, tls: pki.serverTLS()),
                                              handler: TestHandler(observations: Observations()))
            }
            // The UDP side of the failed attempt was released: an HTTP/3 server can take the port.
            do {
                let udp = try await HTTP3Server.bind(configuration: .init(host: "127.0.0.1", port: port, tls: pki.serverTLS()),
                                                     handler: TestHandler(observations: Observations()))
                await udp.shutdown()
                await blocker.shutdown()
                return
            } catch {
                lastError = error
                await blocker.shutdown()
            }
        }
        Issue.record("the UDP port stayed taken after a failed bind, five times: \(String(describing: lastError))")
    }
}
