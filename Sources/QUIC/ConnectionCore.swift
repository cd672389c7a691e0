internal import CGnuTLS
internal import CNgtcp2
internal import CNgtcp2CryptoGnuTLS
import Logging
import Glibc
import NIOCore
import QUICSocket

/// One QUIC connection: owns the `ngtcp2_conn` and its GnuTLS session.
///
/// The only type that calls `ngtcp2_conn_*`. Its parts, by concern: this file (state,
/// creation, closing), `+Receive` (reading), `+Send` (write passes, with ``SendPass``),
/// `+Timers`, `+Qlog`, `+Callbacks` (the ngtcp2 callback table), `+Streams` (operations for
/// the application protocol), `+Migration` (and the preferred address), `+Tickets`,
/// `+Tokens`, `+KeyUpdate`; ``ConnectionHost`` is what it needs from its socket's owner.
///
/// Confined to ``eventLoop``: every method must be called there (hence `@unchecked Sendable`:
/// the reference may travel, the state may not be touched elsewhere). ngtcp2 callbacks find this object through an unretained `user_data`;
/// the host (endpoint or client) keeps it alive until ``finish()``.
package final class ConnectionCore: @unchecked Sendable {
    enum State: Equatable {
        case handshaking
        case established
        /// We sent CONNECTION_CLOSE and wait out the closing period.
        case closing
        /// The peer closed (or reset); we stay silent for the draining period.
        case draining
        case finished
    }

    package let eventLoop: any EventLoop
    package let isServer: Bool
    let configuration: QUICConfiguration
    let logger: Logger
    private(set) var conn: OpaquePointer?
    let tls: TLSSession
    /// Where a client files its session tickets (`server name:port`), if it keeps them.
    private(set) var sessionCacheKey: String?
    /// The ticket a client offered, if it tried to resume.
    private(set) var offeredTicket: QUICSessionTicket?
    /// Client: a 0-RTT key is installed, so stream data can go before the handshake completes.
    var earlyDataKeyInstalled = false
    /// Client: the server refused our 0-RTT data.
    var earlyDataRejected = false
    /// Whether the handshake is confirmed (RFC 9001, section 4.1.2): key updates are possible.
    var handshakeConfirmed = false
    /// The qlog file, when qlog is on (-1 otherwise).
    var qlogDescriptor: Int32 = -1
    let pathStorage: PathStorage
    let connRef: UnsafeMutablePointer<ngtcp2_crypto_conn_ref>
    /// Scratch path that ngtcp2 fills for each written packet.
    let writePath: UnsafeMutablePointer<ngtcp2_path_storage>
    weak var host: (any ConnectionHost)?
    package var application: (any QUICApplicationProtocol)?

    var state: State = .handshaking
    /// Why the connection ended, once it has (`nil` while open or after a clean close).
    private(set) var closeError: QUICError?
    var timer: Scheduled<Void>?
    var timerDeadline: UInt64 = .max
    var writeScheduled = false
    var closePacket: ByteBuffer?
    var closePacketResends = 0
    var receivedStatelessReset = false
    /// Set when a callback fails: the error to report once the C call returns.
    var callbackError: QUICError?
    var handshakePromise: EventLoopPromise<Void>?
    let closedPromise: EventLoopPromise<Void>
    /// Called once when the connection stops being open, with why.
    var closeWaiters: [(QUICError?) -> Void] = []

    /// Connection IDs this side issued (NEW_CONNECTION_ID) and retired (RETIRE_CONNECTION_ID).
    var issuedConnectionIDs = 0
    var retiredConnectionIDs = 0
    /// Connection IDs currently routed to this connection.
    var activeConnectionIDs: Set<ConnectionID> = []
    /// The destination connection ID of the client's first Initial (server side: routes until
    /// the client switches to our IDs).
    var initialDestinationID: ConnectionID?

    /// The most packets one write pass sends (one full GSO message).
    static let batchLimit = 64
    /// Stream data vectors handed to ngtcp2 (reused by every write pass).
    var writeVectors = [QUICIOVector](repeating: QUICIOVector(), count: 16)
    /// The destination of the last packet written, kept so that a `SocketAddress` is built
    /// only when the path changes.
    var lastWriteRemote: (raw: sockaddr_storage, length: Int, address: SocketAddress)?
    /// Server with a preferred address: each written packet says which local address it
    /// leaves from (the host has two sockets).
    var reportsLocalAddress = false

    // MARK: - Creation

    /// A client connection to the server at `path.remoteAddress`.
    init(clientWith configuration: QUICConfiguration, credentials: TLSCredentials, serverName: String?,
         path: PathStorage, eventLoop: any EventLoop, host: any ConnectionHost, logger: Logger,
         initialToken: [UInt8]? = nil, sessionCacheKey: String? = nil) throws(QUICError) {
        var initialToken = initialToken
        self.eventLoop = eventLoop
        self.isServer = false
        self.configuration = configuration
        self.logger = logger
        self.pathStorage = path
        self.host = host
        self.connRef = .allocate(capacity: 1)
        self.writePath = .allocate(capacity: 1)
        self.closedPromise = eventLoop.makePromise()
        self.handshakePromise = eventLoop.makePromise()
        do {
            self.sessionCacheKey = sessionCacheKey
            let ticket = sessionCacheKey.flatMap { configuration.sessionCache?.ticket(for: $0) }
            self.offeredTicket = ticket
            // A NEW_TOKEN token from an earlier connection proves our address (no Retry). Used once.
            if initialToken == nil, let key = sessionCacheKey,
               let token = configuration.sessionCache?.takeAddressToken(for: key) {
                initialToken = token
            }
            self.tls = try TLSSession(credentials: credentials, isServer: false, serverName: serverName, connRef: connRef,
                                      resumption: ticket?.tlsSession, earlyData: configuration.enableEarlyData)
        } catch {
            connRef.deallocate(); writePath.deallocate()
            throw error
        }
        setUpConnRef()

        var settings = makeSettings()
        var params = makeTransportParameters()
        let dcid = ConnectionID.random(length: 18)
        enableQlog(&settings, originalDestinationID: dcid, isServer: false)
        let scid = ConnectionID.random()
        var dcidC = dcid.cid, scidC = scid.cid
        var conn: OpaquePointer?
        var callbacks = Self.callbacks(isServer: false)
        let rv: Int32
        if let initialToken, !initialToken.isEmpty {
            rv = initialToken.withUnsafeBufferPointer { token in
                settings.token = ngtcp2_vec(base: UnsafeMutablePointer(mutating: token.baseAddress), len: token.count)
                return swift_ngtcp2_conn_client_new(&conn, &dcidC, &scidC, path.path, NGTCP2_PROTO_VER_V1,
                                                    &callbacks, &settings, &params, nil, opaqueSelf)
            }
        } else {
            rv = swift_ngtcp2_conn_client_new(&conn, &dcidC, &scidC, path.path, NGTCP2_PROTO_VER_V1,
                                              &callbacks, &settings, &params, nil, opaqueSelf)
        }
        guard rv == 0, let conn else { throw .internalError("ngtcp2_conn_client_new: \(ngtcp2Message(rv))") }
        self.conn = conn
        // Resuming: the server's remembered limits let streams open and send in 0-RTT.
        if let parameters = offeredTicket?.transportParameters, !parameters.isEmpty {
            var remembered = ngtcp2_transport_params()
            let decoded = parameters.withUnsafeBufferPointer { bytes in
                swift_ngtcp2_decode_transport_params(&remembered, NGTCP2_TRANSPORT_PARAMS_TYPE_ENCRYPTED_EXTENSIONS,
                                                     bytes.baseAddress, bytes.count)
            }
            if decoded == 0 { swift_ngtcp2_conn_set_early_remote_transport_params(conn, &remembered) }
        }
        ngtcp2_conn_set_tls_native_handle(conn, UnsafeMutableRawPointer(tls.handle))
        activeConnectionIDs.insert(scid)
        applyKeepAlive()
    }

    /// A server connection for a client's first Initial packet.
    ///
    /// - Parameters:
    ///   - header: the Initial's header, from `ngtcp2_accept` (its token pointer cleared).
    ///   - token: the token the Initial carried.
    ///   - originalDestinationID: the client's first destination ID (from the Retry token
    ///     when the client was retried).
    ///   - retrySourceID: the source ID of our Retry packet, if we sent one.
    init(serverWith configuration: QUICConfiguration, credentials: TLSCredentials,
         header: UnsafePointer<ngtcp2_pkt_hd>, token: [UInt8], originalDestinationID: ConnectionID,
         retrySourceID: ConnectionID?, path: PathStorage, eventLoop: any EventLoop,
         host: any ConnectionHost, logger: Logger, preferredAddress: SocketAddress? = nil) throws(QUICError) {
        self.eventLoop = eventLoop
        self.isServer = true
        self.configuration = configuration
        self.logger = logger
        self.pathStorage = path
        self.host = host
        self.connRef = .allocate(capacity: 1)
        self.writePath = .allocate(capacity: 1)
        self.closedPromise = eventLoop.makePromise()
        self.handshakePromise = eventLoop.makePromise()
        do {
            self.tls = try TLSSession(credentials: credentials, isServer: true, serverName: nil, connRef: connRef)
        } catch {
            connRef.deallocate(); writePath.deallocate()
            throw error
        }
        setUpConnRef()

        var settings = makeSettings()
        var params = makeTransportParameters()
        enableQlog(&settings, originalDestinationID: originalDestinationID, isServer: true)
        params.original_dcid = originalDestinationID.cid
        if let retrySourceID {
            params.retry_scid = retrySourceID.cid
            params.retry_scid_present = 1
        }
        let scid = ConnectionID.issued(by: host)
        let resetToken = host.statelessResetToken(for: scid)
        params.stateless_reset_token_present = 1
        withUnsafeMutableBytes(of: &params.stateless_reset_token) { raw in
            raw.copyBytes(from: resetToken.prefix(raw.count))
        }
        var preferredID: ConnectionID?
        if let preferredAddress {
            // RFC 9000, 9.6: an address the client moves to after the handshake, reached with
            // a connection ID (sequence number 1) and reset token of its own.
            let id = ConnectionID.issued(by: host)
            Self.setPreferredAddress(&params, address: preferredAddress, id: id, resetToken: host.statelessResetToken(for: id))
            preferredID = id
            reportsLocalAddress = true
        }
        var clientSCID = header.pointee.scid
        var scidC = scid.cid
        var conn: OpaquePointer?
        var callbacks = Self.callbacks(isServer: true)
        // The token the client sent (ngtcp2 copies it during creation).
        let rv = token.withUnsafeBufferPointer { tokenBytes in
            if !tokenBytes.isEmpty {
                settings.token = ngtcp2_vec(base: UnsafeMutablePointer(mutating: tokenBytes.baseAddress), len: tokenBytes.count)
            }
            return swift_ngtcp2_conn_server_new(&conn, &clientSCID, &scidC, path.path, header.pointee.version,
                                                &callbacks, &settings, &params, nil, opaqueSelf)
        }
        guard rv == 0, let conn else { throw .internalError("ngtcp2_conn_server_new: \(ngtcp2Message(rv))") }
        self.conn = conn
        ngtcp2_conn_set_tls_native_handle(conn, UnsafeMutableRawPointer(tls.handle))
        self.initialDestinationID = ConnectionID(header.pointee.dcid)
        applyKeepAlive()
        activeConnectionIDs.insert(scid)
        host.register(scid, for: self)
        if let preferredID {
            activeConnectionIDs.insert(preferredID)
            host.register(preferredID, for: self)
        }
        if let current = initialDestinationID {
            host.register(current, for: self)
        }
    }

    deinit {
        timer?.cancel()
        if let conn { ngtcp2_conn_del(conn) }
        if qlogDescriptor >= 0 { Glibc.close(qlogDescriptor) }
        connRef.deallocate()
        writePath.deallocate()
    }

    private func applyKeepAlive() {
        if let keepAlive = configuration.keepAliveInterval, let conn {
            ngtcp2_conn_set_keep_alive_timeout(conn, keepAlive.nanoseconds)
        }
    }

    var opaqueSelf: UnsafeMutableRawPointer { Unmanaged.passUnretained(self).toOpaque() }

    private func setUpConnRef() {
        writePath.initialize(to: ngtcp2_path_storage())
        ngtcp2_path_storage_zero(writePath)
        connRef.initialize(to: ngtcp2_crypto_conn_ref(
            get_conn: { ref in
                guard let ref, let userData = ref.pointee.user_data else { return nil }
                return Unmanaged<ConnectionCore>.fromOpaque(userData).takeUnretainedValue().conn
            },
            user_data: opaqueSelf))
    }

    private func makeSettings() -> ngtcp2_settings {
        var settings = ngtcp2_settings()
        swift_ngtcp2_settings_default(&settings)
        settings.initial_ts = Self.now()
        settings.handshake_timeout = configuration.handshakeTimeout.nanoseconds
        settings.max_tx_udp_payload_size = configuration.maxUDPPayloadSize
        settings.max_window = configuration.maxConnectionWindow
        settings.max_stream_window = configuration.maxStreamWindow
        settings.cc_algo = NGTCP2_CC_ALGO_CUBIC
        return settings
    }

    private func makeTransportParameters() -> ngtcp2_transport_params {
        var params = ngtcp2_transport_params()
        swift_ngtcp2_transport_params_default(&params)
        params.initial_max_data = configuration.initialMaxData
        params.initial_max_stream_data_bidi_local = configuration.initialMaxStreamData
        params.initial_max_stream_data_bidi_remote = configuration.initialMaxStreamData
        params.initial_max_stream_data_uni = configuration.initialMaxStreamData
        params.initial_max_streams_bidi = configuration.maxIncomingBidirectionalStreams
        params.initial_max_streams_uni = configuration.maxIncomingUnidirectionalStreams
        params.max_idle_timeout = configuration.idleTimeout.nanoseconds
        params.active_connection_id_limit = configuration.activeConnectionIDLimit
        params.disable_active_migration = configuration.allowActiveMigration ? 0 : 1
        params.max_udp_payload_size = 65_527
        return params
    }

    /// ngtcp2's clock: monotonic nanoseconds, the same clock NIO schedules on.
    static func now() -> UInt64 { NIODeadline.now().uptimeNanoseconds }

    // MARK: - Life cycle

    /// Starts the handshake (client) and returns a future that completes when it is done.
    func start() -> EventLoopFuture<Void> {
        eventLoop.preconditionInEventLoop()
        let future = handshakePromise?.futureResult ?? eventLoop.makeSucceededVoidFuture()
        writePackets()
        return future
    }

    /// Future that completes when the handshake is done (or fails with why it did not).
    package var handshakeFuture: EventLoopFuture<Void> {
        handshakePromise?.futureResult ?? (state == .established ? eventLoop.makeSucceededVoidFuture()
                                           : eventLoop.makeFailedFuture(closeError ?? QUICError.connectionClosed))
    }

    /// Whether the connection can still carry data.
    package var isOpen: Bool { state == .handshaking || state == .established }
    /// Whether the handshake has completed and the connection is not closing.
    package var isEstablished: Bool { state == .established }

    /// Client: stream data written now goes in 0-RTT packets (a 0-RTT key is installed, the
    /// handshake has not completed, and the server has not refused early data).
    package var isSendingEarlyData: Bool {
        !isServer && state == .handshaking && earlyDataKeyInstalled && !earlyDataRejected
    }

    /// Closes the connection with an application error code (0 = no error) and reason.
    package func close(applicationError code: UInt64, reason: String) {
        eventLoop.preconditionInEventLoop()
        guard isOpen, let conn else { return }
        var ccerr = ngtcp2_connection_close_error()
        ngtcp2_connection_close_error_default(&ccerr)
        var reasonBytes = Array(reason.utf8.prefix(1024))
        reasonBytes.withUnsafeMutableBufferPointer { buffer in
            ngtcp2_connection_close_error_set_application_error(&ccerr, code, buffer.baseAddress, buffer.count)
            sendConnectionClose(conn: conn, ccerr: &ccerr)
        }
        enterClosed(state: .closing, error: code == 0 ? nil : .applicationClosed(code: code, reason: reason, remote: false))
    }

    /// Closes because of a local error: sends CONNECTION_CLOSE with the matching transport error.
    func close(liberr: Int32, error: QUICError) {
        guard isOpen, let conn else { return }
        if case .applicationClosed(let code, let reason, remote: false) = error {
            // The application protocol failed the connection with its own code (an HTTP/3 error).
            close(applicationError: code, reason: reason)
            return
        }
        var ccerr = ngtcp2_connection_close_error()
        ngtcp2_connection_close_error_default(&ccerr)
        let alert = ngtcp2_conn_get_tls_alert(conn)
        if liberr == NGTCP2_ERR_CRYPTO && alert != 0 {
            ngtcp2_connection_close_error_set_transport_error_tls_alert(&ccerr, alert, nil, 0)
        } else {
            ngtcp2_connection_close_error_set_transport_error_liberr(&ccerr, liberr, nil, 0)
        }
        sendConnectionClose(conn: conn, ccerr: &ccerr)
        enterClosed(state: .closing, error: error)
    }

    private func sendConnectionClose(conn: OpaquePointer, ccerr: inout ngtcp2_connection_close_error) {
        var buffer = ByteBufferAllocator().buffer(capacity: configuration.maxUDPPayloadSize)
        var info = ngtcp2_pkt_info()
        let written = buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: configuration.maxUDPPayloadSize) { raw in
            let n = swift_ngtcp2_conn_write_connection_close(
                conn, &writePath.pointee.path, &info, raw.baseAddress?.assumingMemoryBound(to: UInt8.self),
                configuration.maxUDPPayloadSize, &ccerr, Self.now())
            return n > 0 ? Int(n) : 0
        }
        guard written > 0 else { return }
        closePacket = buffer
        host?.send([OutboundDatagram(buffer: buffer, remoteAddress: pathStorage.remoteAddress)], from: self)
    }

    /// Moves to closing or draining: streams and waiters learn of the end now; resources go
    /// after the closing/draining period (three PTOs).
    func enterClosed(state newState: State, error: QUICError?) {
        guard isOpen else { return }
        state = newState
        closeError = error
        timer?.cancel()
        timer = nil
        logger.debug("connection closing", metadata: ["error": "\(error.map { "\($0)" } ?? "none")"])
        if let promise = handshakePromise {
            handshakePromise = nil
            promise.fail(error ?? QUICError.connectionClosed)
        }
        application?.connectionClosed(error: error)
        let waiters = closeWaiters
        closeWaiters.removeAll()
        waiters.forEach { $0(error) }
        let pto = conn.map { ngtcp2_conn_get_pto($0) } ?? 0
        let linger = min(max(pto * 3, 10_000_000), 3_000_000_000)
        timer = eventLoop.scheduleTask(in: .nanoseconds(Int64(linger))) { [self] in
            finish()
        }
    }

    /// Releases the connection: unroutes its IDs and tells the host.
    func finish() {
        guard state != .finished else { return }
        if isOpen { enterClosed(state: .draining, error: .connectionClosed) }
        state = .finished
        timer?.cancel()
        timer = nil
        if let promise = handshakePromise {
            handshakePromise = nil
            promise.fail(closeError ?? QUICError.connectionClosed)
        }
        for id in activeConnectionIDs { host?.unregister(id) }
        if let initial = initialDestinationID { host?.unregister(initial) }
        activeConnectionIDs.removeAll()
        application = nil
        host?.connectionDidFinish(self)
        closedPromise.succeed(())
    }

    /// Drops the connection at once without telling the peer (used when the endpoint shuts
    /// down abruptly, and by tests that make the server forget a connection).
    func abandon(error: QUICError = .connectionClosed) {
        if isOpen { enterClosed(state: .draining, error: error) }
        finish()
    }

    /// The QUIC transport error code for an ngtcp2 error.
    static func transportCode(liberr: Int32) -> UInt64 {
        ngtcp2_err_infer_quic_transport_error_code(liberr)
    }
}

/// The message ngtcp2 gives for an error code.
func ngtcp2Message(_ code: Int32) -> String {
    guard let text = ngtcp2_strerror(code) else { return "ngtcp2 error \(code)" }
    return String(cString: text)
}

extension ConnectionCore {
    /// Ends the connection at once because of something outside QUIC (the socket failed, the
    /// peer's port is closed): no CONNECTION_CLOSE is sent.
    func fail(with error: QUICError) {
        guard isOpen else { return }
        abandon(error: error)
    }
}
