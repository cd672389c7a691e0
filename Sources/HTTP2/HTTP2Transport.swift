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
/// GOAWAY from the server is handled transparently: the connection takes no new requests,
/// requests the server did not process (stream ID above its last-stream-ID) are sent again on a
/// new connection. Idle connections close after a timeout.
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
    private let pool = HTTP2ConnectionPool()
    private let sslContextBox = NIOLockedValueBox<Result<NIOSSLContext, HTTP2ConfigurationError>?>(nil)

    /// Creates a transport. Call ``shutdown()`` when done.
    public init(configuration: Configuration = Configuration(),
                eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
                logger: Logger = Logger(label: "swift-h3.http2.client")) {
        var configuration = configuration
        configuration.tls.applicationProtocols = ["h2"]
        configuration.maxConcurrentStreams = max(1, configuration.maxConcurrentStreams)
        configuration.initialWindowSize = min(max(65535, configuration.initialWindowSize), Int(Int32.max))
        self.configuration = configuration
        self.eventLoopGroup = eventLoopGroup
        self.logger = logger
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
            return try await http2Deadline(timeout) {
                try await self.send(request, body: body, options: options, origin: origin, started: started)
            }
        }
        return try await send(request, body: body, options: options, origin: origin, started: started)
    }

    private func send(_ request: HTTPRequest, body: HTTPBody?, options: HTTPRequestOptions, origin: HTTP2Origin,
                      started: ContinuousClock.Instant) async throws -> HTTPClientResponse {
        var request = request
        if request.scheme == nil { request.scheme = "https" }
        if let length = body?.length, request.headerFields[.contentLength] == nil, request.method != .get || length > 0 {
            request.headerFields[.contentLength] = String(length)
        }
        // A body that is not bytes in memory cannot be sent twice, unless nothing of it was read yet.
        let replayable: Bool
        switch body?.storage {
        case .none, .bytes: replayable = true
        case .source, .sequence: replayable = false
        }
        var attempt = 0
        while true {
            attempt += 1
            let (connection, reused, connectTime) = try await pool.connection(for: origin) {
                try await HTTP2ClientConnection.connect(origin: origin, transport: self)
            }
            let bodyUse = BodyUse()
            do {
                return try await connection.send(request, body: body, options: options, reused: reused,
                                                 connectTime: connectTime, started: started, bodyUse: bodyUse)
            } catch HTTPError.requestRejected where (replayable || !bodyUse.started) && attempt < 5 {
                // GOAWAY or REFUSED_STREAM: the server did not process it. Try a fresh connection.
                await pool.remove(connection)
                continue
            }
        }
    }

    /// Closes every pooled connection.
    public func shutdown() async {
        for connection in await pool.removeAll() {
            await connection.close()
        }
    }

    /// Counters (for diagnostics and tests): connections opened so far, and the number open now.
    package func statistics() async -> (connectionsOpened: Int, open: Int) {
        await pool.counts()
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
        if let scheme = request.scheme, scheme.lowercased() != "https" {
            throw .invalidRequest("HTTP/2 here runs over TLS and needs an https URL, not \(scheme)")
        }
        guard let authority = request.authority, !authority.isEmpty else {
            throw .invalidRequest("the request has no authority (host)")
        }
        var host = authority
        var port = 443
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { throw .invalidRequest("bad IPv6 authority \(authority)") }
            host = String(authority[authority.index(after: authority.startIndex)..<close])
            let rest = authority[authority.index(after: close)...]
            if rest.hasPrefix(":") {
                guard let value = Int(rest.dropFirst()), (1...65535).contains(value) else {
                    throw .invalidRequest("bad port in \(authority)")
                }
                port = value
            } else if !rest.isEmpty {
                throw .invalidRequest("bad authority \(authority)")
            }
        } else if let colon = authority.lastIndex(of: ":") {
            host = String(authority[..<colon])
            guard let value = Int(authority[authority.index(after: colon)...]), (1...65535).contains(value) else {
                throw .invalidRequest("bad port in \(authority)")
            }
            port = value
        }
        guard !host.isEmpty else { throw .invalidRequest("empty host in \(authority)") }
        self.host = host
        self.port = port
    }

    var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// Runs `body`, failing with ``HTTPError/requestTimeout`` after `timeout`.
func http2Deadline<T: Sendable>(_ timeout: Duration, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: timeout)
            throw HTTPError.requestTimeout
        }
        defer { group.cancelAll() }
        guard let result = try await group.next() else { throw HTTPError.requestTimeout }
        return result
    }
}

/// Decides which connection carries a request: one per origin, a new one when the current one
/// is draining (GOAWAY) or closed. Concurrent callers share one connection attempt.
actor HTTP2ConnectionPool {
    private var connections: [HTTP2Origin: HTTP2ClientConnection] = [:]
    private var pending: [HTTP2Origin: Task<HTTP2ClientConnection, any Error>] = [:]
    private var connectionsOpened = 0

    func connection(for origin: HTTP2Origin, connect: @escaping @Sendable () async throws -> HTTP2ClientConnection)
        async throws -> (HTTP2ClientConnection, reused: Bool, connectTime: Duration) {
        if let existing = connections[origin], existing.isUsable {
            return (existing, true, .zero)
        }
        connections[origin] = nil
        if let task = pending[origin] {
            let connection = try await task.value
            return (connection, true, .zero)
        }
        let started = ContinuousClock.now
        let task = Task { try await connect() }
        pending[origin] = task
        defer { pending[origin] = nil }
        let connection = try await task.value
        connectionsOpened += 1
        connections[origin] = connection
        return (connection, false, ContinuousClock.now - started)
    }

    func remove(_ connection: HTTP2ClientConnection) {
        for (origin, existing) in connections where existing === connection {
            connections[origin] = nil
        }
    }

    func removeAll() -> [HTTP2ClientConnection] {
        let all = Array(connections.values)
        connections.removeAll()
        return all
    }

    func counts() -> (connectionsOpened: Int, open: Int) {
        (connectionsOpened, connections.values.filter(\.isUsable).count)
    }
}
