/// Transport settings for a QUIC connection. Every value has a sensible default.
public struct QUICConfiguration: Sendable, Hashable {
    /// TLS settings (certificates, trust, ALPN).
    public var tls: QUICTLSConfiguration
    /// A connection with no activity for this long closes silently. Advertised to the peer;
    /// the smaller of both sides' values applies.
    public var idleTimeout: Duration
    /// The handshake must complete within this time, or the connection fails with
    /// ``QUICError/handshakeTimeout``.
    public var handshakeTimeout: Duration
    /// If set, a PING is sent after this much quiet time so the connection stays open.
    public var keepAliveInterval: Duration?
    /// Connection-level receive window: how many bytes the peer may send before we consume them.
    public var initialMaxData: UInt64
    /// Per-stream receive window.
    public var initialMaxStreamData: UInt64
    /// How far ngtcp2 may grow the connection window as the reader keeps up (auto-tuning).
    public var maxConnectionWindow: UInt64
    /// How far ngtcp2 may grow a stream window as the reader keeps up.
    public var maxStreamWindow: UInt64
    /// How many bidirectional streams the peer may open at once.
    public var maxIncomingBidirectionalStreams: UInt64
    /// How many unidirectional streams the peer may open at once.
    public var maxIncomingUnidirectionalStreams: UInt64
    /// Unacknowledged bytes buffered per stream before a writer is suspended.
    public var streamSendBufferLimit: Int
    /// How many connection IDs we accept from the peer (active_connection_id_limit, at least 2).
    public var activeConnectionIDLimit: UInt64
    /// Largest UDP payload we send (ngtcp2's default, 1200 + path MTU discovery).
    public var maxUDPPayloadSize: Int
    /// Whether the peer may migrate the connection to a new address (disable_active_migration).
    public var allowActiveMigration: Bool
    /// A directory to write one qlog file per connection into (ngtcp2's JSON-SEQ qlog, named
    /// `<original destination connection ID>_<client|server>.sqlog`), or `nil` for none.
    /// For debugging: the files are written from the event loop as events happen.
    /// (TLS secrets go to the file named by the `SSLKEYLOGFILE` environment variable:
    /// GnuTLS does that by itself.)
    public var qlogDirectory: String?
    /// Client: where session tickets are kept and looked up, for TLS session resumption
    /// (`nil`: every connection makes a full handshake).
    public var sessionCache: QUICSessionCache?
    /// Client: when resuming (a ticket in ``sessionCache``), send data in 0-RTT, before the
    /// handshake completes. `QUICClient.connect` then returns as soon as early data can be
    /// sent. 0-RTT data can be replayed by an attacker: send only idempotent requests in it.
    /// If the server refuses it, streams opened early fail with
    /// ``QUICError/earlyDataRejected`` and must be sent again.
    public var enableEarlyData: Bool
    /// Client: when the server advertises a preferred address (RFC 9000, section 9.6), move
    /// the connection there once the handshake is confirmed. Off: stay on the address dialled.
    public var followPreferredAddress: Bool

    /// Creates settings with defaults suited to most uses.
    public init(tls: QUICTLSConfiguration,
                idleTimeout: Duration = .seconds(30),
                handshakeTimeout: Duration = .seconds(10),
                keepAliveInterval: Duration? = nil,
                initialMaxData: UInt64 = 1 << 20,
                initialMaxStreamData: UInt64 = 256 << 10,
                maxConnectionWindow: UInt64 = 24 << 20,
                maxStreamWindow: UInt64 = 16 << 20,
                maxIncomingBidirectionalStreams: UInt64 = 100,
                maxIncomingUnidirectionalStreams: UInt64 = 100,
                streamSendBufferLimit: Int = 1 << 20,
                activeConnectionIDLimit: UInt64 = 7,
                maxUDPPayloadSize: Int = 1452,
                allowActiveMigration: Bool = true) {
        self.tls = tls
        self.idleTimeout = idleTimeout
        self.handshakeTimeout = handshakeTimeout
        self.keepAliveInterval = keepAliveInterval
        self.initialMaxData = initialMaxData
        self.initialMaxStreamData = initialMaxStreamData
        self.maxConnectionWindow = maxConnectionWindow
        self.maxStreamWindow = maxStreamWindow
        self.maxIncomingBidirectionalStreams = maxIncomingBidirectionalStreams
        self.maxIncomingUnidirectionalStreams = maxIncomingUnidirectionalStreams
        self.streamSendBufferLimit = streamSendBufferLimit
        self.activeConnectionIDLimit = activeConnectionIDLimit
        self.maxUDPPayloadSize = maxUDPPayloadSize
        self.allowActiveMigration = allowActiveMigration
        self.qlogDirectory = nil
        self.sessionCache = nil
        self.enableEarlyData = false
        self.followPreferredAddress = true
    }

    func validate() throws(QUICError) {
        if idleTimeout <= .zero { throw .invalidArgument("idle timeout must be positive") }
        if handshakeTimeout <= .zero { throw .invalidArgument("handshake timeout must be positive") }
        if let keepAliveInterval, keepAliveInterval <= .zero {
            throw .invalidArgument("keep-alive interval must be positive")
        }
        if streamSendBufferLimit < 1024 { throw .invalidArgument("stream send buffer limit must be at least 1024 bytes") }
        if activeConnectionIDLimit < 2 { throw .invalidArgument("active connection ID limit must be at least 2") }
        if maxUDPPayloadSize < 1200 || maxUDPPayloadSize > 65_527 {
            throw .invalidArgument("max UDP payload size must be within 1200...65527")
        }
    }
}

extension Duration {
    /// This duration in whole nanoseconds (clamped at zero), as ngtcp2 counts time.
    var nanoseconds: UInt64 {
        let (seconds, attoseconds) = components
        if seconds < 0 { return 0 }
        let (whole, overflow) = UInt64(seconds).multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return .max }
        let (total, overflow2) = whole.addingReportingOverflow(UInt64(max(0, attoseconds / 1_000_000_000)))
        return overflow2 ? .max : total
    }
}
