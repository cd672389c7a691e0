#if canImport(Glibc)
import Glibc
#endif
import HTTPAPI
import HTTPTypes
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOHTTP2
import NIOPosix
import NIOSSL
import NIOTLS
import QUIC

/// Settings of an HTTP/2 server (TCP + TLS, with HTTP/1.1 for clients that do not offer h2).
public struct HTTP2ServerConfiguration: Sendable {
    /// The address to bind.
    public var host: String
    /// The TCP port to bind (0 picks a free one).
    public var port: Int
    /// TLS settings (the same type as HTTP/3's, so one value configures both). The ALPN list is
    /// replaced by `h2` (and `http/1.1` when ``allowHTTP1`` is on).
    public var tls: QUICTLSConfiguration
    /// Whether clients that do not offer h2 in ALPN are served HTTP/1.1. On by default.
    public var allowHTTP1: Bool
    /// SETTINGS_MAX_CONCURRENT_STREAMS: requests one connection may have in flight.
    public var maxConcurrentStreams: Int
    /// The largest request header section accepted (field names + values + 32 per field);
    /// larger requests get 431. Far larger ones (four times this) are a connection error.
    public var maxHeaderListSize: Int
    /// The flow-control window per stream (SETTINGS_INITIAL_WINDOW_SIZE): request body bytes
    /// that may arrive unread.
    public var initialWindowSize: Int
    /// Header fields added to every response whose handler did not set them (for example
    /// `Alt-Svc`, which the combined server uses to advertise HTTP/3).
    public var responseHeaders: HTTPFields
    /// How long a graceful shutdown waits for requests in flight before closing anyway.
    public var gracefulShutdownTimeout: Duration
    /// An HTTP/2 connection with no stream open for this long is closed (GOAWAY first); `nil` for never.
    public var idleTimeout: Duration?
    /// Sets SO_REUSEPORT, so that several servers can share the port and the kernel spreads
    /// new connections over them.
    public var reusePort: Bool
    /// The probability (0...1) that the server sends GOAWAY on an HTTP/2 connection after a
    /// request on it ends (kube-apiserver's `--goaway-chance`), so long-lived clients reconnect
    /// and a load balancer can move them to another instance. 0 (the default) never does.
    public var goawayChance: Double = 0
    /// Connections open at once; further ones are closed as they are accepted.
    public var maxConnections: Int
    /// Where handlers run: on Swift's global executor (the default) or on the connection's
    /// event loop (faster for small requests; see ``HTTPHandlerExecution``).
    public var handlerExecution: HTTPHandlerExecution = .globalExecutor
    /// What the server reports through swift-metrics (the type QUIC servers use; on by default,
    /// to `MetricsSystem.factory`): requests by status class and requests in flight.
    public var metrics = QUICMetricsConfiguration()
    /// How long a connection may take to deliver a whole request head: from its acceptance (the
    /// TLS handshake included) to its first request head, and on an HTTP/1.1 connection kept
    /// alive, from the first bytes of each further request to the end of its head. A connection
    /// that runs over is closed (a client sending its header lines slowly holds none for long).
    /// `nil` for no limit; 30 s by default.
    public var requestHeadTimeout: Duration? = .seconds(30)
    /// Connections one client address (IP) may have open at once; further ones are closed as
    /// they are accepted. `nil` for no limit; 256 by default (clients behind one NAT share an address).
    public var maxConnectionsPerAddress: Int? = 256

    /// Creates server settings for a certificate chain and key.
    public init(host: String = "::", port: Int = 443, tls: QUICTLSConfiguration, allowHTTP1: Bool = true,
                maxConcurrentStreams: Int = 100, maxHeaderListSize: Int = 64 << 10, initialWindowSize: Int = 1 << 20,
                responseHeaders: HTTPFields = [:], gracefulShutdownTimeout: Duration = .seconds(10),
                idleTimeout: Duration? = .seconds(300), reusePort: Bool = false, maxConnections: Int = 10_000) {
        self.host = host
        self.port = port
        self.tls = tls
        self.allowHTTP1 = allowHTTP1
        self.maxConcurrentStreams = maxConcurrentStreams
        self.maxHeaderListSize = maxHeaderListSize
        self.initialWindowSize = initialWindowSize
        self.responseHeaders = responseHeaders
        self.gracefulShutdownTimeout = gracefulShutdownTimeout
        self.idleTimeout = idleTimeout
        self.reusePort = reusePort
        self.maxConnections = maxConnections
    }
}

