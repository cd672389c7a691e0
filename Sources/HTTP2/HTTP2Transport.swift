import HTTPAPI
import HTTPTypes
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import QUIC

/// An HTTP/2 client over TCP + TLS: an ``HTTPRoundTripper`` that keeps one multiplexed
/// connection per origin — the counterpart of `HTTP3Transport`, with the same configuration shape.
///
/// Requests to one origin share a connection, up to ``Configuration/maxConcurrentStreams`` at
/// once (and the server's SETTINGS_MAX_CONCURRENT_STREAMS); further requests wait for a stream.
/// GOAWAY from the server is handled transparently: the connection takes no new requests;
/// requests that never left it, and requests the server did not process (REFUSED_STREAM, stream
/// ID above its last-stream-ID), are sent again on another connection (a streamed body only if
/// none of it was read yet); a request the server may have processed is sent again only if its
/// method is idempotent. Idle connections close after a timeout.
public final class HTTP2Transport: HTTPRoundTripper {
    /// Client settings.
    public struct Configuration: Sendable {
        /// TLS settings (the same type as HTTP/3's); the ALPN list is set to `h2`. Verification is on by default.
        public var tls: QUICTLSConfiguration
        /// How long connecting (TCP and the TLS handshake) may take.
        public var connectTimeout: Duration
        /// A connection with no request for this long is closed.
        public var idleConnectionTimeout: Duration
        /// Fixed addresses for host names, as `"host:port" -> "address"` (curl's `--resolve`).
        public var resolve: [String: String]
        /// Requests one connection carries at once (the server's limit applies too).
        public var maxConcurrentStreams: Int
        /// The flow-control window per stream: response bytes that may arrive unread.
        public var initialWindowSize: Int
        /// The most connections opened to one origin at once. With more than one, concurrent
        /// requests are spread over them (each goes to the connection with the fewest requests
        /// waiting for their response head, and a new connection is opened while every open one
        /// is busy), so the load of one client reaches several instances behind a load balancer.
        public var maxConnectionsPerOrigin: Int = 1
        /// How often one request is sent again after the server refused it (REFUSED_STREAM on a
        /// connection it had not asked to leave) or after its connection ended before an
        /// idempotent request was answered. Requests turned away only because their connection
        /// was going away (never sent, above a GOAWAY's last-stream-ID, refused after GOAWAY)
        /// go to another connection without using this budget (at most 32 times each).
        public var maxRejectedRetries: Int = 8

        /// Creates settings with defaults.
        public init(tls: QUICTLSConfiguration = .makeClientConfiguration(applicationProtocols: ["h2"]),
                    connectTimeout: Duration = .seconds(10), idleConnectionTimeout: Duration = .seconds(60),
                    resolve: [String: String] = [:], maxConcurrentStreams: Int = 100, initialWindowSize: Int = 1 << 20) {
            var tls = tls
            tls.applicationProtocols = ["h2"]
            self.tls = tls
            self.connectTimeout = connectTimeout
            self.idleConnectionTimeout = idleConnectionTimeout
            self.resolve = resolve
            self.maxConcurrentStreams = maxConcurrentStreams
            self.initialWindowSize = initialWindowSize
        }
    }

    let configuration: Configuration
    let eventLoopGroup: any EventLoopGroup
    let logger: Logger
    private let pool: ConnectionPool<HTTP2Origin, HTTP2ClientConnection>
    private let sslContextBox = NIOLockedValueBox<Result<NIOSSLContext, HTTP2ConfigurationError>?>(nil)

    /// Creates a transport. Call ``shutdown()`` when done.
    public init(configuration: Configuration = Configuration(),
                eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
                logger: Logger = Logger(label: "swift-h3.http2.client")) {
        var configuration = configuration
        configuration.tls.applicationProtocols = ["h2"]
        configuration.maxConcurrentStreams = max(1, configuration.maxConcurrentStreams)
        configuration.initialWindowSize = min(max(65535, configuration.initialWindowSize), Int(Int32.max))
        configuration.maxConnectionsPerOrigin = max(1, configuration.maxConnectionsPerOrigin)
        configuration.maxRejectedRetries = max(0, configuration.maxRejectedRetries)
        self.configuration = configuration
        self.eventLoopGroup = eventLoopGroup
        self.logger = logger
        self.pool = ConnectionPool(maxConnectionsPerKey: configuration.maxConnectionsPerOrigin)
    }

    /// The TLS context, made once.
    func sslContext() throws(HTTPError) -> NIOSSLContext {
        let tls = configuration.tls
        let result = sslContextBox.withLockedValue { box in
            if let box { return box }
            let made = Result { () throws(HTTP2ConfigurationError) -> NIOSSLContext in try TLSContexts.client(tls, alpn: ["h2"]) }
            box = made
            return made
        }
        switch result {
        case .success(let context): return context
        case .failure(let error): throw .invalidRequest(error.description)
        }
    }

