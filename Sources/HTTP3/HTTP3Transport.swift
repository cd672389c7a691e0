import HTTPAPI
import HTTPTypes
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import QUIC
import QUICSocket

/// An HTTP/3 client: an ``HTTPRoundTripper`` that pools QUIC connections per origin.
///
/// Requests to one origin share a connection and run concurrently up to the server's stream
/// limit (MAX_STREAMS); further requests wait for a stream. A connection that received GOAWAY
/// takes no new requests, and requests it did not process are retried on a new connection
/// when their body can be replayed. Idle connections close after a timeout.
public final class HTTP3Transport: HTTPRoundTripper {
    /// Client settings.
    public struct Configuration: Sendable {
        /// TLS settings; the ALPN list is set to `h3`. Verification is on by default.
        public var tls: QUICTLSConfiguration
        /// QUIC transport settings (timeouts, windows); `tls` above replaces its TLS part.
        public var quic: QUICConfiguration
        /// HTTP/3 settings.
        public var http3: HTTP3Settings
        /// A connection with no request for this long is closed.
        public var idleConnectionTimeout: Duration
        /// Fixed addresses for host names, as `"host:port" -> "address"` (curl's `--resolve`).
        public var resolve: [String: String]
        /// Options for each connection's UDP socket (buffer sizes, ECN, GSO and GRO).
        public var socketOptions: UDPSocketOptions
        /// The most connections opened to one origin at once. With more than one, concurrent
        /// requests are spread over them (each goes to the least loaded connection, and a new
        /// connection is opened while every open one is busy), so that the load of one client
        /// reaches several server instances behind a layer-4 load balancer.
        public var maxConnectionsPerOrigin: Int
        /// How often a request the server did not process (GOAWAY, H3_REQUEST_REJECTED) is
        /// sent again on another connection before its error is returned.
        public var maxRejectedRetries: Int

        /// Creates settings with defaults.
        public init(tls: QUICTLSConfiguration = .makeClientConfiguration(applicationProtocols: ["h3"]),
                    http3: HTTP3Settings = HTTP3Settings(), idleConnectionTimeout: Duration = .seconds(60),
                    resolve: [String: String] = [:], socketOptions: UDPSocketOptions = UDPSocketOptions(),
                    maxConnectionsPerOrigin: Int = 1, maxRejectedRetries: Int = 8) {
            var tls = tls
            tls.applicationProtocols = ["h3"]
            self.tls = tls
            self.quic = QUICConfiguration(tls: tls)
            self.http3 = http3
            self.idleConnectionTimeout = idleConnectionTimeout
            self.resolve = resolve
            self.socketOptions = socketOptions
            self.maxConnectionsPerOrigin = max(1, maxConnectionsPerOrigin)
            self.maxRejectedRetries = max(0, maxRejectedRetries)
        }
    }

    let configuration: Configuration
    let eventLoopGroup: any EventLoopGroup
    let logger: Logger
    private let pool: ConnectionPool<Origin, HTTP3ClientConnection>

    /// Creates a transport. Call ``shutdown()`` when done.
    public init(configuration: Configuration = Configuration(),
                eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
                logger: Logger = Logger(label: "swift-h3.http3.client")) {
        var configuration = configuration
        configuration.tls.applicationProtocols = ["h3"]
        configuration.quic.tls = configuration.tls
        self.configuration = configuration
        self.eventLoopGroup = eventLoopGroup
        self.logger = logger
        self.pool = ConnectionPool(maxConnectionsPerKey: max(1, configuration.maxConnectionsPerOrigin))
    }

    public func roundTrip(_ request: HTTPRequest, body: HTTPBody?, options: HTTPRequestOptions) async throws -> HTTPClientResponse {
        try await roundTrip(request, body: body, options: options, alternative: nil)
    }

    /// Sends a request to an alternative service of its origin (RFC 7838): the connection goes
    /// to `alternative` (host and port), while TLS still checks the origin's name and the
    /// request keeps the origin's authority. `nil` connects to the origin itself.
    package func roundTrip(_ request: HTTPRequest, body: HTTPBody?, options: HTTPRequestOptions,
                           alternative: (host: String, port: Int)?) async throws -> HTTPClientResponse {
        let direct = try Origin(request)
        let origin = alternative.map { direct.via(host: $0.host, port: $0.port) } ?? direct
        let started = ContinuousClock.now
        if let timeout = options.timeout {
            return try await withRequestDeadline(timeout) {
                try await self.send(request, body: body, options: options, origin: origin, started: started)
            }
        }
        return try await send(request, body: body, options: options, origin: origin, started: started)
    }

