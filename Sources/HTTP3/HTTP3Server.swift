import HTTPAPI
import HTTPTypes
import Logging
import NIOCore
import NIOPosix
import QUIC
import QUICSocket

/// Settings of an HTTP/3 server.
public struct HTTP3ServerConfiguration: Sendable {
    /// The address to bind.
    public var host: String
    /// The UDP port to bind (0 picks a free one).
    public var port: Int
    /// QUIC settings, TLS included. The ALPN list is set to `h3`.
    public var quic: QUICServerConfiguration
    /// HTTP/3 settings.
    public var http3: HTTP3Settings
    /// How long a graceful shutdown waits for requests in flight before closing anyway.
    public var gracefulShutdownTimeout: Duration
    /// The probability (0...1) that the server sends GOAWAY on a connection after serving a
    /// request on it (kube-apiserver's `--goaway-chance`). Clients then finish what is in
    /// flight and open a new connection, which a load balancer may send to another instance:
    /// long-lived clients spread over instances. 0 (the default) never does; small values such
    /// as 0.001 to 0.02 are typical.
    public var goawayChance: Double
    /// Where handlers run: on Swift's global executor (the default) or on the connection's
    /// event loop (faster for small requests; see ``HTTPHandlerExecution``).
    public var handlerExecution: HTTPHandlerExecution
    /// How many event loops (each with its own `SO_REUSEPORT` socket on the port) serve
    /// connections; see ``QUICListener/bind(host:port:configuration:loops:socketOptions:eventLoopGroup:logger:)``.
    /// The event loop group needs at least this many loops. `nil` (the default): one per core
    /// (at most the group's loop count), or 1 with a preferred address.
    public var loops: Int? = nil

    /// Creates server settings for a certificate chain and key.
    public init(host: String = "::", port: Int = 443, tls: QUICTLSConfiguration,
                http3: HTTP3Settings = HTTP3Settings(), gracefulShutdownTimeout: Duration = .seconds(10),
                goawayChance: Double = 0, handlerExecution: HTTPHandlerExecution = .globalExecutor) {
        var tls = tls
        tls.applicationProtocols = ["h3"]
        self.host = host
        self.port = port
        self.quic = QUICServerConfiguration(quic: QUICConfiguration(tls: tls))
        self.http3 = http3
        self.gracefulShutdownTimeout = gracefulShutdownTimeout
        self.goawayChance = goawayChance
        self.handlerExecution = handlerExecution
    }
}

/// An HTTP/3 server running an ``HTTPHandler``.
///
/// ```swift
/// let server = try await HTTP3Server.bind(configuration: config, handler: ClosureHTTPHandler { request, body, context, response in
///     try await response.respond(HTTPResponse(status: .ok), body: ByteBuffer(string: "hello"))
/// })
/// ...
/// await server.shutdown()   // GOAWAY, requests in flight finish, then close
/// ```
public final class HTTP3Server: Sendable {
    /// The first loop's endpoint and state (the only ones with one loop).
    let endpoint: ServerEndpoint
    let state: HTTP3ServerState
    /// Each loop's endpoint with the state of the sessions on that loop.
    let loops: [(endpoint: ServerEndpoint, state: HTTP3ServerState)]
    /// The bound address.
    public let localAddress: SocketAddress

    private init(loops: [(endpoint: ServerEndpoint, state: HTTP3ServerState)], localAddress: SocketAddress) {
        self.endpoint = loops[0].endpoint
        self.state = loops[0].state
        self.loops = loops
        self.localAddress = localAddress
    }

