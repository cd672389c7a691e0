import NIOCore

/// An established QUIC connection, client or server side, for users of raw QUIC streams.
///
/// Open streams with ``openStream(bidirectional:)``, accept the peer's from
/// ``incomingStreams``, and end with ``close(applicationError:reason:)``. The connection lives
/// on one event loop; this handle may be used from any task.
public final class QUICConnection: Sendable {
    let core: ConnectionCore
    let application: StreamApplication
    /// The negotiated ALPN protocol.
    public let negotiatedApplicationProtocol: String?
    /// The peer's address when the handshake completed.
    public let remoteAddress: SocketAddress
    /// Whether this is the server side of the connection.
    public var isServer: Bool { core.isServer }

    init(core: ConnectionCore, application: StreamApplication) {
        self.core = core
        self.application = application
        self.negotiatedApplicationProtocol = core.negotiatedApplicationProtocol
        self.remoteAddress = core.remoteAddress
    }

    deinit {
        // Nobody can use the connection any more (streams keep their connection alive): close it
        // rather than let it linger until the idle timeout.
        let core = self.core
        core.eventLoop.execute { core.close(applicationError: 0, reason: "") }
    }

    /// Streams the peer opens, in order. Ends when the connection closes.
    public var incomingStreams: AsyncStream<QUICStream> { application.incomingStreams }

    /// Opens a stream. Waits while the peer's stream limit (MAX_STREAMS) is reached.
    public func openStream(bidirectional: Bool = true) async throws -> QUICStream {
        let application = self.application
        let id = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Int64, any Error>) in
            core.eventLoop.execute { application.openStream(bidirectional: bidirectional, continuation: continuation) }
        }
        let state = try await core.eventLoop.submit { application.state(for: id) }.get()
        return QUICStream(state: state, application: application, connection: self)
    }

    /// Closes the connection with an application error code (0 means no error) and a reason
    /// the peer sees. Streams still open fail with ``QUICError/applicationClosed(code:reason:remote:)``
    /// (or ``QUICError/connectionClosed`` for code 0).
    public func close(applicationError code: UInt64 = 0, reason: String = "") async {
        let core = self.core
        try? await core.eventLoop.submit { core.close(applicationError: code, reason: reason) }.get()
    }

    /// Waits until the connection has closed and returns why: `nil` after a clean close with
    /// no error, otherwise the error (idle timeout, the peer's error code, ...).
    public func waitUntilClosed() async -> QUICError? {
        let core = self.core
        // `closing`/`draining` already carry the error; wait for that point, not for resource release.
        return await withCheckedContinuation { (continuation: CheckedContinuation<QUICError?, Never>) in
            core.eventLoop.execute {
                if !core.isOpen {
                    continuation.resume(returning: core.closeError)
                } else {
                    core.closeWaiters.append { continuation.resume(returning: $0) }
                }
            }
        }
    }

    /// Connection IDs issued to and retired by the peer, and those now routed to this
    /// connection (for diagnostics and tests).
    package func connectionIDCounts() async throws -> (issued: Int, retired: Int, active: Int) {
        let core = self.core
        return try await core.eventLoop.submit {
            (core.issuedConnectionIDs, core.retiredConnectionIDs, core.activeConnectionIDs.count)
        }.get()
    }

    /// Moves a client connection to a new local address and port (connection migration). The
    /// server validates the new path; streams carry on.
    ///
    /// - Parameters:
    ///   - localHost: the local IP address to bind, or `nil` for any.
    ///   - localPort: the local port, or 0 for any free one.
    /// - Throws: ``QUICError/invalidArgument(_:)`` on a server connection, before the handshake
    ///   completes, or when the peer disabled active migration.
    public func migrate(localHost: String? = nil, localPort: Int = 0) async throws {
        guard !core.isServer, let host = core.host as? ClientHost else {
            throw QUICError.invalidArgument("only a client connection can migrate")
        }
        try await host.migrate(localHost: localHost, localPort: localPort)
    }

    /// Starts a TLS key update (RFC 9001, section 6); the peer follows. Either side may do
    /// this once the handshake is confirmed and the previous update is complete.
    ///
    /// - Throws: ``QUICError/invalidArgument(_:)`` when an update is not possible yet (before
    ///   the handshake is confirmed, or while the previous update is in progress).
    public func initiateKeyUpdate() async throws {
        let core = self.core
        try await core.eventLoop.submit { () throws -> Void in try core.initiateKeyUpdate() }.get()
    }

    /// Waits until the handshake is complete (at once unless the connection was returned
    /// early for 0-RTT).
    public func waitForHandshake() async throws {
        let core = self.core
        try await core.eventLoop.flatSubmit { core.handshakeFuture }.get()
    }

    /// Whether the server accepted this client's 0-RTT data. Waits for the handshake.
    public var isEarlyDataAccepted: Bool {
        get async throws {
            try await waitForHandshake()
            let core = self.core
            return try await core.eventLoop.submit { core.earlyDataKeyInstalled && !core.earlyDataRejected }.get()
        }
    }

    /// Whether the TLS session was resumed from a session ticket (an abbreviated handshake:
    /// the server sent no certificate).
    public var isSessionResumed: Bool {
        get async throws {
            let core = self.core
            return try await core.eventLoop.submit { core.tlsSessionResumed }.get()
        }
    }

    /// The local address of the connection's current path.
    public var localAddress: SocketAddress {
        get async throws {
            let core = self.core
            return try await core.eventLoop.submit { core.localAddress }.get()
        }
    }

    /// Whether the TLS session was resumed.
    package func isResumed() async throws -> Bool {
        let core = self.core
        return try await core.eventLoop.submit { core.tls.isResumed }.get()
    }
}