    private func send(_ request: HTTPRequest, body: HTTPBody?, options: HTTPRequestOptions, origin: Origin,
                      started: ContinuousClock.Instant) async throws -> HTTPClientResponse {
        let request = request.preparedForSending(body: body)
        // A body that is not bytes in memory cannot be sent twice.
        let replayable = body?.isReplayable ?? true
        var retries = 0
        while true {
            let (connection, _, reused, connectTime) = try await pool.connection(for: origin) { load in
                try await HTTP3ClientConnection.connect(origin: origin, transport: self, load: load)
            }
            do {
                return try await connection.send(request, body: body, options: options, bodyReplayable: replayable,
                                                 reused: reused, connectTime: connectTime, started: started)
            } catch let error as RequestNotSent {
                // The connection went away (GOAWAY, close) before the request left: nothing was
                // sent, the body was not touched, so any request can go on another connection.
                guard retries < configuration.maxRejectedRetries else { throw error.underlying }
                retries += 1
                if !connection.isUsable { await pool.remove(connection) }
                continue
            } catch HTTPError.requestRejected where replayable && retries < configuration.maxRejectedRetries {
                // GOAWAY or H3_REQUEST_REJECTED: the server did not process it. Try another connection.
                retries += 1
                if !connection.isUsable { await pool.remove(connection) }
                continue
            }
        }
    }

    /// Opens (or finds) a connection to `host:port` without sending a request, so a later
    /// request can use it at once; used to race HTTP/3 against HTTP/2. `alternative` as in
    /// ``roundTrip(_:body:options:alternative:)``.
    package func prepareConnection(host: String, port: Int, alternative: (host: String, port: Int)? = nil) async throws {
        let direct = Origin(host: host, port: port)
        let origin = alternative.map { direct.via(host: $0.host, port: $0.port) } ?? direct
        let (connection, _, _, _) = try await pool.connection(for: origin) { load in
            try await HTTP3ClientConnection.connect(origin: origin, transport: self, load: load)
        }
        connection.requestFinished()  // nothing was sent: give the slot back
    }

    /// Closes every pooled connection.
    public func shutdown() async {
        for connection in await pool.removeAll() {
            await connection.close()
        }
    }

    /// The connections open now, per origin (`host:port`), with the requests each carries.
    package func connectionLoads() async -> [String: [Int]] {
        var result: [String: [Int]] = [:]
        for (origin, loads) in await pool.loads() { result["\(origin.connectHost):\(origin.connectPort)"] = loads }
        return result
    }

    /// Starts a TLS key update on the pooled connection to the request's origin (a test
    /// switch: `h3 --key-update-after`).
    /// - Throws: ``HTTPError/invalidRequest(_:)`` when there is no such connection or the
    ///   update is not possible now (the previous one is not finished).
    package func initiateKeyUpdate(for request: HTTPRequest) async throws {
        guard let connection = await pool.existing(for: try Origin(request)) else {
            throw HTTPError.invalidRequest("no connection to \(request.authority ?? "")")
        }
        let core = connection.core
        do {
            try await core.eventLoop.submit { () throws -> Void in try core.initiateKeyUpdate() }.get()
        } catch {
            throw HTTPError.invalidRequest("\(error)")
        }
    }

    /// Moves the pooled connection to the request's origin to a new local port (connection
    /// migration; a test switch: `h3 --migrate-after`).
    package func migrate(for request: HTTPRequest) async throws {
        guard let connection = await pool.existing(for: try Origin(request)) else {
            throw HTTPError.invalidRequest("no connection to \(request.authority ?? "")")
        }
        do {
            try await connection.core.migrateClient()
        } catch {
            throw HTTPError.invalidRequest("\(error)")
        }
    }

    /// Counters of the transport's connections (for diagnostics and tests).
    package func statistics() async -> (connectionsOpened: Int, sessions: [HTTP3SessionStatistics]) {
        let opened = await pool.connectionsOpened
        let connections = await pool.connections()
        var sessions: [HTTP3SessionStatistics] = []
        for connection in connections {
            if let stats = try? await connection.statistics() { sessions.append(stats) }
        }
        return (opened, sessions)
    }
}