/// An HTTP/2 server over TCP + TLS running an ``HTTPHandler`` — the same handler type an
/// `HTTP3Server` runs. Clients that offer only HTTP/1.1 in ALPN (or no ALPN) are served HTTP/1.1.
///
/// ```swift
/// let server = try await HTTP2Server.bind(configuration: config, handler: handler)
/// ...
/// await server.shutdown()   // GOAWAY, requests in flight finish, then close
/// ```
public final class HTTP2Server: Sendable {
    let serverChannel: any Channel
    let state: HTTP2ServerState
    /// The bound address.
    public let localAddress: SocketAddress

    private init(serverChannel: any Channel, state: HTTP2ServerState, localAddress: SocketAddress) {
        self.serverChannel = serverChannel
        self.state = state
        self.localAddress = localAddress
    }

    /// Binds and starts serving.
    ///
    /// - Throws: ``HTTP2ConfigurationError`` for unusable settings; a socket error if the
    ///   address cannot be bound.
    public static func bind(configuration: HTTP2ServerConfiguration, handler: some HTTPHandler,
                            eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
                            logger: Logger = Logger(label: "swift-h3.http2.server")) async throws -> HTTP2Server {
        guard (0...65535).contains(configuration.port) else {
            throw HTTP2ConfigurationError("port \(configuration.port) is out of range")
        }
        guard configuration.maxConcurrentStreams > 0, configuration.maxHeaderListSize > 0, configuration.maxConnections > 0,
              (configuration.maxConnectionsPerAddress ?? 1) > 0, (configuration.requestHeadTimeout ?? .seconds(1)) > .zero,
              (65535...Int(Int32.max)).contains(configuration.initialWindowSize) else {
            throw HTTP2ConfigurationError("the stream, connection and header limits must be positive, the window 64 KiB to 2 GiB")
        }
        let alpn = configuration.allowHTTP1 ? ["h2", "http/1.1"] : ["h2"]
        let contexts = try ServerTLSContexts(configuration.tls, alpn: alpn)
        let state = HTTP2ServerState(handler: handler, configuration: configuration, logger: logger)
        var bootstrap = ServerBootstrap(group: eventLoopGroup)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(.backlog, value: 256)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
        if configuration.reusePort {
            bootstrap = bootstrap.serverChannelOption(.socketOption(NIOBSDSocket.Option(rawValue: SO_REUSEPORT)), value: 1)
        }
        let channel = try await bootstrap.childChannelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try state.initialize(channel, contexts: contexts)
            }
        }.bind(host: configuration.host, port: configuration.port).get()
        guard let address = channel.localAddress else {
            channel.close(promise: nil)
            throw HTTP2ConfigurationError("the bound socket has no local address")
        }
        return HTTP2Server(serverChannel: channel, state: state, localAddress: address)
    }

    /// Shuts down gracefully: stops accepting, sends GOAWAY on every HTTP/2 connection (and
    /// closes idle HTTP/1.1 ones), lets requests in flight finish (up to the configured
    /// timeout), then closes every connection.
    public func shutdown() async {
        try? await serverChannel.close()
        await state.shutdown()
    }

    /// Sends GOAWAY on every open HTTP/2 connection (each finishes its requests in flight, then
    /// closes) while the server keeps accepting: moves long-lived clients to fresh connections.
    package func goAway() {
        state.quiesceAll()
    }

    /// Counters (for diagnostics and tests).
    package var statistics: HTTP2ServerStatistics { state.statistics }
}

/// Counters of a server.
package struct HTTP2ServerStatistics: Sendable {
    /// TCP connections accepted.
    package var connectionsAccepted = 0
    /// Connections that negotiated HTTP/2.
    package var http2Connections = 0
    /// Connections served as HTTP/1.1.
    package var http1Connections = 0
    /// Requests handed to the handler.
    package var requests = 0
    /// The most streams one connection had open at once.
    package var peakConcurrentStreams = 0
    /// Connections sent GOAWAY because of ``HTTP2ServerConfiguration/goawayChance``.
    package var goawayChanceConnections = 0
    /// Connections closed because their request head did not arrive in time.
    package var requestHeadTimeouts = 0
    /// Connections closed at once because their address had too many open.
    package var refusedOverAddressLimit = 0
}

