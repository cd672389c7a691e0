import HTTP2
import HTTP3
import HTTPAPI
import HTTPTypes
import NIOCore
import QUIC
import QUICTestSupport
import Testing
import HTTPTestSupport

/// The transports the shared end-to-end suite runs over.
enum TransportKind: String, Sendable, CaseIterable, CustomTestStringConvertible {
    case http3
    case http2
    /// The server runs its handlers on the connection's event loop (``HTTPHandlerExecution/eventLoop``).
    case http3OnEventLoop
    case http2OnEventLoop

    /// The two protocols with the default handler placement, for the heaviest tests.
    static let protocols: [TransportKind] = [.http3, .http2]

    var isHTTP3: Bool { self == .http3 || self == .http3OnEventLoop }
    var execution: HTTPHandlerExecution {
        self == .http3OnEventLoop || self == .http2OnEventLoop ? .eventLoop : .globalExecutor
    }

    var testDescription: String {
        (isHTTP3 ? "HTTP/3" : "HTTP/2") + (execution == .eventLoop ? ", handlers on the event loop" : "")
    }

    /// The version a response over this transport reports.
    var version: HTTPProtocolVersion { isHTTP3 ? .http3 : .http2 }
}

/// ``TestHandler`` served over one transport on 127.0.0.1, and a client of the same transport
/// that trusts the test CA. The tests see only ``HTTPRoundTripper`` and the handler: no
/// transport-specific code.
struct EndToEndFixture: Sendable {
    let kind: TransportKind
    let client: any HTTPRoundTripper
    let observations: Observations
    let port: Int
    /// The concrete server and client, for checks of a transport's own counters.
    let http3: (server: HTTP3Server, client: HTTP3Transport)?
    let http2: (server: HTTP2Server, client: HTTP2Transport)?

    private init(kind: TransportKind, client: any HTTPRoundTripper, observations: Observations, port: Int,
                 http3: (server: HTTP3Server, client: HTTP3Transport)?, http2: (server: HTTP2Server, client: HTTP2Transport)?) {
        self.kind = kind
        self.client = client
        self.observations = observations
        self.port = port
        self.http3 = http3
        self.http2 = http2
    }

    /// Starts a server and a client; `maxHeaderSize` limits the request header section the server accepts.
    static func start(_ kind: TransportKind, maxHeaderSize: Int? = nil) async throws -> EndToEndFixture {
        let observations = Observations()
        let handler = TestHandler(observations: observations)
        switch kind {
        case .http3, .http3OnEventLoop:
            var configuration = HTTP3ServerConfiguration(host: "127.0.0.1", port: 0, tls: TestPKI.shared.serverTLS(alpn: ["h3"]))
            configuration.handlerExecution = kind.execution
            if let maxHeaderSize { configuration.http3.maxHeaderSectionSize = maxHeaderSize }
            let server = try await HTTP3Server.bind(configuration: configuration, handler: handler)
            let client = HTTP3Transport(configuration: .init(tls: TestPKI.shared.clientTLS(alpn: ["h3"])))
            return EndToEndFixture(kind: kind, client: client, observations: observations,
                                   port: server.localAddress.port ?? 0, http3: (server, client), http2: nil)
        case .http2, .http2OnEventLoop:
            var configuration = HTTP2ServerConfiguration(host: "127.0.0.1", port: 0, tls: TestPKI.shared.serverTLS(alpn: ["h2"]))
            configuration.handlerExecution = kind.execution
            if let maxHeaderSize { configuration.maxHeaderListSize = maxHeaderSize }
            let server = try await HTTP2Server.bind(configuration: configuration, handler: handler)
            let client = HTTP2Transport(configuration: .init(tls: TestPKI.shared.clientTLS(alpn: ["h2"])))
            return EndToEndFixture(kind: kind, client: client, observations: observations,
                                   port: server.localAddress.port ?? 0, http3: nil, http2: (server, client))
        }
    }

    var authority: String { "localhost:\(port)" }

    func request(_ method: HTTPRequest.Method = .get, _ path: String, fields: HTTPFields = [:]) -> HTTPRequest {
        HTTPRequest(method: method, scheme: "https", authority: authority, path: path, headerFields: fields)
    }

    /// A second, independent client of the same transport; `trustingTestCA: false` leaves it
    /// with the system's trust store only.
    func makeClient(trustingTestCA: Bool = true) -> (client: any HTTPRoundTripper, shutdown: @Sendable () async -> Void) {
        switch kind {
        case .http3, .http3OnEventLoop:
            let tls = trustingTestCA ? TestPKI.shared.clientTLS(alpn: ["h3"]) : .makeClientConfiguration(applicationProtocols: ["h3"])
            let client = HTTP3Transport(configuration: .init(tls: tls))
            return (client, { await client.shutdown() })
        case .http2, .http2OnEventLoop:
            let tls = trustingTestCA ? TestPKI.shared.clientTLS(alpn: ["h2"]) : .makeClientConfiguration(applicationProtocols: ["h2"])
            let client = HTTP2Transport(configuration: .init(tls: tls))
            return (client, { await client.shutdown() })
        }
    }

    /// Connections the client opened so far.
    func connectionsOpened() async -> Int {
        if let http3 { return await http3.client.statistics().connectionsOpened }
        if let http2 { return await http2.client.statistics().connectionsOpened }
        return 0
    }

    /// The server sends GOAWAY on every connection and keeps accepting new ones.
    func goAway() async {
        if let http3 { await http3.server.goAway() }
        if let http2 { http2.server.goAway() }
    }

    /// Graceful shutdown of the server.
    func shutdownServer() async {
        if let http3 { await http3.server.shutdown() }
        if let http2 { await http2.server.shutdown() }
    }

    func shutdownClient() async {
        if let http3 { await http3.client.shutdown() }
        if let http2 { await http2.client.shutdown() }
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
        await shutdownClient()
        await shutdownServer()
    }
}