/// Where requests go: the origin's host and port, and where its connections go (the origin
/// itself, or an alternative service of it).
struct Origin: Hashable, Sendable, CustomStringConvertible {
    let host: String
    let port: Int
    /// The host connected to (the origin's host unless an alternative service is used).
    private(set) var connectHost: String
    /// The port connected to.
    private(set) var connectPort: Int

    init(host: String, port: Int) {
        self.host = host
        self.port = port
        self.connectHost = host
        self.connectPort = port
    }

    /// The same origin reached through an alternative service at `host:port`.
    func via(host: String, port: Int) -> Origin {
        var copy = self
        copy.connectHost = host.isEmpty ? self.host : host
        copy.connectPort = port
        return copy
    }

    init(_ request: HTTPRequest) throws(HTTPError) {
        let (host, port) = try request.httpsOrigin(transportName: "HTTP/3")
        self.host = host
        self.port = port
        self.connectHost = host
        self.connectPort = port
    }

    var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// A request failed before any of it was sent (no stream was opened): safe to send elsewhere.
struct RequestNotSent: Error {
    let underlying: any Error
}

/// One pooled HTTP/3 client connection.
final class HTTP3ClientConnection: PooledConnection {
    let core: ConnectionCore
    let session: HTTP3Session
    private let usable = NIOLockedValueBox(true)
    private let loopState: LoopState
    let idleTimeout: Duration

    /// Loop-confined bookkeeping for the idle timer.
    final class LoopState: @unchecked Sendable {
        var inFlight = 0
        var idleTimer: Scheduled<Void>?
    }

    private let infoBox: NIOLockedValueBox<HTTPConnectionInfo>
    /// What responses report about the connection (refreshed when a 0-RTT handshake completes).
    var info: HTTPConnectionInfo { infoBox.withLockedValue { $0 } }

    /// Requests this connection carries, as the pool counts them.
    let load: ConnectionLoad

    private init(core: ConnectionCore, session: HTTP3Session, idleTimeout: Duration, info: HTTPConnectionInfo,
                 load: ConnectionLoad) {
        self.load = load
        self.core = core
        self.session = session
        self.idleTimeout = idleTimeout
        self.infoBox = NIOLockedValueBox(info)
        self.loopState = LoopState()
    }

    /// The connection's addresses and TLS facts as they are now (on the loop).
    private static func makeInfo(_ core: ConnectionCore) -> HTTPConnectionInfo {
        let certificate = core.peerCertificateSummary
        return HTTPConnectionInfo(
            transport: "QUIC v1", localAddress: core.localAddress.endpointText,
            remoteAddress: core.remoteAddress.endpointText, tlsParameters: core.tlsParameters,
            applicationProtocol: core.negotiatedApplicationProtocol, sessionResumed: core.tlsSessionResumed,
            peerCertificateSubject: certificate?.subject, peerCertificateIssuer: certificate?.issuer,
            peerCertificateNotAfter: certificate?.notAfter)
    }

    var isUsable: Bool { usable.withLockedValue { $0 } }

    /// One request (or a prepared connection nobody used) ended: the pool's load drops.
    func requestFinished() {
        load.decrement()
    }

    static func connect(origin: Origin, transport: HTTP3Transport, load: ConnectionLoad) async throws -> HTTP3ClientConnection {
        let configuration = transport.configuration
        var quic = configuration.quic
        if quic.tls.serverName == nil { quic.tls.serverName = origin.host }
        let address = configuration.resolve["\(origin.connectHost):\(origin.connectPort)"] ?? origin.connectHost
        let core: ConnectionCore
        do {
            core = try await QUICClient.connectCore(
                host: address, port: origin.connectPort, configuration: quic, socketOptions: configuration.socketOptions,
                eventLoopGroup: transport.eventLoopGroup, logger: transport.logger, initialToken: nil,
                holdsInboundForEarlyData: true, makeApplication: { core in
                    try HTTP3Session(core: core, role: .client, settings: configuration.http3, maxIncomingStreams: 0,
                                     logger: transport.logger)
                })
        } catch let error as QUICError {
            throw httpError(error)
        } catch {
            throw HTTPError.invalidRequest("\(error)")
        }
        let (application, info) = try await core.eventLoop.submit { () -> (HTTP3Session?, HTTPConnectionInfo) in
            (core.application as? HTTP3Session, makeInfo(core))
        }.get()
        guard let session = application else {
            throw HTTPError.connectionClosed("the connection closed during set-up")
        }
        let connection = HTTP3ClientConnection(core: core, session: session, idleTimeout: configuration.idleConnectionTimeout,
                                               info: info, load: load)
        try await core.eventLoop.submit {
            session.onDrain = { [weak connection] in connection?.usable.withLockedValue { $0 = false } }
            if !session.acceptsRequests { connection.usable.withLockedValue { $0 = false } }
            // Resumed with a 0-RTT key: the control streams go now, requests may follow early.
            if core.isSendingEarlyData {
                _ = session.startEarlyData()
                // The TLS facts (resumed or not, cipher) are known once the handshake completes.
                core.handshakeFuture.whenSuccess { [weak connection] in
                    connection?.infoBox.withLockedValue { $0 = makeInfo(core) }
                }
            }
            connection.armIdleTimer()
        }.get()
        return connection
    }