/// What a handler's context says about one connection; filled in as the connection sets up.
final class ConnectionFacts: Sendable {
    private struct TLSFacts {
        var serverName: String?
        var clientCertificate: [UInt8]?
    }
    private let tls = NIOLockedValueBox(TLSFacts())
    let remoteAddress: String?
    let localAddress: String?

    init(channel: any Channel) {
        remoteAddress = channel.remoteAddress.map(endpointText)
        localAddress = channel.localAddress.map(endpointText)
    }

    var serverName: String? {
        get { tls.withLockedValue { $0.serverName } }
        set { tls.withLockedValue { $0.serverName = newValue } }
    }

    var clientCertificate: [UInt8]? {
        get { tls.withLockedValue { $0.clientCertificate } }
        set { tls.withLockedValue { $0.clientCertificate = newValue } }
    }

    func context(_ version: HTTPProtocolVersion) -> HTTPRequestContext {
        let facts = tls.withLockedValue { $0 }
        return HTTPRequestContext(protocolVersion: version, remoteAddress: remoteAddress, localAddress: localAddress,
                                  tlsServerName: facts.serverName, clientCertificate: facts.clientCertificate)
    }
}

/// `IP:port`, `[IPv6]:port`.
func endpointText(_ address: SocketAddress) -> String {
    let ip = address.ipAddress ?? "?"
    let port = address.port ?? 0
    if case .v6 = address { return "[\(ip)]:\(port)" }
    return "\(ip):\(port)"
}

/// The server's shared state: the handler, the open connections, the counters.
final class HTTP2ServerState: Sendable {
    let handler: any HTTPHandler
    let configuration: HTTP2ServerConfiguration
    let logger: Logger
    let metrics: HTTP2ServerMetrics?
    private struct Mutable {
        var connections: [ObjectIdentifier: Connection] = [:]
        var shuttingDown = false
        var statistics = HTTP2ServerStatistics()
        /// Open connections per client IP address.
        var perAddress: [String: Int] = [:]
    }
    /// One open connection, as shutdown needs to see it.
    struct Connection {
        let channel: any Channel
        var http1: HTTP1ServerConnection?
        var isHTTP2 = false
        /// The request-head clock, if the configuration sets one.
        let headDeadline: RequestHeadDeadline?
    }
    private let mutable = NIOLockedValueBox(Mutable())

    init(handler: any HTTPHandler, configuration: HTTP2ServerConfiguration, logger: Logger) {
        self.handler = handler
        self.configuration = configuration
        self.logger = logger
        self.metrics = HTTP2ServerMetrics(configuration.metrics)
    }

    var statistics: HTTP2ServerStatistics { mutable.withLockedValue { $0.statistics } }

    func count(_ update: (inout HTTP2ServerStatistics) -> Void) {
        mutable.withLockedValue { update(&$0.statistics) }
    }

    /// Header lists up to this size are decoded (and answered with 431 above the configured
    /// limit); larger ones are a connection error.
    var hardHeaderLimit: Int { max(configuration.maxHeaderListSize * 4, 16 << 10) }

    /// How many CONTINUATION frames in a row a header block may take: enough for `headerLimit`
    /// bytes in frames of the smallest maximum size (16 KiB), and a few to spare.
    static func continuationFrameAllowance(headerLimit: Int) -> Int {
        (headerLimit + (16 << 10) - 1) / (16 << 10) + 4
    }

