import Logging
import NIOCore
import QUIC
import QUICTestSupport
import ServiceLifecycle
import Testing

@Suite("QUICListener as a swift-service-lifecycle service")
struct ListenerServiceTests {
    private static let quiet = Logger(label: "test.service-group", factory: { _ in SwiftLogNoOpLogHandler() })

    @Test("graceful shutdown waits for open connections to close, refuses new ones, then the group exits")
    func gracefulShutdownWaitsForConnections() async throws {
        // A grace far longer than the test's timeout: the group may only end because the
        // client closed its connection.
        let listener = try await QUICListener.bind(host: "127.0.0.1", port: 0,
                                                   configuration: serverConfiguration { $0.gracefulShutdownTimeout = .seconds(600) })
        let port = listener.localAddress.port ?? 0
        let group = ServiceGroup(services: [listener], logger: Self.quiet)
        let running = Task { try await group.run() }
        defer { running.cancel() }
        try await withTimeout(60) {
            let connection = try await QUICClient.connect(host: "127.0.0.1", port: port, configuration: clientConfiguration())
            try await connection.waitForHandshake()
            await group.triggerGracefulShutdown()
            // The listener stops accepting (asynchronously): soon a new client gets no answer.
            var late = clientConfiguration()
            late.handshakeTimeout = .milliseconds(500)
            var refused = false
            for _ in 0..<50 where !refused {
                do {
                    let accepted = try await QUICClient.connect(host: "127.0.0.1", port: port, configuration: late)
                    await accepted.close()
                } catch {
                    refused = true
                }
            }
            #expect(refused)
            // The open connection still works.
            let stream = try await connection.openStream()
            try await stream.finish()
            await connection.close()
            try await running.value
        }
    }

    @Test("cancellation closes the listener and its connections at once")
    func cancellationClosesAtOnce() async throws {
        let listener = try await QUICListener.bind(host: "127.0.0.1", port: 0,
                                                   configuration: serverConfiguration { $0.gracefulShutdownTimeout = .seconds(600) })
        let group = ServiceGroup(services: [listener], logger: Self.quiet)
        let running = Task { try await group.run() }
        try await withTimeout(60) {
            let connection = try await QUICClient.connect(host: "127.0.0.1", port: listener.localAddress.port ?? 0,
                                                          configuration: clientConfiguration())
            try await connection.waitForHandshake()
            running.cancel()
            _ = try? await running.value
            // The server closed the connection: the client learns it without closing it itself.
            _ = await connection.waitUntilClosed()
        }
    }
}