    /// Waits until the handshake is complete (at once when it is).
    private func waitForHandshake() async throws {
        let core = self.core
        do {
            try await core.eventLoop.flatSubmit { core.handshakeFuture }.get()
        } catch let error as QUICError {
            throw httpError(error)
        }
    }

    /// Sends one request on this connection, in 0-RTT when the connection is still in early
    /// data and ``EarlyDataPolicy`` allows it. A request whose early data the server refused
    /// goes again after the handshake, as does one answered 425 (Too Early), once: the caller
    /// sees only the final response.
    func send(_ request: HTTPRequest, body: HTTPBody?, options: HTTPRequestOptions, bodyReplayable: Bool, reused: Bool,
              connectTime: Duration, started: ContinuousClock.Instant) async throws -> HTTPClientResponse {
        var mayUseEarlyData = EarlyDataPolicy.mayUseEarlyData(method: request.method, allowEarlyData: options.allowEarlyData,
                                                              bodyReplayable: bodyReplayable)
        var retriedTooEarly = false
        let session = self.session, loop = core.eventLoop
        while true {
            let response = try await sendOnce(request, body: body, mayUseEarlyData: mayUseEarlyData, reused: reused,
                                              connectTime: connectTime, started: started)
            guard let response else {
                // Refused early data: nothing reached the server. Again, after the handshake.
                try await waitForHandshake()
                loop.execute { session.countRetry(tooEarly: false) }
                mayUseEarlyData = false
                continue
            }
            let sentEarly = response.metadata.earlyDataBytes > 0
            if EarlyDataPolicy.shouldRetryTooEarly(status: response.head.status.code, sentEarly: sentEarly,
                                                   alreadyRetried: retriedTooEarly) {
                // 425 Too Early (RFC 8470, 5.2): drop this answer, send again once the handshake is done.
                response.body.discard()
                try await waitForHandshake()
                loop.execute { session.countRetry(tooEarly: true) }
                retriedTooEarly = true
                mayUseEarlyData = false
                continue
            }
            return response
        }
    }