    /// Binds and starts serving.
    public static func bind(configuration: HTTP3ServerConfiguration, handler: some HTTPHandler,
                            socketOptions: UDPSocketOptions = .init(),
                            eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
                            logger: Logger = Logger(label: "swift-h3.http3.server")) async throws -> HTTP3Server {
        var quic = configuration.quic
        quic.quic.tls.applicationProtocols = ["h3"]
        let loopCount = QUICListener.resolvedLoopCount(configuration.loops, configuration: quic, eventLoopGroup: eventLoopGroup)
        // One state per loop, each confined to its loop (bindEndpoints takes the group's first
        // `loops` loops, in this order).
        // One metrics object for all loops (its counters are shared and thread-safe).
        let metrics = HTTP3ServerMetrics(configuration.quic.metrics)
        let states = (0..<loopCount).map { _ in
            HTTP3ServerState(handler: handler, settings: configuration.http3, logger: logger,
                             shutdownTimeout: configuration.gracefulShutdownTimeout,
                             goawayChance: configuration.goawayChance,
                             handlerExecution: configuration.handlerExecution,
                             metrics: metrics)
        }
        let eventLoops = loopCount > 1 ? Array(eventLoopGroup.makeIterator().prefix(loopCount)) : []
        let maxStreams = quic.quic.maxIncomingBidirectionalStreams
        let endpoints = try await QUICListener.bindEndpoints(
            host: configuration.host, port: configuration.port, loops: loopCount, configuration: quic,
            socketOptions: socketOptions, eventLoopGroup: eventLoopGroup, logger: logger,
            makeApplication: { core in
                let session = try HTTP3Session(core: core, role: .server, settings: configuration.http3,
                                               maxIncomingStreams: maxStreams, logger: core.connectionLogger)
                let index = eventLoops.firstIndex { $0 === core.eventLoop } ?? 0
                states[index].add(session)
                return session
            },
            onEstablished: { _ in })
        guard let address = endpoints[0].socket.localAddress else {
            throw QUICError.internalError("the bound socket has no local address")
        }
        return HTTP3Server(loops: Array(zip(endpoints, states)).map { (endpoint: $0.0, state: $0.1) }, localAddress: address)
    }

    /// Shuts down gracefully: new connections and requests are refused (GOAWAY), requests in
    /// flight finish (up to the configured timeout), then every connection closes.
    public func shutdown() async {
        var drains: [EventLoopFuture<Void>] = []
        for (endpoint, state) in loops {
            if let drained = try? await endpoint.eventLoop.submit({ () -> EventLoopFuture<Void> in
                endpoint.stopAccepting()
                return state.beginShutdown(on: endpoint.eventLoop)
            }).get() {
                drains.append(drained)
            }
        }
        for drained in drains { _ = try? await drained.get() }
        for (endpoint, _) in loops { endpoint.eventLoop.execute { endpoint.close(applicationError: HTTP3ErrorCode.noError) } }
        for (endpoint, _) in loops { try? await endpoint.closeFuture.get() }
    }

    /// Sends GOAWAY on every open connection (each finishes its requests in flight, then
    /// closes) while the server keeps accepting new connections: moves long-lived clients to
    /// fresh connections.
    package func goAway() async {
        for (endpoint, state) in loops { try? await endpoint.eventLoop.submit { state.goAwayAll(cause: .rebalance) }.get() }
    }

    /// Counters of the server's QUIC endpoint: Retries, address tokens, refusals (for
    /// diagnostics and tests).
    package func endpointStatistics() async throws -> EndpointStatistics {
        .summing(try await loopStatistics().map(\.statistics))
    }

    /// Counters of the server's connections (for diagnostics and tests).
    package func statistics() async throws -> [HTTP3SessionStatistics] {
        var all: [HTTP3SessionStatistics] = []
        for (endpoint, state) in loops { all += try await endpoint.eventLoop.submit { state.sessionStatistics() }.get() }
        return all
    }

    /// Each loop's endpoint counters (connections accepted per loop) and the datagrams it
    /// handed to another loop.
    package func loopStatistics() async throws -> [(statistics: EndpointStatistics, handedOff: Int)] {
        var result: [(statistics: EndpointStatistics, handedOff: Int)] = []
        for (endpoint, _) in loops {
            result.append(try await endpoint.eventLoop.submit { (endpoint.currentStatistics, endpoint.handedOffDatagrams) }.get())
        }
        return result
    }
}

/// The server's mutable state. Confined to the endpoint's event loop.
final class HTTP3ServerState: HTTP3SessionDelegate, @unchecked Sendable {
    let handler: any HTTPHandler
    let settings: HTTP3Settings
    let logger: Logger
    let shutdownTimeout: Duration
    /// See ``HTTP3ServerConfiguration/goawayChance``; NaN and out-of-range values are clamped.
    let goawayChance: Double
    let handlerExecution: HTTPHandlerExecution
    let metrics: HTTP3ServerMetrics?
    /// The task executor of the endpoint's event loop, made on first use.
    private var loopExecutor: EventLoopTaskExecutor?
    private var sessions: [ObjectIdentifier: HTTP3Session] = [:]
    private var closedStatistics: [HTTP3SessionStatistics] = []
    private var drainedPromise: EventLoopPromise<Void>?

