import Foundation
import HTTP3
import HTTPAPI
import HTTPTypes
import NIOCore
import NIOPosix
import QUIC
import QUICSocket
import QUICTestSupport
import HTTPTestSupport

/// A server with ``TestHandler`` on 127.0.0.1 and a client that trusts the test CA.
struct HTTP3Fixture {
    let server: HTTP3Server
    let client: HTTP3Transport
    let observations: Observations

    /// - Parameter socketOptions: UDP socket options for both the server and the client.
    static func start(socketOptions: UDPSocketOptions = .init(),
                      _ adjust: (inout HTTP3ServerConfiguration) -> Void = { _ in }) async throws -> HTTP3Fixture {
        let observations = Observations()
        var configuration = HTTP3ServerConfiguration(host: "127.0.0.1", port: 0, tls: TestPKI.shared.serverTLS(alpn: ["h3"]))
        adjust(&configuration)
        let server = try await HTTP3Server.bind(configuration: configuration, handler: TestHandler(observations: observations),
                                                socketOptions: socketOptions)
        let client = HTTP3Transport(configuration: .init(tls: TestPKI.shared.clientTLS(alpn: ["h3"]),
                                                         socketOptions: socketOptions))
        return HTTP3Fixture(server: server, client: client, observations: observations)
    }

    var authority: String { "localhost:\(server.localAddress.port ?? 0)" }

    func request(_ method: HTTPRequest.Method = .get, _ path: String, fields: HTTPFields = [:]) -> HTTPRequest {
        HTTPRequest(method: method, scheme: "https", authority: authority, path: path, headerFields: fields)
    }

    /// Runs a test step with a timeout; stops the fixture if the step fails, so that no
    /// connection outlives its test.
    func run(_ seconds: Double, _ body: @escaping @Sendable () async throws -> Void) async throws {
        do {
            try await withTimeout(seconds, body)
        } catch {
            await stop()
            throw error
        }
    }

    /// ``run(_:_:)`` for a heavy test (one at a time, see `HeavyTestGate`).
    func runHeavy(_ seconds: Double, _ body: @escaping @Sendable () async throws -> Void) async throws {
        do {
            try await withHeavyTimeout(seconds, body)
        } catch {
            await stop()
            throw error
        }
    }

    func stop() async {
        await client.shutdown()
        await server.shutdown()
    }
}