    /// One attempt at a request. Returns `nil` for the response when the request went in early
    /// data that the server refused (it must be sent again).
    private func sendOnce(_ request: HTTPRequest, body: HTTPBody?, mayUseEarlyData: Bool, reused: Bool,
                          connectTime: Duration, started: ContinuousClock.Instant)
        async throws -> HTTPClientResponse? {
        let session = self.session, core = self.core, loop = core.eventLoop
        let state = loopState
        // A stream within the server's MAX_STREAMS: at once, or when one frees up.
        let hasBody = body != nil
        loop.execute {
            state.inFlight += 1
            state.idleTimer?.cancel()
            state.idleTimer = nil
        }
        let stream: RequestStream
        do {
            // A task cancelled before its request went out sends nothing.
            try Task.checkCancellation()
            let token = try await loop.submit { session.makeRequestToken() }.get()
            stream = try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<RequestStream, any Error>) in
                    loop.execute {
                        session.startRequest(request, hasBody: hasBody, mayUseEarlyData: mayUseEarlyData, token: token,
                                             continuation: continuation)
                        // The request is queued (for 0-RTT if it may go early): the server's reply may be read.
                        core.releaseInboundHeldForEarlyData()
                    }
                }
            } onCancel: {
                loop.execute { session.cancelPendingRequest(token: token) }
            }
        } catch {
            requestFinished()
            loop.execute {
                state.inFlight -= 1
                if state.inFlight == 0 { self.armIdleTimer() }
            }
            if error is CancellationError { throw error }
            throw RequestNotSent(underlying: error)
        }
        var timings = HTTPTimings()
        timings.connected = connectTime
        timings.tlsHandshakeDone = connectTime
        timings.requestSent = ContinuousClock.now - started
        let writer = HTTP3MessageWriter(stream: stream, session: session)
        let finished: @Sendable () -> Void = { [self] in
            requestFinished()
            loop.execute {
                state.inFlight -= 1
                if state.inFlight == 0 { self.armIdleTimer() }
            }
        }
        if let body {
            Task {
                do {
                    for try await chunk in body { try await writer.write(chunk) }
                    try await writer.finish(trailers: try await body.trailers())
                } catch {
                    // The upload failed (or the server stopped reading it): end our side only;
                    // a response the server already sent stays readable.
                    writer.resetWriting(code: HTTP3ErrorCode.requestCancelled)
                }
            }
        }
        do {
            try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                    loop.execute { session.awaitHead(stream, continuation: continuation) }
                }
            } onCancel: {
                writer.reset(code: HTTP3ErrorCode.requestCancelled)
            }
            try Task.checkCancellation()
        } catch {
            finished()
            if try await loop.submit({ stream.earlyRejected }).get() { return nil }
            if error is CancellationError { writer.reset(code: HTTP3ErrorCode.requestCancelled) }
            throw error
        }
        timings.firstResponseByte = ContinuousClock.now - started
        let (fields, earlyBytes) = try await loop.submit { (stream.head ?? [], stream.earlyBytes) }.get()
        let head: HTTPResponse
        do {
            head = try HTTP3Session.makeResponse(fields)
        } catch {
            finished()
            writer.reset(code: HTTP3ErrorCode.messageError)
            throw error
        }
        let length: Int64? = request.method == .head ? 0 : head.headerFields[.contentLength].flatMap { Int64($0) }
        let source = TrackedBodySource(inner: HTTP3BodySource(stream: stream, session: session), onEnd: finished)
        let metadata = HTTPResponseMetadata(protocolVersion: .http3, remoteAddress: info.remoteAddress,
                                            connectionReused: reused, earlyDataBytes: earlyBytes, timings: timings,
                                            connection: info)
        return HTTPClientResponse(head: head, body: HTTPBody(source: source, length: length), metadata: metadata)
    }

    private func armIdleTimer() {
        let core = self.core, state = loopState
        state.idleTimer?.cancel()
        let timeout = TimeAmount(idleTimeout)
        state.idleTimer = core.eventLoop.scheduleTask(in: timeout) { [weak self] in
            guard let self, state.inFlight == 0 else { return }
            self.usable.withLockedValue { $0 = false }
            core.close(applicationError: HTTP3ErrorCode.noError, reason: "")
        }
    }

    func close() async {
        usable.withLockedValue { $0 = false }
        let core = self.core
        try? await core.eventLoop.submit { core.close(applicationError: HTTP3ErrorCode.noError, reason: "") }.get()
    }

    func statistics() async throws -> HTTP3SessionStatistics {
        let session = self.session
        return try await core.eventLoop.submit { session.statistics }.get()
    }
}

/// Reports once when a response body has been read to its end, failed, or was discarded.
final class TrackedBodySource: HTTPBodySource, Sendable {
    let inner: HTTP3BodySource
    private let onEnd: @Sendable () -> Void
    private let ended = NIOLockedValueBox(false)

    init(inner: HTTP3BodySource, onEnd: @escaping @Sendable () -> Void) {
        self.inner = inner
        self.onEnd = onEnd
    }

    deinit {
        // A response dropped unread: release its stream and flow-control credit.
        if !ended.withLockedValue({ $0 }) {
            inner.cancel()
            onEnd()
        }
    }

    private func end() {
        let first = ended.withLockedValue { ended -> Bool in
            defer { ended = true }
            return !ended
        }
        if first { onEnd() }
    }

    func next() async throws -> ByteBuffer? {
        do {
            let chunk = try await inner.next()
            if chunk == nil { end() }
            return chunk
        } catch {
            end()
            throw error
        }
    }

    func trailers() async throws -> HTTPFields? { try await inner.trailers() }

    func cancel() {
        inner.cancel()
        end()
    }
}