    /// Sets up an accepted connection's pipeline: SNI capture (which chooses the certificate),
    /// TLS, then ALPN decides HTTP/2 or HTTP/1.1.
    func initialize(_ channel: any Channel, contexts: ServerTLSContexts) throws {
        let id = ObjectIdentifier(channel)
        let limit = configuration.maxConnections
        let address = channel.remoteAddress?.ipAddress
        let perAddressLimit = configuration.maxConnectionsPerAddress ?? .max
        let headDeadline = configuration.requestHeadTimeout.map { timeout in
            RequestHeadDeadline(timeout: TimeAmount(timeout)) { [self] in
                logger.debug("request head timeout: closing", metadata: ["client": "\(address ?? "?")"])
                count { $0.requestHeadTimeouts += 1 }
            }
        }
        let accepted = mutable.withLockedValue { state -> Bool in
            guard !state.shuttingDown, state.connections.count < limit else { return false }
            if let address {
                guard state.perAddress[address, default: 0] < perAddressLimit else {
                    state.statistics.refusedOverAddressLimit += 1
                    return false
                }
                state.perAddress[address, default: 0] += 1
            }
            state.connections[id] = Connection(channel: channel, headDeadline: headDeadline)
            state.statistics.connectionsAccepted += 1
            return true
        }
        guard accepted else {
            channel.close(promise: nil)
            return
        }
        headDeadline?.start(on: channel)
        channel.closeFuture.whenComplete { [self] _ in
            headDeadline?.stop()
            mutable.withLockedValue { state in
                _ = state.connections.removeValue(forKey: id)
                if let address, let open = state.perAddress[address] {
                    state.perAddress[address] = open > 1 ? open - 1 : nil
                }
            }
        }
        let facts = ConnectionFacts(channel: channel)
        let eventLoop = channel.eventLoop
        let operations = channel.pipeline.syncOperations
        // The connection's log lines name it by its remote address.
        var connectionLogger = logger
        connectionLogger[metadataKey: "remote"] = "\(facts.remoteAddress ?? "unknown")"
        let errorLogger = ConnectionErrorLogger(logger: connectionLogger)
        let negotiation = ApplicationProtocolNegotiationHandler { [self] result, channel in
            // The handshake is done: the client's certificate (if any) is known.
            if let tlsHandler = try? channel.pipeline.syncOperations.handler(type: NIOSSLServerHandler.self),
               let certificate = tlsHandler.peerCertificate {
                facts.clientCertificate = try? certificate.toDERBytes()
            }
            do {
                switch result {
                case .negotiated("h2"):
                    try configureHTTP2(channel, facts: facts, headDeadline: headDeadline, before: errorLogger)
                case .negotiated("http/1.1"), .fallback:
                    guard configuration.allowHTTP1 else { return channel.close() }
                    try configureHTTP1(channel, facts: facts, headDeadline: headDeadline, before: errorLogger)
                case .negotiated:
                    return channel.close()
                }
            } catch {
                connectionLogger.debug("connection set-up failed", metadata: ["error": "\(error)"])
                return channel.close()
            }
            return channel.eventLoop.makeSucceededVoidFuture()
        }
        let sniLogger = connectionLogger
        try operations.addHandler(ByteToMessageHandler(SNIHandler { result in
            var serverName: String?
            if case .hostname(let name) = result {
                facts.serverName = name
                serverName = name
            }
            guard let context = contexts.context(for: serverName) else {
                sniLogger.info("TLS handshake refused: no certificate for the server name",
                            metadata: ["sni": "\(serverName ?? "(none)")", "peer": "\(channel.remoteAddress.map(endpointText) ?? "?")"])
                let alert = channel.allocator.buffer(bytes: ServerTLSContexts.unrecognizedNameAlert)
                channel.writeAndFlush(alert).whenComplete { _ in channel.close(promise: nil) }
                return eventLoop.makeFailedFuture(ChannelError.inputClosed)
            }
            do {
                try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: context),
                                                               position: .before(negotiation))
            } catch {
                channel.close(promise: nil)
                return eventLoop.makeFailedFuture(error)
            }
            return eventLoop.makeSucceededVoidFuture()
        }))
        try operations.addHandler(negotiation)
        try operations.addHandler(errorLogger)
    }

    private func configureHTTP2(_ channel: any Channel, facts: ConnectionFacts, headDeadline: RequestHeadDeadline?,
                                before errorLogger: ConnectionErrorLogger) throws {
        let configuration = self.configuration
        var connection = NIOHTTP2Handler.ConnectionConfiguration()
        connection.initialSettings = [
            HTTP2Setting(parameter: .maxConcurrentStreams, value: configuration.maxConcurrentStreams),
            HTTP2Setting(parameter: .maxHeaderListSize, value: hardHeaderLimit),
            HTTP2Setting(parameter: .initialWindowSize, value: configuration.initialWindowSize),
        ]
        connection.targetWindowSize = min(16 << 20, configuration.initialWindowSize * 4)
        // A header block up to the hard limit, in 16 KiB frames, must not trip NIOHTTP2's
        // CONTINUATION flood guard (5 frames by default: a 100 KB header killed the connection
        // where the request deserved a 431).
        connection.maximumSequentialContinuationFrames = Self.continuationFrameAllowance(headerLimit: hardHeaderLimit)
        var stream = NIOHTTP2Handler.StreamConfiguration()
        stream.targetWindowSize = configuration.initialWindowSize
        stream.outboundBufferSizeHighWatermark = 256 << 10
        stream.outboundBufferSizeLowWatermark = 64 << 10
        let manager = NIOHTTP2ServerConnectionManagementHandler(
            eventLoop: channel.eventLoop,
            configuration: .init(maxIdleTime: configuration.idleTimeout.map { TimeAmount($0) }, maxAge: nil,
                                 maxGraceTime: TimeAmount(configuration.gracefulShutdownTimeout), keepalive: nil))
        let counter = StreamCounter(state: self, goawayChance: configuration.goawayChance, headDeadline: headDeadline)
        let handler = NIOHTTP2Handler(
            mode: .server, eventLoop: channel.eventLoop, connectionConfiguration: connection,
            streamConfiguration: stream, streamDelegate: StreamDelegates(manager.http2StreamDelegate, counter),
            inboundStreamInitializer: { [self] streamChannel in
                streamChannel.eventLoop.makeCompletedFuture {
                    try HTTP2ServerStream.start(on: streamChannel, state: self, facts: facts)
                }
            })
        try channel.pipeline.syncOperations.addHandler(HTTP2FrameAligner(expectsClientPreface: true),
                                                       position: .before(errorLogger))
        // A large first request, sent before the client read our SETTINGS, meets our header limit
        // (and a 431), not NIOHTTP2's 16 KiB pre-SETTINGS one (a connection error).
        try channel.pipeline.syncOperations.addHandler(EarlyHeaderBlockHold(holdLimit: hardHeaderLimit + (64 << 10)),
                                                       position: .before(errorLogger))
        try channel.pipeline.syncOperations.addHandler(handler, position: .before(errorLogger))
        try channel.pipeline.syncOperations.addHandler(manager, position: .before(errorLogger))
        let id = ObjectIdentifier(channel)
        let draining = mutable.withLockedValue { state -> Bool in
            state.connections[id]?.isHTTP2 = true
            state.statistics.http2Connections += 1
            return state.shuttingDown
        }
        // A shutdown that began while this connection negotiated ALPN.
        if draining { channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent()) }
    }

    private func configureHTTP1(_ channel: any Channel, facts: ConnectionFacts, headDeadline: RequestHeadDeadline?,
                                before errorLogger: ConnectionErrorLogger) throws {
        let operations = channel.pipeline.syncOperations
        if let headDeadline {
            try operations.addHandler(RequestHeadByteWatcher(deadline: headDeadline), position: .before(errorLogger))
        }
        try operations.configureHTTPServerPipeline(position: .before(errorLogger), withPipeliningAssistance: true,
                                                   withErrorHandling: false)
        if let headDeadline {
            // Right after the parser, before pipelining holds a second request's head back.
            let decoder = try operations.handler(type: ByteToMessageHandler<HTTPRequestDecoder>.self)
            try operations.addHandler(RequestHeadPartWatcher(deadline: headDeadline), position: .after(decoder))
        }
        // In place of NIOHTTP1's error handler: 431 (not 400) for a head too large to parse.
        try operations.addHandler(HTTP1ProtocolErrorResponder(), position: .before(errorLogger))
        let connection = try HTTP1ServerConnection.start(on: channel, state: self, facts: facts, before: errorLogger)
        let id = ObjectIdentifier(channel)
        let draining = mutable.withLockedValue { state -> Bool in
            state.connections[id]?.http1 = connection
            state.statistics.http1Connections += 1
            return state.shuttingDown
        }
        if draining { connection.drain() }
    }

    /// Sends GOAWAY on every HTTP/2 connection; HTTP/1.1 connections close after their current request.
    func quiesceAll() {
        let connections = mutable.withLockedValue { Array($0.connections.values) }
        for connection in connections {
            if connection.isHTTP2 {
                connection.channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
            } else if let http1 = connection.http1 {
                http1.drain()
            }
        }
    }

    /// Closes every connection without waiting for requests in flight.
    func closeAllNow() async {
        let all = mutable.withLockedValue { state -> [Connection] in
            state.shuttingDown = true
            return Array(state.connections.values)
        }
        for connection in all { try? await connection.channel.close() }
    }

    func shutdown() async {
        mutable.withLockedValue { $0.shuttingDown = true }
        quiesceAll()
        // Connections still in their TLS handshake have nothing in flight: close them now.
        let pending = mutable.withLockedValue { $0.connections.values.filter { !$0.isHTTP2 && $0.http1 == nil } }
        for connection in pending { connection.channel.close(promise: nil) }
        let deadline = ContinuousClock.now + configuration.gracefulShutdownTimeout
        while ContinuousClock.now < deadline {
            if mutable.withLockedValue({ $0.connections.isEmpty }) { return }
            try? await Task.sleep(for: .milliseconds(20))
        }
        let remaining = mutable.withLockedValue { Array($0.connections.values) }
        for connection in remaining { try? await connection.channel.close() }
    }
}

