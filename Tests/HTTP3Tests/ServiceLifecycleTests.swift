import HTTP2
import HTTP3
import HTTPAPI
import HTTPServer
import HTTPTypes
import Logging
import NIOConcurrencyHelpers
import NIOCore
import QUICTestSupport
import ServiceLifecycle
import Testing

/// A handler whose `/held` requests wait until the test releases them; other paths answer at once.
final class HeldHandler: HTTPHandler {
    private let entered: AsyncStream<Void>.Continuation
    /// One element per `/held` request that reached the handler.
    let enteredRequests: AsyncStream<Void>
    private let releaseLock = NIOLockedValueBox<(released: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    init() {
        (enteredRequests, entered) = AsyncStream.makeStream(of: Void.self)
    }

    /// Lets every held request (and every later one) answer.
    func release() {
        let waiters = releaseLock.withLockedValue { state -> [CheckedContinuation<Void, Never>] in
            state.released = true
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    private func waitForRelease() async {
        await withCheckedContinuation { continuation in
            let now = releaseLock.withLockedValue { state -> Bool in
                if state.released { return true }
                state.waiters.append(continuation)
                return false
            }
            if now { continuation.resume() }
        }
    }

    func handle(_ request: HTTPRequest, body: HTTPBody, context: HTTPRequestContext, response: HTTPResponseWriter) async throws {
        if request.path == "/held" {
            entered.yield(())
            await waitForRelease()
            try await response.respond(HTTPResponse(status: .ok), body: ByteBuffer(string: "done"))
        } else {
            try await response.respond(HTTPResponse(status: .ok), body: ByteBuffer(string: "ok"))
        }
    }
}

/// A second service in the group: runs until its graceful shutdown (or cancellation) and
/// records which of the two ended it.
final class ProbeService: Service {
    private let outcome = NIOLockedValueBox<String?>(nil)
    var ended: String? { outcome.withLockedValue { $0 } }

    func run() async throws {
        do {
            try await gracefulShutdown()
            outcome.withLockedValue { $0 = "graceful" }
        } catch {
            outcome.withLockedValue { $0 = "cancelled" }
        }
    }
}

@Suite("Servers as swift-service-lifecycle services")
struct ServiceLifecycleTests {
    let pki = TestPKI.shared

    private func makeServer(handler: HeldHandler, grace: Duration) async throws -> HTTPServer {
        var configuration = HTTPServerConfiguration(host: "127.0.0.1", port: 0, tls: pki.serverTLS())
        configuration.http3.gracefulShutdownTimeout = grace
        configuration.http2.gracefulShutdownTimeout = grace
        return try await HTTPServer.bind(configuration: configuration, handler: handler)
    }

    private static let quiet = Logger(label: "test.service-group", factory: { _ in SwiftLogNoOpLogHandler() })

    @Test("graceful shutdown of a ServiceGroup: requests in flight over HTTP/3 and HTTP/2 complete, then the group exits")
    func gracefulShutdownDrains() async throws {
        let handler = HeldHandler()
        let server = try await makeServer(handler: handler, grace: .seconds(60))
        let probe = ProbeService()
        // The group shuts services down in reverse order: the server first, then the probe.
        let group = ServiceGroup(services: [probe, server], logger: Self.quiet)
        let running = Task { try await group.run() }
        let http3 = HTTP3Transport(configuration: .init(tls: pki.clientTLS(alpn: ["h3"])))
        let http2 = HTTP2Transport(configuration: .init(tls: pki.clientTLS(alpn: ["h2"])))
        let request = HTTPRequest(method: .get, scheme: "https", authority: "localhost:\(server.port)", path: "/held")
        defer { running.cancel() }
        try await withTimeout(60) {
            async let overUDP = http3.roundTrip(request)
            async let overTCP = http2.roundTrip(request)
            // Both requests are in their handler before the shutdown starts.
            var entered = handler.enteredRequests.makeAsyncIterator()
            _ = await entered.next()
            _ = await entered.next()
            await group.triggerGracefulShutdown()
            // Wait until both sides are draining: GOAWAY sent on the QUIC connection, TCP listener closed.
            while true {
                let goaway = try await server.http3.statistics().contains { $0.goawaySent }
                if goaway && !server.http2.isListening { break }
                try await Task.sleep(for: .milliseconds(10))
            }
            #expect(probe.ended == nil, "the probe is shut down after the server")
            handler.release()
            let (udp, tcp) = try await (overUDP, overTCP)
            #expect(udp.head.status == .ok && tcp.head.status == .ok)
            #expect(String(buffer: try await udp.body.collect(upTo: 100)) == "done")
            #expect(String(buffer: try await tcp.body.collect(upTo: 100)) == "done")
            try await running.value
        }
        #expect(probe.ended == "graceful")
        await http3.shutdown()
        await http2.shutdown()
    }

    @Test("cancelling the group's task stops the server at once, without waiting for requests in flight")
    func cancellationStopsAtOnce() async throws {
        let handler = HeldHandler()
        // A grace far longer than the test's timeout: only an immediate close lets it pass.
        let server = try await makeServer(handler: handler, grace: .seconds(600))
        let probe = ProbeService()
        let group = ServiceGroup(services: [probe, server], logger: Self.quiet)
        let running = Task { try await group.run() }
        let http3 = HTTP3Transport(configuration: .init(tls: pki.clientTLS(alpn: ["h3"])))
        let request = HTTPRequest(method: .get, scheme: "https", authority: "localhost:\(server.port)", path: "/held")
        try await withTimeout(60) {
            async let held = http3.roundTrip(request)
            var entered = handler.enteredRequests.makeAsyncIterator()
            _ = await entered.next()
            running.cancel()
            _ = try? await running.value
            let outcome: String
            do {
                let response = try await held
                _ = try await response.body.collect(upTo: 100)
                outcome = "answered"
            } catch {
                outcome = "failed"
            }
            #expect(outcome == "failed", "the request in flight is cut off")
        }
        #expect(probe.ended == "cancelled")
        #expect(!server.http2.isListening)
        handler.release()
        await http3.shutdown()
    }

    @Test("HTTP3Server.run returns when the server is shut down directly")
    func runEndsOnShutdown() async throws {
        let handler = HeldHandler()
        var configuration = HTTP3ServerConfiguration(host: "127.0.0.1", port: 0, tls: pki.serverTLS(alpn: ["h3"]))
        configuration.gracefulShutdownTimeout = .seconds(5)
        let server = try await HTTP3Server.bind(configuration: configuration, handler: handler)
        try await withTimeout(30) {
            async let run: Void = server.run()
            await server.shutdown()
            try await run
        }
    }
}
