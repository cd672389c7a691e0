internal import CGnuTLS
internal import CNgtcp2
internal import CNgtcp2CryptoGnuTLS
import Logging
import Glibc
import NIOCore
import QUICSocket

/// What a connection needs from whoever owns its socket: a server endpoint (many connections
/// on one socket, routed by connection ID) or a client (one socket per connection).
protocol ConnectionHost: AnyObject {
    /// The socket the connection's packets leave through.
    var socket: UDPSocket { get }
    /// Sends packets of this connection.
    func send(_ datagrams: [OutboundDatagram], from connection: ConnectionCore)
    /// Packets with this destination connection ID now belong to `connection`.
    func register(_ id: ConnectionID, for connection: ConnectionCore)
    /// Packets with this connection ID no longer belong to any connection.
    func unregister(_ id: ConnectionID)
    /// The stateless reset token that goes with a connection ID we issue.
    func statelessResetToken(for id: ConnectionID) -> [UInt8]
    /// The handshake completed.
    func connectionEstablished(_ connection: ConnectionCore)
    /// The connection is finished and its resources can go.
    func connectionDidFinish(_ connection: ConnectionCore)
    /// Whether some packets may leave through another socket than ``socket`` (a server's
    /// preferred address, a client validating a path to one); each written packet is then
    /// checked with ``leavesThroughPrimarySocket(local:remote:)``.
    var hasAlternatePaths: Bool { get }
    /// Whether a packet with these addresses leaves through ``socket``; the others go through
    /// ``send(_:from:)``, which picks their socket.
    func leavesThroughPrimarySocket(local: SocketAddress?, remote: SocketAddress) -> Bool
    /// Client: opens a socket towards the server's preferred address and returns its local
    /// address (`nil`: the preferred address is not used).
    func openPreferredPath(to remote: SocketAddress, for connection: ConnectionCore) -> SocketAddress?
    /// Client: validation of the path to the preferred address ended; on success the
    /// connection now uses it.
    func preferredPathValidated(_ success: Bool, for connection: ConnectionCore)
}

extension ConnectionHost {
    var hasAlternatePaths: Bool { false }
    func leavesThroughPrimarySocket(local: SocketAddress?, remote: SocketAddress) -> Bool { true }
    func openPreferredPath(to remote: SocketAddress, for connection: ConnectionCore) -> SocketAddress? { nil }
    func preferredPathValidated(_ success: Bool, for connection: ConnectionCore) {}
}