/// Counts a connection's open streams (for the statistics' peak), and rolls the GOAWAY chance
/// when one ends. Loop-confined.
final class StreamCounter: NIOHTTP2StreamDelegate, @unchecked Sendable {
    private let state: HTTP2ServerState
    private let goawayChance: Double
    private var open = 0
    private var sentGoaway = false
    private let headDeadline: RequestHeadDeadline?

    init(state: HTTP2ServerState, goawayChance: Double = 0, headDeadline: RequestHeadDeadline? = nil) {
        self.state = state
        self.headDeadline = headDeadline
        self.goawayChance = goawayChance.isNaN ? 0 : min(1, max(0, goawayChance))
    }

    func streamCreated(_ id: HTTP2StreamID, channel: any Channel) {
        // A stream opens when its whole header block has arrived: the head clock stops for good.
        headDeadline?.stop()
        open += 1
        let now = open
        state.count { $0.peakConcurrentStreams = max($0.peakConcurrentStreams, now) }
    }

    func streamClosed(_ id: HTTP2StreamID, channel: any Channel) {
        open -= 1
        // GOAWAY chance: now and then, ask this client to move to a new connection (the
        // connection manager sends GOAWAY, lets streams in flight finish, then closes).
        if !sentGoaway, goawayChance > 0, Double.random(in: 0..<1) < goawayChance, let connection = channel.parent {
            sentGoaway = true
            state.count { $0.goawayChanceConnections += 1 }
            // Not from inside this callback: the stream's last frames are still on their way out.
            connection.eventLoop.execute {
                connection.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
            }
        }
    }
}