    public func roundTrip(_ request: HTTPRequest, body: HTTPBody?, options: HTTPRequestOptions) async throws -> HTTPClientResponse {
        let origin = try HTTP2Origin(request)
        let started = ContinuousClock.now
        if let timeout = options.timeout {
            return try await withRequestDeadline(timeout) {
                try await self.send(request, body: body, options: options, origin: origin, started: started)
            }
        }
        return try await send(request, body: body, options: options, origin: origin, started: started)
    }

    /// Sends `request` (its `:authority` unchanged) over a connection to `host:port` instead of
    /// the request's own origin: a reverse proxy keeps the client's authority while connecting to
    /// its backend. TLS verifies the certificate against `host`.
    package func roundTrip(_ request: HTTPRequest, body: HTTPBody?, options: HTTPRequestOptions,
                           connectingTo host: String, port: Int) async throws -> HTTPClientResponse {
        let origin = HTTP2Origin(host: host, port: port)
        let started = ContinuousClock.now
        if let timeout = options.timeout {
            return try await withRequestDeadline(timeout) {
                try await self.send(request, body: body, options: options, origin: origin, started: started)
            }
        }
        return try await send(request, body: body, options: options, origin: origin, started: started)
    }

    private func send(_ request: HTTPRequest, body: HTTPBody?, options: HTTPRequestOptions, origin: HTTP2Origin,
                      started: ContinuousClock.Instant) async throws -> HTTPClientResponse {
        let request = request.preparedForSending(body: body)
        // A body that is not bytes in memory cannot be sent twice, unless nothing of it was read yet.
        let replayable = body?.isReplayable ?? true
        var policy = HTTP2RetryPolicy(maxRejectedRetries: configuration.maxRejectedRetries)
        let idempotent = HTTP2RetryPolicy.isIdempotent(request.method)
        while true {
            let (connection, load, reused, connectTime) = try await pool.connection(for: origin) { _ in
                try await HTTP2ClientConnection.connect(origin: origin, transport: self)
            }
            // The pool's load counts requests until their response head arrives.
            defer { load.decrement() }
            let bodyUse = BodyUse()
            do {
                return try await connection.send(request, body: body, options: options, reused: reused,
                                                 connectTime: connectTime, started: started, bodyUse: bodyUse)
            } catch let failure as HTTP2AttemptFailure {
                // A connection that received GOAWAY (or closed) takes no new requests.
                if !connection.isUsable { await pool.remove(connection) }
                if Task.isCancelled { throw CancellationError() }
                let bodyStarted = bodyUse.started
                guard policy.shouldRetry(failure.fate, replayable: replayable, bodyStarted: bodyStarted,
                                         idempotent: idempotent) else {
                    throw HTTP2RetryPolicy.finalError(failure.fate, underlying: failure.underlying,
                                                      bodyStarted: bodyStarted, replayable: replayable)
                }
                logger.debug("sending the request again", metadata: [
                    "path": "\(request.path ?? "")", "why": "\(failure.fate)", "error": "\(failure.underlying)",
                ])
            }
        }
    }

    /// Opens (or finds) a pooled connection to `host:port` without sending a request, so the
    /// next request there goes out at once (a client racing HTTP/3 against HTTP/2 uses this).
    public func prepareConnection(host: String, port: Int) async throws {
        let authority = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        let origin = try HTTP2Origin(HTTPRequest(method: .get, scheme: "https", authority: authority, path: "/"))
        let (_, load, _, _) = try await pool.connection(for: origin) { _ in
            try await HTTP2ClientConnection.connect(origin: origin, transport: self)
        }
        load.decrement()  // nothing was sent
    }

    /// Closes every pooled connection.
    public func shutdown() async {
        for connection in await pool.removeAll() {
            await connection.close()
        }
    }

    /// Counters (for diagnostics and tests): connections opened so far, and the number open now.
    package func statistics() async -> (connectionsOpened: Int, open: Int) {
        (await pool.connectionsOpened, await pool.connections().filter(\.isUsable).count)
    }

    /// The usable open connections per origin (`host:port`), with the requests each is waiting on.
    package func connectionLoads() async -> [String: [Int]] {
        var result: [String: [Int]] = [:]
        for (origin, loads) in await pool.loads() { result[origin.description] = loads }
        return result
    }
}

/// Whether a request body's first chunk was taken (after that, the body cannot be sent again).
final class BodyUse: Sendable {
    private let box = NIOLockedValueBox(false)
    var started: Bool { box.withLockedValue { $0 } }
    func markStarted() { box.withLockedValue { $0 = true } }
}

/// Where requests go: host and port of an https URL.
struct HTTP2Origin: Hashable, Sendable, CustomStringConvertible {
    let host: String
    let port: Int

    init(_ request: HTTPRequest) throws(HTTPError) {
        let (host, port) = try request.httpsOrigin(transportName: "HTTP/2")
        self.host = host
        self.port = port
    }

    init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