    init(handler: any HTTPHandler, settings: HTTP3Settings, logger: Logger, shutdownTimeout: Duration,
         goawayChance: Double = 0, handlerExecution: HTTPHandlerExecution = .globalExecutor,
         metrics: HTTP3ServerMetrics? = nil) {
        self.handlerExecution = handlerExecution
        self.metrics = metrics
        self.goawayChance = goawayChance.isNaN ? 0 : min(1, max(0, goawayChance))
        self.handler = handler
        self.settings = settings
        self.logger = logger
        self.shutdownTimeout = shutdownTimeout
    }

    func add(_ session: HTTP3Session) {
        session.delegate = self
        sessions[ObjectIdentifier(session)] = session
    }

    func sessionStatistics() -> [HTTP3SessionStatistics] {
        closedStatistics + sessions.values.map(\.statistics)
    }

    func beginShutdown(on eventLoop: any EventLoop) -> EventLoopFuture<Void> {
        if let existing = drainedPromise { return existing.futureResult }  // a shutdown is under way
        let promise = eventLoop.makePromise(of: Void.self)
        drainedPromise = promise
        for session in sessions.values { goAway(session, cause: .shutdown) }
        if sessions.isEmpty { completeDrain(); return promise.futureResult }
        let timeout = TimeAmount(shutdownTimeout)
        eventLoop.scheduleTask(in: timeout) { [self] in completeDrain() }
        return promise.futureResult
    }

    private func completeDrain() {
        let promise = drainedPromise
        drainedPromise = nil
        promise?.succeed(())
    }

    func goAwayAll(cause: HTTP3ServerMetrics.GoAwayCause) {
        for session in sessions.values { goAway(session, cause: cause) }
    }

    /// Starts a session's graceful shutdown (GOAWAY, at once or as soon as the handshake
    /// completes), counting it once per connection.
    func goAway(_ session: HTTP3Session, cause: HTTP3ServerMetrics.GoAwayCause) {
        let before = session.shuttingDown
        session.beginGracefulShutdown()
        if !before && session.shuttingDown { metrics?.goAwaySent(cause) }
    }

    func session(_ session: HTTP3Session, didReceiveRequest stream: RequestStream, head: HTTPRequest) {
        var context = session.requestContext()
        context.isEarlyData = stream.arrivedEarly
        let length = head.headerFields[.contentLength].flatMap { Int64($0) }
        let body = HTTPBody(source: HTTP3BodySource(stream: stream, session: session), length: length)
        let writer = HTTP3MessageWriter(stream: stream, session: session)
        let sink = HTTP3ResponseSink(writer: writer, isHead: head.method == .head)
        let handler = self.handler, logger = session.logger, goawayChance = self.goawayChance, metrics = self.metrics
        metrics?.requestStarted()
        handlerExecution.startTask(on: executor(for: session.eventLoop)) {
            await handler.run(head, body: body, context: context, sink: sink) { error in
                logger.debug("handler failed", metadata: ["path": "\(head.path ?? "")", "error": "\(error)"])
            }
            metrics?.requestFinished(status: sink.responseStatus)
            // The response is complete: the server no longer needs what the client still sends.
            session.eventLoop.execute { session.cancelReading(stream, error: .responseFinished, code: HTTP3ErrorCode.noError) }
            // GOAWAY chance: now and then, ask this client to move to a new connection.
            if goawayChance > 0 && Double.random(in: 0..<1) < goawayChance {
                session.eventLoop.execute { [self] in goAway(session, cause: .chance) }
            }
        }
    }

    private func executor(for eventLoop: any EventLoop) -> EventLoopTaskExecutor {
        if let loopExecutor, loopExecutor.eventLoop === eventLoop { return loopExecutor }
        let made = EventLoopTaskExecutor(eventLoop)
        loopExecutor = made
        return made
    }

    func sessionDidClose(_ session: HTTP3Session, error: QUICError?) {
        if sessions.removeValue(forKey: ObjectIdentifier(session)) != nil {
            closedStatistics.append(session.statistics)
        }
        if sessions.isEmpty { completeDrain() }
    }
}