/// Passes stream events to two delegates.
struct StreamDelegates: NIOHTTP2StreamDelegate {
    let first: any NIOHTTP2StreamDelegate
    let second: any NIOHTTP2StreamDelegate

    init(_ first: any NIOHTTP2StreamDelegate, _ second: any NIOHTTP2StreamDelegate) {
        self.first = first
        self.second = second
    }

    func streamCreated(_ id: HTTP2StreamID, channel: any Channel) {
        first.streamCreated(id, channel: channel)
        second.streamCreated(id, channel: channel)
    }

    func streamClosed(_ id: HTTP2StreamID, channel: any Channel) {
        first.streamClosed(id, channel: channel)
        second.streamClosed(id, channel: channel)
    }
}

/// Logs errors that reach the end of a connection's pipeline (a failed handshake, a protocol
/// error, a stream error) so that they do not go unhandled; the server carries on, closing
/// only a connection NIOHTTP2 has finished with.
final class ConnectionErrorLogger: ChannelInboundHandler, Sendable {
    typealias InboundIn = NIOAny
    let logger: Logger

    init(logger: Logger) { self.logger = logger }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // TLS failures close the connection by themselves; NIOHTTP2 reports stream errors here
        // too (a reset stream must not take the connection down), and after a connection error
        // it has sent GOAWAY: the client closes, or the idle timeout does.
        logger.debug("connection error", metadata: ["error": "\(error)"])
        // Except in one case: after this server's GOAWAY and its last stream, NIOHTTP2 takes any
        // further frame (the client's WINDOW_UPDATE or SETTINGS ack, which cross the GOAWAY on the
        // wire) for a protocol error: it answers GOAWAY(PROTOCOL_ERROR), stops reading, and would
        // never close. There is nothing left to serve: close now (RFC 9113, section 5.4.1).
        if error is NIOHTTP2Errors.IOOnClosedConnection {
            let channel = context.channel
            context.eventLoop.execute { channel.close(promise: nil) }
        }
    }
}