/// One QUIC connection: owns the `ngtcp2_conn` and its GnuTLS session.
///
/// The only type that calls `ngtcp2_conn_*`. Confined to ``eventLoop``: every method must be
/// called there (hence `@unchecked Sendable`: the reference may travel, the state may not be
/// touched elsewhere). ngtcp2 callbacks find this object through an unretained `user_data`;
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
    private(set) var earlyDataKeyInstalled = false
    /// Client: the server refused our 0-RTT data.
    private(set) var earlyDataRejected = false
    /// Whether the handshake is confirmed (RFC 9001, section 4.1.2): key updates are possible.
    var handshakeConfirmed = false
    /// The qlog file, when qlog is on (-1 otherwise).
    private var qlogDescriptor: Int32 = -1
    let pathStorage: PathStorage
    private let connRef: UnsafeMutablePointer<ngtcp2_crypto_conn_ref>
    /// Scratch path that ngtcp2 fills for each written packet.
    private let writePath: UnsafeMutablePointer<ngtcp2_path_storage>
    weak var host: (any ConnectionHost)?
    package var application: (any QUICApplicationProtocol)?

    private(set) var state: State = .handshaking
    /// Why the connection ended, once it has (`nil` while open or after a clean close).
    private(set) var closeError: QUICError?
    private var timer: Scheduled<Void>?
    private var timerDeadline: UInt64 = .max
    private var writeScheduled = false
    private var closePacket: ByteBuffer?
    private var closePacketResends = 0
    private var receivedStatelessReset = false
    /// Set when a callback fails: the error to report once the C call returns.
    private var callbackError: QUICError?
    private var handshakePromise: EventLoopPromise<Void>?
    let closedPromise: EventLoopPromise<Void>
    /// Called once when the connection stops being open, with why.
    var closeWaiters: [(QUICError?) -> Void] = []

    /// Connection IDs this side issued (NEW_CONNECTION_ID) and retired (RETIRE_CONNECTION_ID).
    private(set) var issuedConnectionIDs = 0
    private(set) var retiredConnectionIDs = 0
    /// Connection IDs currently routed to this connection.
    private(set) var activeConnectionIDs: Set<ConnectionID> = []
    /// The destination connection ID of the client's first Initial (server side: routes until
    /// the client switches to our IDs).
    var initialDestinationID: ConnectionID?

    /// The most packets one write pass sends (one full GSO message).
    private static let batchLimit = 64
    /// Stream data vectors handed to ngtcp2 (reused by every write pass).
    private var writeVectors = [ngtcp2_vec](repeating: ngtcp2_vec(), count: 16)
    /// The destination of the last packet written, kept so that a `SocketAddress` is built
    /// only when the path changes.
    private var lastWriteRemote: (raw: sockaddr_storage, length: Int, address: SocketAddress)?
    /// Server with a preferred address: each written packet says which local address it
    /// leaves from (the host has two sockets).
    private var reportsLocalAddress = false

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

    /// Turns on ngtcp2's qlog when the configuration names a directory. A file that cannot be
    /// created is logged and skipped: qlog never stops a connection.
    private func enableQlog(_ settings: inout ngtcp2_settings, originalDestinationID: ConnectionID, isServer: Bool) {
        guard let directory = configuration.qlogDirectory else { return }
        let name = originalDestinationID.bytes.map { String($0, radix: 16).leftPad(2) }.joined()
        let path = "\(directory)/\(name)_\(isServer ? "server" : "client").sqlog"
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            logger.warning("cannot create the qlog file", metadata: ["path": "\(path)", "errno": "\(errno)"])
            return
        }
        qlogDescriptor = fd
        settings.qlog.odcid = originalDestinationID.cid
        settings.qlog.write = { userData, flags, data, length in
            guard let userData else { return }
            Unmanaged<ConnectionCore>.fromOpaque(userData)._withUnsafeGuaranteedRef { core in
                core.writeQlog(data, length, final: flags & UInt32(NGTCP2_QLOG_WRITE_FLAG_FIN) != 0)
            }
        }
    }

    private func writeQlog(_ data: UnsafeRawPointer?, _ length: Int, final: Bool) {
        guard qlogDescriptor >= 0 else { return }
        if let data, length > 0 {
            var offset = 0
            while offset < length {
                let n = write(qlogDescriptor, data + offset, length - offset)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                offset += n
            }
        }
        if final {
            Glibc.close(qlogDescriptor)
            qlogDescriptor = -1
        }
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
    private func close(liberr: Int32, error: QUICError) {
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
    private func enterClosed(state newState: State, error: QUICError?) {
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

    // MARK: - Reading

    /// Feeds one received datagram to ngtcp2. `local` is the address it arrived on, when the
    /// host has more than one socket.
    func receive(_ datagram: InboundDatagram, local: SocketAddress? = nil) {
        eventLoop.preconditionInEventLoop()
        // An empty datagram holds no packet (ngtcp2's decoders assert a non-zero length).
        guard datagram.buffer.readableBytes > 0 else { return }
        switch state {
        case .closing:
            // Answer packets in the closing period with our CONNECTION_CLOSE, a few times.
            if let closePacket, closePacketResends < 8 {
                closePacketResends += 1
                host?.send([OutboundDatagram(buffer: closePacket, remoteAddress: datagram.remoteAddress)], from: self)
            }
            return
        case .draining, .finished:
            return
        case .handshaking, .established:
            break
        }
        guard let conn else { return }
        pathStorage.setRemote(datagram.remoteAddress)
        if let local { pathStorage.setLocal(local) }
        var info = ngtcp2_pkt_info()
        info.ecn = UInt32(Self.ecnCodepoint(datagram.ecn))
        let rv = datagram.buffer.withUnsafeReadableBytes { raw in
            swift_ngtcp2_conn_read_pkt(conn, pathStorage.path, &info,
                                       raw.baseAddress?.assumingMemoryBound(to: UInt8.self), raw.count, Self.now())
        }
        logger.trace("read packet", metadata: ["bytes": "\(datagram.buffer.readableBytes)", "from": "\(datagram.remoteAddress)",
                                               "rv": "\(rv)"])
        if rv != 0 {
            handleReadError(rv)
            return
        }
        scheduleWrite()
    }

    private func handleReadError(_ rv: Int32) {
        guard let conn else { return }
        switch rv {
        case NGTCP2_ERR_DRAINING:
            enterClosed(state: .draining, error: peerCloseError())
        case NGTCP2_ERR_DROP_CONN:
            enterClosed(state: .draining, error: callbackError ?? .connectionClosed)
            finish()
        case NGTCP2_ERR_RECV_VERSION_NEGOTIATION:
            enterClosed(state: .draining, error: .connectionRefused("server supports no QUIC version we speak"))
            finish()
        case NGTCP2_ERR_CRYPTO:
            let alert = ngtcp2_conn_get_tls_alert(conn)
            let error: QUICError
            if let failure = tls.verificationFailure {
                error = .certificateVerificationFailed(failure)
            } else {
                error = .tlsHandshakeFailed(alert: alert, TLSAlert.name(alert))
            }
            close(liberr: rv, error: error)
        case NGTCP2_ERR_CALLBACK_FAILURE where callbackError != nil:
            close(liberr: rv, error: callbackError ?? .internalError("callback failed"))
        default:
            if state == .handshaking, let failure = tls.verificationFailure {
                close(liberr: rv, error: .certificateVerificationFailed(failure))
            } else {
                close(liberr: rv, error: .transportError(code: Self.transportCode(liberr: rv), reason: ngtcp2Message(rv),
                                                         remote: false))
            }
        }
    }

    /// The error the peer closed with (after NGTCP2_ERR_DRAINING).
    private func peerCloseError() -> QUICError {
        if receivedStatelessReset { return .statelessReset }
        guard let conn else { return .connectionClosed }
        var ccerr = ngtcp2_connection_close_error()
        ngtcp2_conn_get_connection_close_error(conn, &ccerr)
        let reason = ccerr.reason.map { String(decoding: UnsafeBufferPointer(start: $0, count: ccerr.reasonlen), as: UTF8.self) } ?? ""
        switch ccerr.type {
        case NGTCP2_CONNECTION_CLOSE_ERROR_CODE_TYPE_APPLICATION:
            return .applicationClosed(code: ccerr.error_code, reason: reason, remote: true)
        default:
            let code = ccerr.error_code
            if code == TransportErrorCode.connectionRefused {
                return .connectionRefused("server refused the connection (CONNECTION_REFUSED)"
                                          + (reason.isEmpty ? "" : ": \(reason)"))
            }
            if code == TransportErrorCode.invalidToken { return .invalidToken }
            if code >= 0x100 && code <= 0x1ff {
                let alert = UInt8(code - 0x100)
                return .tlsHandshakeFailed(alert: alert, "\(TLSAlert.name(alert)) (sent by peer)")
            }
            return .transportError(code: code, reason: reason, remote: true)
        }
    }

    // MARK: - Timers

    private func armTimer() {
        guard isOpen, let conn else { return }
        let expiry = ngtcp2_conn_get_expiry(conn)
        // The loss, ACK and idle deadlines move later with nearly every packet. A timer that
        // fires no later than the new deadline stays: when it fires it only re-arms. Cancelling
        // and scheduling on every write pass cost ~8% of a busy server's CPU.
        if timer != nil && timerDeadline <= expiry { return }
        timer?.cancel()
        timerDeadline = expiry
        guard expiry != .max else { timer = nil; return }
        let deadline = NIODeadline.uptimeNanoseconds(expiry)
        timer = eventLoop.scheduleTask(deadline: deadline) { [self] in
            timer = nil
            timerDeadline = .max
            if let conn = self.conn, isOpen, ngtcp2_conn_get_expiry(conn) > Self.now() {
                armTimer()  // fired early: the deadline moved since the timer was set
            } else {
                handleExpiry()
            }
        }
    }

    private func handleExpiry() {
        guard isOpen, let conn else { return }
        let rv = ngtcp2_conn_handle_expiry(conn, Self.now())
        switch rv {
        case 0:
            writePackets()
        case NGTCP2_ERR_IDLE_CLOSE:
            enterClosed(state: .draining, error: .idleTimeout)
            finish()
        case NGTCP2_ERR_HANDSHAKE_TIMEOUT:
            enterClosed(state: .draining, error: .handshakeTimeout)
            finish()
        default:
            close(liberr: rv, error: .transportError(code: Self.transportCode(liberr: rv), reason: ngtcp2Message(rv),
                                                     remote: false))
        }
    }

    // MARK: - Writing

    /// Asks for a write pass after the current event-loop tick (coalesces many requests).
    package func scheduleWrite() {
        guard !writeScheduled, isOpen else { return }
        writeScheduled = true
        eventLoop.execute { [self] in
            writeScheduled = false
            writePackets()
        }
    }

    /// Writes one burst: as many packets as ngtcp2 allows (congestion control and pacing
    /// permitting), at most one send quantum (`ngtcp2_conn_get_send_quantum`, the bytes ngtcp2
    /// lets go without spacing) and at most 64 packets. The packets are written into the
    /// socket's reusable send buffer and leave with one flush, runs of equal-sized packets as
    /// GSO messages. Then `ngtcp2_conn_update_pkt_tx_time` sets the next transmission time, and
    /// the timer (whose expiry includes it) starts the next burst.
    func writePackets() {
        guard isOpen, let conn, let host else { return }
        let socket = host.socket
        // A server with a preferred address, or a client validating a path to one, has a second
        // socket: a packet of the other path is taken out of the batch and sent through the host.
        let routed = host.hasAlternatePaths
        var diverted = 0
        let payload = configuration.maxUDPPayloadSize
        let quantum = Int(clamping: ngtcp2_conn_get_send_quantum(conn))
        let packetLimit = min(max(quantum / max(payload, 1), 1), Self.batchLimit)
        var failure: (Int32, QUICError)?
        let ts = Self.now()

        let written = socket.sendBatch(minimumCapacity: payload * packetLimit) { buffer, batch in
            packetLoop: while batch.packetCount + diverted < packetLimit {
                var packetLength = 0
                var ecn: UInt8 = 0
                buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: payload) { raw in
                    let destination = raw.baseAddress?.assumingMemoryBound(to: UInt8.self)
                    while true {
                        var info = ngtcp2_pkt_info()
                        var consumed: ngtcp2_ssize = -1
                        var pending = writeVectors.withUnsafeMutableBufferPointer { application?.pendingStreamData(into: $0) }
                        if let offered = pending, offered.vectorCount > 0, ngtcp2_conn_get_max_data_left(conn) == 0 {
                            // No connection credit: only control frames and ACKs can go now.
                            pending = nil
                        }
                        let streamID = pending?.streamID ?? -1
                        var flags = UInt32(NGTCP2_WRITE_STREAM_FLAG_MORE)
                        if pending?.fin == true { flags |= UInt32(NGTCP2_WRITE_STREAM_FLAG_FIN) }
                        let count = pending?.vectorCount ?? 0
                        let n = writeVectors.withUnsafeBufferPointer { vecs in
                            swift_ngtcp2_conn_writev_stream(conn, &writePath.pointee.path, &info, destination, payload,
                                                            &consumed, flags, streamID,
                                                            count > 0 ? vecs.baseAddress : nil, count, ts)
                        }
                        if consumed >= 0, streamID >= 0 {
                            do throws(QUICError) {
                                let offered = writeVectors.withUnsafeBufferPointer {
                                    totalLength(UnsafeBufferPointer(rebasing: $0.prefix(count)))
                                }
                                let all = count == 0 || consumed == offered
                                try application?.wrote(streamID: streamID, bytes: Int(consumed),
                                                       fin: pending?.fin == true && all)
                            } catch {
                                failure = (NGTCP2_ERR_INTERNAL, error)
                                return 0
                            }
                        }
                        if n >= 0 {
                            packetLength = Int(n)
                            // ngtcp2 marks single packets (ECN validation), so the codepoint is per packet.
                            ecn = UInt8(truncatingIfNeeded: info.ecn)
                            return Int(n)
                        }
                        switch Int32(n) {
                        case NGTCP2_ERR_WRITE_MORE:
                            continue
                        case NGTCP2_ERR_STREAM_DATA_BLOCKED:
                            application?.streamBlocked(streamID: streamID)
                            continue
                        case NGTCP2_ERR_STREAM_SHUT_WR, NGTCP2_ERR_STREAM_NOT_FOUND:
                            application?.streamWriteClosed(streamID: streamID)
                            continue
                        default:
                            failure = (Int32(n), .transportError(code: Self.transportCode(liberr: Int32(n)),
                                                                 reason: ngtcp2Message(Int32(n)), remote: false))
                            return 0
                        }
                    }
                }
                if failure != nil || packetLength == 0 { break packetLoop }
                // Destination per packet: while a new path is validated, ngtcp2 writes
                // PATH_CHALLENGE to one address and other packets to another in the same burst.
                let remote = packetRemote()
                if routed {
                    let local = reportsLocalAddress ? packetLocal() : nil
                    if !host.leavesThroughPrimarySocket(local: local, remote: remote) {
                        let start = buffer.writerIndex - packetLength
                        if let packet = buffer.getSlice(at: start, length: packetLength) {
                            host.send([OutboundDatagram(buffer: packet, remoteAddress: remote, ecn: UDPSocket.ecnState(ecn),
                                                        localAddress: local)], from: self)
                        }
                        buffer.moveWriterIndex(to: start)
                        diverted += 1
                        continue
                    }
                }
                batch.append(length: packetLength, destination: remote, ecn: ecn)
            }
            if batch.packetCount > 0 {
                logger.trace("write packets", metadata: ["count": "\(batch.packetCount)",
                                                         "messages": "\(batch.messages.count)"])
            }
        }
        if let (liberr, error) = failure {
            close(liberr: liberr, error: error)
            return
        }
        // Pacing starts once the handshake is done. ngtcp2 0.12 derives the next send time from
        // the smoothed RTT, which before the first sample is the 333 ms default: pacing the
        // Initial then held the client's Finished (and the first request) back ~20 ms on every
        // new connection, though the handshake flights are already bounded by the congestion
        // window and the amplification limit.
        if written + diverted > 0, state == .established {
            ngtcp2_conn_update_pkt_tx_time(conn, ts)
        }
        armTimer()
    }

    /// The destination of the packet just written; builds a `SocketAddress` only when the
    /// path's remote address differs from the previous packet's.
    private func packetRemote() -> SocketAddress {
        let remote = writePath.pointee.path.remote
        let length = min(Int(remote.addrlen), MemoryLayout<sockaddr_storage>.size)
        if let previous = lastWriteRemote, previous.length == length, let addr = remote.addr {
            var raw = previous.raw
            let same = withUnsafeBytes(of: &raw) { bytes in bytes.baseAddress.map { memcmp($0, addr, length) == 0 } ?? false }
            if same { return previous.address }
        }
        let address = currentWriteRemote()
        var raw = sockaddr_storage()
        if let addr = remote.addr {
            withUnsafeMutableBytes(of: &raw) { bytes in
                if let base = bytes.baseAddress { memcpy(base, addr, length) }
            }
        }
        lastWriteRemote = (raw, length, address)
        return address
    }

    /// The local address of the packet just written.
    private func packetLocal() -> SocketAddress? {
        let local = writePath.pointee.path.local
        return PathStorage.socketAddress(local.addr, length: Int(local.addrlen))
    }

    private func currentWriteRemote() -> SocketAddress {
        let path = writePath.pointee.path
        if let address = PathStorage.socketAddress(path.remote.addr, length: Int(path.remote.addrlen)) {
            return address
        }
        return pathStorage.remoteAddress
    }

    // MARK: - Operations for the application protocol

    /// Opens a locally initiated stream; `nil` when the peer's stream limit is reached.
    package func openStream(bidirectional: Bool) throws(QUICError) -> Int64? {
        guard isOpen, let conn else { throw closeError ?? .connectionClosed }
        var streamID: Int64 = -1
        let rv = bidirectional ? ngtcp2_conn_open_bidi_stream(conn, &streamID, nil)
                               : ngtcp2_conn_open_uni_stream(conn, &streamID, nil)
        if rv == NGTCP2_ERR_STREAM_ID_BLOCKED { return nil }
        guard rv == 0 else { throw .internalError("could not open stream: \(ngtcp2Message(rv))") }
        return streamID
    }

    /// How many more streams the peer currently lets us open.
    package func streamsLeft(bidirectional: Bool) -> UInt64 {
        guard isOpen, let conn else { return 0 }
        return bidirectional ? ngtcp2_conn_get_streams_bidi_left(conn) : ngtcp2_conn_get_streams_uni_left(conn)
    }

    /// Gives `count` bytes of receive credit back to the peer on a stream and the connection:
    /// call once the application has consumed them.
    package func extendReceiveWindow(streamID: Int64, by count: Int) {
        guard isOpen, let conn, count > 0 else { return }
        _ = ngtcp2_conn_extend_max_stream_offset(conn, streamID, UInt64(count))
        ngtcp2_conn_extend_max_offset(conn, UInt64(count))
        scheduleWrite()
    }

    /// Gives receive credit for the connection only (bytes that a closed stream will never deliver).
    package func extendConnectionWindow(by count: Int) {
        guard isOpen, let conn, count > 0 else { return }
        ngtcp2_conn_extend_max_offset(conn, UInt64(count))
        scheduleWrite()
    }

    /// Abruptly ends our sending side (RESET_STREAM).
    package func resetStream(streamID: Int64, applicationError code: UInt64) {
        guard isOpen, let conn else { return }
        _ = ngtcp2_conn_shutdown_stream_write(conn, streamID, code)
        scheduleWrite()
    }

    /// Asks the peer to stop sending (STOP_SENDING).
    package func stopSending(streamID: Int64, applicationError code: UInt64) {
        guard isOpen, let conn else { return }
        _ = ngtcp2_conn_shutdown_stream_read(conn, streamID, code)
        scheduleWrite()
    }

    /// Resets and stops both directions of a stream.
    package func shutdownStream(streamID: Int64, applicationError code: UInt64) {
        guard isOpen, let conn else { return }
        _ = ngtcp2_conn_shutdown_stream(conn, streamID, code)
        scheduleWrite()
    }

    /// The server name the client sent in SNI (server side).
    package var tlsServerName: String? { tls.requestedServerName }
    /// The peer's certificate (DER), if it sent one.
    package var peerCertificate: [UInt8]? { tls.peerCertificate }
    /// Why the connection ended, once it has.
    package var terminationError: QUICError? { closeError }

    /// The negotiated ALPN protocol.
    package var negotiatedApplicationProtocol: String? { tls.negotiatedApplicationProtocol }
    /// The peer's address on the current path.
    package var remoteAddress: SocketAddress { pathStorage.remoteAddress }
    /// Our address on the current path.
    package var localAddress: SocketAddress { pathStorage.localAddress }
    /// The negotiated TLS parameters in one line.
    package var tlsParameters: String? { tls.parametersDescription }
    /// Whether the TLS session was resumed.
    package var tlsSessionResumed: Bool { tls.isResumed }
    /// Subject, issuer and expiry (seconds since 1970) of the peer's certificate.
    package var peerCertificateSummary: CertificateSummary? { tls.peerCertificateSummary }

    // MARK: - Callback entry points

    fileprivate func handshakeCompleted() -> Int32 {
        state = .established
        if !isServer, earlyDataKeyInstalled, !tls.earlyDataAccepted, let conn, ngtcp2_conn_get_early_data_rejected(conn) == 0 {
            // The server refused 0-RTT: ngtcp2 drops the early streams; the application resends.
            earlyDataRejected = true
            let rv = ngtcp2_conn_early_data_rejected(conn)
            if rv != 0 { return rv }
            application?.earlyDataRejected()
        }
        // A server's handshake is confirmed when it completes (RFC 9001, section 4.1.2);
        // ngtcp2 reports confirmation through its callback only on the client.
        if isServer { handshakeConfirmed = true }
        do throws(QUICError) {
            try application?.handshakeCompleted()
        } catch {
            callbackError = error
            return NGTCP2_ERR_CALLBACK_FAILURE
        }
        if let promise = handshakePromise {
            handshakePromise = nil
            promise.succeed(())
        }
        host?.connectionEstablished(self)
        return 0
    }

    fileprivate func report(_ body: () throws(QUICError) -> Void) -> Int32 {
        do throws(QUICError) {
            try body()
            return 0
        } catch {
            callbackError = error
            return NGTCP2_ERR_CALLBACK_FAILURE
        }
    }

    fileprivate func newConnectionID(cid: UnsafeMutablePointer<ngtcp2_cid>?, token: UnsafeMutablePointer<UInt8>?,
                                     length: Int) -> Int32 {
        guard let cid, let token else { return NGTCP2_ERR_CALLBACK_FAILURE }
        let id = ConnectionID.issued(by: host, length: length)
        cid.pointee = id.cid
        let resetToken = host?.statelessResetToken(for: id) ?? secureRandomBytes(Int(NGTCP2_STATELESS_RESET_TOKENLEN))
        for index in 0..<min(resetToken.count, Int(NGTCP2_STATELESS_RESET_TOKENLEN)) {
            token[index] = resetToken[index]
        }
        activeConnectionIDs.insert(id)
        issuedConnectionIDs += 1
        host?.register(id, for: self)
        return 0
    }

    fileprivate func removeConnectionID(_ cid: UnsafePointer<ngtcp2_cid>?) -> Int32 {
        guard let cid else { return 0 }
        let id = ConnectionID(cid.pointee)
        if activeConnectionIDs.remove(id) != nil {
            retiredConnectionIDs += 1
            host?.unregister(id)
        }
        return 0
    }

    fileprivate func statelessResetReceived() -> Int32 {
        receivedStatelessReset = true
        return 0
    }

    // MARK: - Helpers

    static func transportCode(liberr: Int32) -> UInt64 {
        ngtcp2_err_infer_quic_transport_error_code(liberr)
    }

    private static func ecnCodepoint(_ state: NIOExplicitCongestionNotificationState) -> UInt8 {
        switch state {
        case .transportNotCapable: return 0
        case .transportCapableFlag1: return 1
        case .transportCapableFlag0: return 2
        case .congestionExperienced: return 3
        }
    }
}

/// The message ngtcp2 gives for an error code.
func ngtcp2Message(_ code: Int32) -> String {
    guard let text = ngtcp2_strerror(code) else { return "ngtcp2 error \(code)" }
    return String(cString: text)
}

// MARK: - C callbacks

/// Recovers the connection from ngtcp2's `user_data`; `nil` if there is none.
@inline(__always)
private func core(_ userData: UnsafeMutableRawPointer?) -> ConnectionCore? {
    guard let userData else { return nil }
    return Unmanaged<ConnectionCore>.fromOpaque(userData).takeUnretainedValue()
}

private let callbackFailure = NGTCP2_ERR_CALLBACK_FAILURE

extension ConnectionCore {
    static func callbacks(isServer: Bool) -> ngtcp2_callbacks {
        var cb = ngtcp2_callbacks()
        if isServer {
            cb.recv_client_initial = ngtcp2_crypto_recv_client_initial_cb
        } else {
            cb.client_initial = ngtcp2_crypto_client_initial_cb
            cb.recv_retry = ngtcp2_crypto_recv_retry_cb
        }
        cb.recv_crypto_data = ngtcp2_crypto_recv_crypto_data_cb
        cb.encrypt = ngtcp2_crypto_encrypt_cb
        cb.decrypt = ngtcp2_crypto_decrypt_cb
        cb.hp_mask = ngtcp2_crypto_hp_mask_cb
        cb.update_key = ngtcp2_crypto_update_key_cb
        cb.delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb
        cb.delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb
        cb.get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb
        cb.version_negotiation = ngtcp2_crypto_version_negotiation_cb
        cb.rand = { dest, length, _ in
            _ = gnutls_rnd(GNUTLS_RND_RANDOM, dest, length)
        }
        cb.handshake_completed = { _, userData in
            core(userData)?.handshakeCompleted() ?? callbackFailure
        }
        cb.recv_tx_key = { _, level, userData in
            if level == NGTCP2_CRYPTO_LEVEL_EARLY { core(userData)?.earlyDataKeyInstalled = true }
            return 0
        }
        cb.select_preferred_addr = { _, dest, preferred, userData in
            guard let core = core(userData), let dest, let preferred else { return 0 }
            core.selectPreferredAddress(dest: dest, preferred: preferred)
            return 0
        }
        cb.path_validation = { _, flags, _, result, userData in
            guard flags & UInt32(NGTCP2_PATH_VALIDATION_FLAG_PREFERRED_ADDR) != 0, let core = core(userData) else { return 0 }
            core.host?.preferredPathValidated(result == NGTCP2_PATH_VALIDATION_RESULT_SUCCESS, for: core)
            return 0
        }
        cb.recv_new_token = { _, token, userData in
            guard let token, let base = token.pointee.base else { return 0 }
            core(userData)?.addressTokenReceived(Array(UnsafeBufferPointer(start: base, count: token.pointee.len)))
            return 0
        }
        cb.handshake_confirmed = { _, userData in
            core(userData)?.handshakeConfirmed = true
            return 0
        }
        cb.get_new_connection_id = { _, cid, token, length, userData in
            core(userData)?.newConnectionID(cid: cid, token: token, length: length) ?? callbackFailure
        }
        cb.remove_connection_id = { _, cid, userData in
            core(userData)?.removeConnectionID(cid) ?? 0
        }
        cb.recv_stateless_reset = { _, _, userData in
            core(userData)?.statelessResetReceived() ?? 0
        }
        cb.stream_open = { _, streamID, userData in
            core(userData)?.application?.streamOpened(streamID: streamID)
            return 0
        }
        cb.recv_stream_data = { _, flags, streamID, _, data, length, userData, _ in
            guard let core = core(userData) else { return 0 }
            let fin = flags & UInt32(NGTCP2_STREAM_DATA_FLAG_FIN) != 0
            if flags & UInt32(NGTCP2_STREAM_DATA_FLAG_EARLY) != 0 {
                core.application?.receivedEarlyData(streamID: streamID)
            }
            return core.report { () throws(QUICError) in
                try core.application?.received(streamID: streamID, data: UnsafeRawBufferPointer(start: data, count: length),
                                               fin: fin)
            }
        }
        cb.acked_stream_data_offset = { _, streamID, offset, length, userData, _ in
            guard let core = core(userData) else { return 0 }
            return core.report { () throws(QUICError) in
                try core.application?.acknowledged(streamID: streamID, offset: offset, length: length)
            }
        }
        cb.stream_close = { conn, flags, streamID, code, userData, _ in
            guard let core = core(userData) else { return 0 }
            let hasCode = flags & UInt32(NGTCP2_STREAM_CLOSE_FLAG_APP_ERROR_CODE_SET) != 0
            core.application?.streamClosed(streamID: streamID, applicationErrorCode: hasCode ? code : nil)
            // ngtcp2 does not raise MAX_STREAMS by itself: give the peer a new stream for each
            // of its streams that closes.
            let peerInitiated = (streamID & 0x1 == 0) == core.isServer
            if peerInitiated, let conn {
                if streamID & 0x2 == 0 {
                    ngtcp2_conn_extend_max_streams_bidi(conn, 1)
                } else {
                    ngtcp2_conn_extend_max_streams_uni(conn, 1)
                }
            }
            return 0
        }
        cb.stream_reset = { _, streamID, _, code, userData, _ in
            core(userData)?.application?.streamReset(streamID: streamID, applicationErrorCode: code)
            return 0
        }
        cb.extend_max_stream_data = { _, streamID, _, userData, _ in
            core(userData)?.application?.streamCreditAvailable(streamID: streamID)
            return 0
        }
        cb.extend_max_local_streams_bidi = { _, _, userData in
            core(userData)?.application?.streamLimitRaised(bidirectional: true)
            return 0
        }
        cb.extend_max_remote_streams_bidi = { _, maxStreams, userData in
            core(userData)?.application?.peerStreamLimitRaised(bidirectional: true, maxStreams: maxStreams)
            return 0
        }
        cb.extend_max_local_streams_uni = { _, _, userData in
            core(userData)?.application?.streamLimitRaised(bidirectional: false)
            return 0
        }
        return cb
    }
}

extension ConnectionCore {
    /// Switches to a new local address at once (the client moved to another socket).
    func migrate(to localAddress: SocketAddress) throws(QUICError) {
        guard state == .established, let conn else {
            throw state == .handshaking ? .invalidArgument("cannot migrate before the handshake completes")
                                        : (closeError ?? .connectionClosed)
        }
        pathStorage.setLocal(localAddress)
        let rv = ngtcp2_conn_initiate_immediate_migration(conn, pathStorage.path, Self.now())
        guard rv == 0 else { throw .invalidArgument("migration refused: \(ngtcp2Message(rv))") }
    }

    /// A NewSessionTicket arrived (client): saves it with the server's transport parameters.
    func sessionTicketReceived() {
        guard let cache = configuration.sessionCache, let key = sessionCacheKey, let conn,
              let session = tls.resumptionData, let remote = ngtcp2_conn_get_remote_transport_params(conn) else { return }
        var encoded = [UInt8](repeating: 0, count: 512)
        let length = encoded.withUnsafeMutableBufferPointer { buffer in
            swift_ngtcp2_encode_transport_params(buffer.baseAddress, buffer.count,
                                                 NGTCP2_TRANSPORT_PARAMS_TYPE_ENCRYPTED_EXTENSIONS, remote)
        }
        guard length > 0 else { return }
        cache.store(QUICSessionTicket(tlsSession: session, transportParameters: Array(encoded.prefix(Int(length))),
                                      received: Int(time(nil))), for: key)
        logger.debug("session ticket saved", metadata: ["server": "\(key)"])
    }

    /// Writes a preferred address transport parameter.
    private static func setPreferredAddress(_ params: inout ngtcp2_transport_params, address: SocketAddress,
                                            id: ConnectionID, resetToken: [UInt8]) {
        params.preferred_address_present = 1
        params.preferred_address.cid = id.cid
        withUnsafeMutableBytes(of: &params.preferred_address.stateless_reset_token) { raw in
            raw.copyBytes(from: resetToken.prefix(raw.count))
        }
        address.withSockAddr { addr, length in
            if Int32(addr.pointee.sa_family) == AF_INET6 {
                addr.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { params.preferred_address.ipv6 = $0.pointee }
                params.preferred_address.ipv6_present = 1
            } else if length >= MemoryLayout<sockaddr_in>.size {
                addr.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { params.preferred_address.ipv4 = $0.pointee }
                params.preferred_address.ipv4_present = 1
            }
        }
    }

    /// Client: ngtcp2 offers the server's preferred address (at handshake confirmation). With
    /// ``QUICConfiguration/followPreferredAddress`` on, a socket towards it is opened and the
    /// new path filled in; ngtcp2 then validates it and moves there.
    fileprivate func selectPreferredAddress(dest: UnsafeMutablePointer<ngtcp2_path>, preferred: UnsafePointer<ngtcp2_preferred_addr>) {
        guard !isServer, configuration.followPreferredAddress, let host else { return }
        var candidate: SocketAddress?
        let wantsIPv6 = pathStorage.remoteAddress.protocol == .inet6
        if wantsIPv6, preferred.pointee.ipv6_present != 0 {
            candidate = SocketAddress(preferred.pointee.ipv6)
        } else if !wantsIPv6, preferred.pointee.ipv4_present != 0 {
            candidate = SocketAddress(preferred.pointee.ipv4)
        }
        guard let remote = candidate, let local = host.openPreferredPath(to: remote, for: self) else { return }
        guard let localAddr = dest.pointee.local.addr, let remoteAddr = dest.pointee.remote.addr else { return }
        // Both point at sockaddr_storage-sized buffers (ngtcp2's documentation).
        dest.pointee.local.addrlen = local.withSockAddr { addr, length in
            memcpy(UnsafeMutableRawPointer(localAddr), addr, length)
            return ngtcp2_socklen(length)
        }
        dest.pointee.remote.addrlen = remote.withSockAddr { addr, length in
            memcpy(UnsafeMutableRawPointer(remoteAddr), addr, length)
            return ngtcp2_socklen(length)
        }
        logger.debug("moving to the server's preferred address", metadata: ["address": "\(remote)"])
    }

    /// Server: queues an address-validation token for the client (a NEW_TOKEN frame).
    func submitAddressToken(_ token: [UInt8]) -> Bool {
        guard isServer, let conn, !token.isEmpty else { return false }
        let rv = token.withUnsafeBufferPointer { ngtcp2_conn_submit_new_token(conn, $0.baseAddress, $0.count) }
        guard rv == 0 else { return false }
        scheduleWrite()
        return true
    }

    /// Client: the server sent a NEW_TOKEN token; it is kept for the next connection.
    fileprivate func addressTokenReceived(_ token: [UInt8]) {
        guard !isServer, !token.isEmpty, let cache = configuration.sessionCache, let key = sessionCacheKey else { return }
        cache.storeAddressToken(token, for: key)
        logger.debug("address validation token saved", metadata: ["server": "\(key)"])
    }

    /// Starts a key update (RFC 9001, section 6): the next packets use the next key phase.
    /// Possible once the handshake is confirmed and the previous update has finished.
    package func initiateKeyUpdate() throws(QUICError) {
        guard state == .established, let conn else {
            throw state == .handshaking ? .invalidArgument("cannot update keys before the handshake completes")
                                        : (closeError ?? .connectionClosed)
        }
        // Debian's ngtcp2 asserts (aborts) when asked before the handshake is done.
        guard handshakeConfirmed, ngtcp2_conn_get_handshake_completed(conn) != 0 else {
            throw .invalidArgument("cannot update keys before the handshake is confirmed")
        }
        let rv = ngtcp2_conn_initiate_key_update(conn, Self.now())
        guard rv == 0 else { throw .invalidArgument("key update not possible now: \(ngtcp2Message(rv))") }
        scheduleWrite()
    }

    /// Puts the path's local address back after a refused migration.
    func restoreLocalAddress(_ address: SocketAddress) {
        pathStorage.setLocal(address)
    }

    /// Ends the connection at once because of something outside QUIC (the socket failed, the
    /// peer's port is closed): no CONNECTION_CLOSE is sent.
    func fail(with error: QUICError) {
        guard isOpen else { return }
        abandon(error: error)
    }
}
