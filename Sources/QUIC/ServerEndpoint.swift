internal import CNgtcp2
internal import CNgtcp2CryptoGnuTLS
import Logging
import NIOCore
import QUICLB
import QUICSocket

/// Settings for a QUIC server endpoint.
public struct QUICServerConfiguration: Sendable, Hashable {
    /// Transport and TLS settings for each connection.
    public var quic: QUICConfiguration
    /// Send a Retry to every new client, so that only clients that prove their address get a
    /// connection (costs a round trip; protects against spoofed-address floods).
    public var requireAddressValidation: Bool
    /// How long a Retry token stays valid.
    public var retryTokenLifetime: Duration
    /// The most connections served at once; further clients are refused with CONNECTION_REFUSED.
    public var maxConnections: Int
    /// The key for stateless reset tokens and Retry tokens (at least 32 bytes). Keep it
    /// across restarts so that clients of a restarted server get a stateless reset at once.
    /// `nil` draws a random key.
    public var statelessResetKey: [UInt8]?
    /// Send each client an address-validation token (a NEW_TOKEN frame) once its handshake
    /// completes. A client that presents it on a later connection has proven its address, so
    /// it skips the Retry of ``requireAddressValidation`` and the anti-amplification limit.
    public var issueAddressValidationTokens: Bool
    /// How long a NEW_TOKEN token is accepted after it was issued.
    public var addressValidationTokenLifetime: Duration
    /// An address the server asks clients to move to once the handshake is confirmed (the
    /// preferred_address transport parameter, RFC 9000 section 9.6). The server binds a
    /// second socket there; clients that follow it (``QUICConfiguration/followPreferredAddress``)
    /// validate the new path and continue on it. `nil`: none.
    public var preferredAddress: PreferredAddress?
    /// QUIC-LB routable connection IDs: every ID the server hands out carries this server ID,
    /// so that a QUIC-LB load balancer routes a migrating or rebound client back here.
    /// `nil`: random IDs.
    public var quicLB: QUICLBServerConfiguration? = nil
    /// How long a graceful shutdown (``QUICListener``'s `Service.run()`) waits for open
    /// connections to close before closing them.
    public var gracefulShutdownTimeout: Duration = .seconds(10)
    /// What the server reports through swift-metrics (on by default, to `MetricsSystem.factory`).
    public var metrics = QUICMetricsConfiguration()

    /// A server's preferred address: an IP address (IPv4 or IPv6) and a UDP port.
    public struct PreferredAddress: Sendable, Hashable {
        /// The IP address advertised to clients (not a host name).
        public var host: String
        /// The UDP port advertised to clients (not 0).
        public var port: Int
        /// Where the second socket is bound, when that differs from the advertised address
        /// (a server behind a NAT or a relay); `nil`: at ``host``:``port``.
        public var bindHost: String?
        /// The port bound with ``bindHost``; `nil`: ``port``.
        public var bindPort: Int?

        /// Creates a preferred address.
        public init(host: String, port: Int, bindHost: String? = nil, bindPort: Int? = nil) {
            self.host = host
            self.port = port
            self.bindHost = bindHost
            self.bindPort = bindPort
        }
    }

    /// Creates server settings with defaults.
    public init(quic: QUICConfiguration, requireAddressValidation: Bool = false,
                retryTokenLifetime: Duration = .seconds(10), maxConnections: Int = 10_000,
                statelessResetKey: [UInt8]? = nil, issueAddressValidationTokens: Bool = true,
                addressValidationTokenLifetime: Duration = .seconds(86_400)) {
        self.quic = quic
        self.requireAddressValidation = requireAddressValidation
        self.retryTokenLifetime = retryTokenLifetime
        self.maxConnections = maxConnections
        self.statelessResetKey = statelessResetKey
        self.issueAddressValidationTokens = issueAddressValidationTokens
        self.addressValidationTokenLifetime = addressValidationTokenLifetime
        self.preferredAddress = nil
    }
}

/// Counters of what a server endpoint did with datagrams it could not route to a connection.
package struct EndpointStatistics: Sendable {
    package var versionNegotiationsSent = 0
    package var statelessResetsSent = 0
    package var retriesSent = 0
    package var invalidTokens = 0
    /// NEW_TOKEN tokens sent to clients, and Initials that came back with a valid one.
    package var addressTokensIssued = 0
    package var addressTokensAccepted = 0
    package var refusedConnections = 0
    package var droppedDatagrams = 0
    package var connectionsAccepted = 0
    package var openConnections = 0
    package var routedConnectionIDs = 0
}

/// The server side of QUIC on one UDP socket: demultiplexes datagrams by destination connection
/// ID, creates connections for new clients, and answers what it cannot route (version
/// negotiation, stateless reset, Retry, refusal).
///
/// Confined to the socket's event loop.
package final class ServerEndpoint: ConnectionHost, ConnectionIDIssuer, UDPSocketDelegate, @unchecked Sendable {
    package let socket: UDPSocket
    /// The socket on the preferred address, if one is configured, and its address.
    let preferredSocket: UDPSocket?
    private let preferredLocal: SocketAddress?
    /// The preferred address as advertised (the bound one unless configured otherwise).
    private let preferredAdvertised: SocketAddress?
    private let primaryLocal: SocketAddress?
    let configuration: QUICServerConfiguration
    let credentials: TLSCredentials
    let logger: Logger
    private let resetKey: StatelessResetKey
    private let retryTokens: RetryTokenCodec
    private let newTokens: NewTokenCodec
    let connectionIDs: ServerConnectionIDs
    /// The other loops of a multi-loop server (ServerEndpointGroup.swift); `nil`: one loop.
    let group: EndpointGroupContext?
    private var routes: [ConnectionID: ConnectionCore] = [:]
    private var connections: [ObjectIdentifier: ConnectionCore] = [:]
    private let makeApplication: (ConnectionCore) throws -> any QUICApplicationProtocol
    private let onEstablished: (ConnectionCore) -> Void
    private(set) var statistics = EndpointStatistics()
    /// The server's swift-metrics (`nil` when disabled).
    package let metrics: QUICServerMetrics?
    private var closing = false
    private var accepting = true
    private let closedPromise: EventLoopPromise<Void>
    /// Connections being closed; the socket closes when this reaches zero.
    private var allClosedWaiter: EventLoopPromise<Void>?
    /// Completed when the last open connection finishes (graceful shutdown of a listener).
    private var noConnectionsWaiters: [EventLoopPromise<Void>] = []

    init(socket: UDPSocket, preferredSocket: UDPSocket? = nil, configuration: QUICServerConfiguration, logger: Logger,
         makeApplication: @escaping (ConnectionCore) throws -> any QUICApplicationProtocol,
         onEstablished: @escaping (ConnectionCore) -> Void, group: EndpointGroupContext? = nil) throws(QUICError) {
        try configuration.quic.validate()
        if configuration.maxConnections < 1 { throw .invalidArgument("maxConnections must be at least 1") }
        let key = configuration.statelessResetKey ?? secureRandomBytes(32)
        if key.count < 32 { throw .invalidArgument("the stateless reset key must be at least 32 bytes") }
        self.socket = socket
        self.preferredSocket = preferredSocket
        self.preferredLocal = preferredSocket?.localAddress
        if preferredSocket != nil, let preferred = configuration.preferredAddress {
            do {
                self.preferredAdvertised = try SocketAddress(ipAddress: preferred.host, port: preferred.port)
            } catch {
                throw .invalidArgument("the preferred address must be an IP address: \(preferred.host)")
            }
        } else {
            self.preferredAdvertised = nil
        }
        self.primaryLocal = socket.localAddress
        self.configuration = configuration
        self.credentials = try EndpointGroupContext.credentials(for: group, configuration: configuration)
        self.logger = logger
        self.resetKey = StatelessResetKey(secret: Array(key.prefix(32)))
        // A separate key for tokens, derived so that one configured key serves both.
        self.retryTokens = RetryTokenCodec(secret: Array(key.reversed().prefix(32)),
                                           lifetime: configuration.retryTokenLifetime)
        self.newTokens = NewTokenCodec(secret: Array(key.reversed().prefix(32)),
                                       lifetime: configuration.addressValidationTokenLifetime)
        self.connectionIDs = try ServerConnectionIDs(configuration: group?.quicLB ?? configuration.quicLB,
                                                     loopTag: group.map { UInt8($0.loopIndex) })
        self.group = group
        self.makeApplication = makeApplication
        self.onEstablished = onEstablished
        self.closedPromise = socket.eventLoop.makePromise()
        self.metrics = QUICServerMetrics(configuration.metrics)
        socket.metrics = metrics
        preferredSocket?.metrics = metrics
    }

    package var eventLoop: any EventLoop { socket.eventLoop }
    package var closeFuture: EventLoopFuture<Void> { closedPromise.futureResult }

    package var currentStatistics: EndpointStatistics {
        var stats = statistics
        stats.openConnections = connections.count
        stats.routedConnectionIDs = routes.count
        return stats
    }

    // MARK: UDPSocketDelegate

    package func socket(_ socket: UDPSocket, didReceive datagram: InboundDatagram) {
        // An empty datagram (valid UDP) holds no packet, and ngtcp2_pkt_decode_version_cid
        // asserts a non-zero length: Debian's libngtcp2 keeps its assertions, so it would abort
        // the process. UDPSocket drops empty reads today; the endpoint does not rely on that.
        guard datagram.buffer.readableBytes > 0 else {
            statistics.droppedDatagrams += 1
            return
        }
        // The IDs are copied out while the datagram's bytes are in scope: `ngtcp2_version_cid`
        // points into them.
        let (rv, destination, source) = datagram.buffer.withUnsafeReadableBytes { raw -> (Int32, ConnectionID, ConnectionID) in
            guard let base = raw.baseAddress?.assumingMemoryBound(to: UInt8.self) else {
                return (-1, ConnectionID(unchecked: []), ConnectionID(unchecked: []))
            }
            var vc = ngtcp2_version_cid()
            let rv = ngtcp2_pkt_decode_version_cid(&vc, base, raw.count, connectionIDs.length)
            guard rv == 0 || rv == NGTCP2_ERR_VERSION_NEGOTIATION else {
                return (rv, ConnectionID(unchecked: []), ConnectionID(unchecked: []))
            }
            return (rv, ConnectionID(pointer: vc.dcid, length: vc.dcidlen), ConnectionID(pointer: vc.scid, length: vc.scidlen))
        }
        if rv == NGTCP2_ERR_VERSION_NEGOTIATION {
            sendVersionNegotiation(destination: destination, source: source, datagram: datagram)
            return
        }
        guard rv == 0 else {
            statistics.droppedDatagrams += 1
            return
        }
        if let connection = routes[destination] {
            metrics?.datagramRouted(datagram.buffer, to: connection)
            // With a preferred address, the path's local address tells ngtcp2 which socket.
            connection.receive(datagram, local: preferredSocket == nil ? nil : (socket === preferredSocket ? preferredLocal : primaryLocal))
            return
        }
        if let group, group.handOff(destination, datagram, from: self) { return }
        if socket === preferredSocket {
            // New connections start on the main address.
            statistics.droppedDatagrams += 1
            return
        }
        let isLongHeader = datagram.buffer.getInteger(at: datagram.buffer.readerIndex, as: UInt8.self).map { $0 & 0x80 != 0 } ?? false
        if isLongHeader {
            acceptInitial(datagram)
        } else {
            sendStatelessReset(for: destination, datagram: datagram)
        }
    }

    package func socket(_ socket: UDPSocket, didReceiveError error: any Error) {
        // An unconnected socket may report ICMP errors for one client; they concern no
        // single connection here (connections time out on their own).
        logger.debug("UDP socket error", metadata: ["error": "\(error)"])
    }

    package func socketDidClose(_ socket: UDPSocket) {
        guard socket === self.socket else { return }
        preferredSocket?.close()
        for connection in connections.values { connection.abandon() }
        closedPromise.succeed(())
    }

    // MARK: New connections

    private func acceptInitial(_ datagram: InboundDatagram) {
        guard accepting, !closing else { statistics.droppedDatagrams += 1; return }
        var header = ngtcp2_pkt_hd()
        // The header's token points into the datagram: copy it while the bytes are in scope and
        // clear the pointer, so nothing later can follow it.
        let (rv, token) = datagram.buffer.withUnsafeReadableBytes { raw -> (Int32, [UInt8]) in
            guard let base = raw.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return (-1, []) }
            let rv = ngtcp2_accept(&header, base, raw.count)
            let token = header.token.base.map { Array(UnsafeBufferPointer(start: $0, count: header.token.len)) } ?? []
            header.token = ngtcp2_vec()
            return (rv, token)
        }
        guard rv == 0, header.type == UInt8(NGTCP2_PKT_INITIAL.rawValue) else {
            statistics.droppedDatagrams += 1
            return
        }
        if connections.count >= configuration.maxConnections || !(group?.budget.hasRoom ?? true) {
            statistics.refusedConnections += 1
            metrics?.refusedAtConnectionLimit()
            logger.debug("connection refused: limit reached", metadata: ["remote": "\(datagram.remoteAddress.endpointText)"])
            sendConnectionClose(to: header, datagram: datagram, error: TransportErrorCode.connectionRefused)
            return
        }
        let clientDestination = ConnectionID(header.dcid)
        var originalDestination = clientDestination
        var retrySource: ConnectionID?
        var validatedToken: [UInt8] = []
        let now = ConnectionCore.now()
        if !token.isEmpty && token[0] == UInt8(NGTCP2_CRYPTO_TOKEN_MAGIC_REGULAR)
            && newTokens.validate(token, remote: datagram.remoteAddress, now: now) {
            // A NEW_TOKEN token from an earlier connection: the address is proven, no Retry.
            statistics.addressTokensAccepted += 1
            validatedToken = token
        } else if !token.isEmpty && token[0] == UInt8(NGTCP2_CRYPTO_TOKEN_MAGIC_RETRY) {
            guard let original = retryTokens.validate(token, remote: datagram.remoteAddress, destinationID: clientDestination,
                                                      version: header.version, now: now) else {
                statistics.invalidTokens += 1
                sendConnectionClose(to: header, datagram: datagram, error: TransportErrorCode.invalidToken)
                return
            }
            originalDestination = original
            retrySource = clientDestination
            validatedToken = token
        } else if configuration.requireAddressValidation {
            // No token, or a NEW_TOKEN token that is stale or not ours: RFC 9000, 8.1.3 says
            // treat it as no token (a Retry), not as an error.
            if !token.isEmpty { statistics.invalidTokens += 1 }
            sendRetry(to: header, datagram: datagram, now: now)
            return
        }

        let path = PathStorage(local: socket.localAddress ?? datagram.remoteAddress, remote: datagram.remoteAddress)
        let connection: ConnectionCore
        do {
            connection = try withUnsafePointer(to: &header) { headerPointer throws(QUICError) in
                try ConnectionCore(serverWith: configuration.quic, credentials: credentials, header: headerPointer,
                                   token: validatedToken,  // only a validated token
                                   originalDestinationID: originalDestination, retrySourceID: retrySource,
                                   path: path, eventLoop: eventLoop, host: self,
                                   logger: connectionLogger(originalDestination, remote: datagram.remoteAddress),
                                   preferredAddress: preferredAdvertised)
            }
        } catch {
            logger.warning("could not create a connection", metadata: ["error": "\(error)"])
            statistics.droppedDatagrams += 1
            return
        }
        do {
            connection.application = try makeApplication(connection)
        } catch {
            logger.warning("could not start the application protocol", metadata: ["error": "\(error)"])
            connection.abandon()
            return
        }
        connections[ObjectIdentifier(connection)] = connection
        group?.budget.add()
        statistics.connectionsAccepted += 1
        metrics?.connectionOpened(connection, firstDatagram: datagram.buffer)
        // Read first: ngtcp2 derives the Initial keys from the client's first packet.
        connection.receive(datagram)
    }

    // MARK: Answers without a connection

    private func sendVersionNegotiation(destination: ConnectionID, source: ConnectionID, datagram: InboundDatagram) {
        // Only datagrams large enough to be a client's first flight get an answer (RFC 9000, 6.1).
        guard datagram.buffer.readableBytes >= 1200 else { statistics.droppedDatagrams += 1; return }
        var versions: [UInt32] = [NGTCP2_PROTO_VER_V1, 0x1a2a_3a4a]  // v1 plus a greased version
        var out = ByteBufferAllocator().buffer(capacity: 256)
        let unused = secureRandomBytes(1)[0]
        let written = out.writeWithUnsafeMutableBytes(minimumWritableBytes: 256) { raw in
            // The answer swaps the IDs: its destination is the client's source ID.
            let n = ngtcp2_pkt_write_version_negotiation(
                raw.baseAddress?.assumingMemoryBound(to: UInt8.self), raw.count, unused,
                source.bytes, source.bytes.count, destination.bytes, destination.bytes.count, &versions, versions.count)
            return n > 0 ? Int(n) : 0
        }
        guard written > 0 else { return }
        statistics.versionNegotiationsSent += 1
        metrics?.versionNegotiationSent()
        socket.send(CollectionOfOne(OutboundDatagram(buffer: out, remoteAddress: datagram.remoteAddress)))
    }

    private func sendStatelessReset(for id: ConnectionID, datagram: InboundDatagram) {
        // The reset must be shorter than what triggered it (no loops between two endpoints)
        // and at least 1 + 5 random + 16 token bytes long; smaller datagrams are dropped.
        let tokenLength = Int(NGTCP2_STATELESS_RESET_TOKENLEN)
        let minimumRandom = Int(NGTCP2_MIN_STATELESS_RESET_RANDLEN)
        let incoming = datagram.buffer.readableBytes
        guard incoming > 1 + minimumRandom + tokenLength + 1, id.count > 0 else {
            statistics.droppedDatagrams += 1
            return
        }
        let randomLength = min(incoming - 1 - tokenLength - 1, 40)
        var token = resetKey.token(for: id)
        let random = secureRandomBytes(randomLength)
        var out = ByteBufferAllocator().buffer(capacity: 64)
        let written = out.writeWithUnsafeMutableBytes(minimumWritableBytes: 64) { raw in
            let n = ngtcp2_pkt_write_stateless_reset(raw.baseAddress?.assumingMemoryBound(to: UInt8.self), raw.count,
                                                     &token, random, random.count)
            return n > 0 ? Int(n) : 0
        }
        guard written > 0 else { return }
        statistics.statelessResetsSent += 1
        metrics?.statelessResetSent()
        socket.send(CollectionOfOne(OutboundDatagram(buffer: out, remoteAddress: datagram.remoteAddress)))
    }

    private func sendRetry(to header: ngtcp2_pkt_hd, datagram: InboundDatagram, now: UInt64) {
        let retrySource = connectionIDs.make()
        let clientDestination = ConnectionID(header.dcid)
        guard let token = retryTokens.makeToken(remote: datagram.remoteAddress, retrySourceID: retrySource,
                                                originalDestinationID: clientDestination,
                                                version: header.version, now: now) else { return }
        var dcid = header.scid, scid = retrySource.cid, odcid = header.dcid
        var out = ByteBufferAllocator().buffer(capacity: 256)
        let written = out.writeWithUnsafeMutableBytes(minimumWritableBytes: 256) { raw in
            let n = ngtcp2_crypto_write_retry(raw.baseAddress?.assumingMemoryBound(to: UInt8.self), raw.count,
                                              header.version, &dcid, &scid, &odcid, token, token.count)
            return n > 0 ? Int(n) : 0
        }
        guard written > 0 else { return }
        statistics.retriesSent += 1
        metrics?.retrySent()
        socket.send(CollectionOfOne(OutboundDatagram(buffer: out, remoteAddress: datagram.remoteAddress)))
    }

    private func sendConnectionClose(to header: ngtcp2_pkt_hd, datagram: InboundDatagram, error: UInt64) {
        var dcid = header.scid, scid = header.dcid
        var out = ByteBufferAllocator().buffer(capacity: 256)
        let written = out.writeWithUnsafeMutableBytes(minimumWritableBytes: 256) { raw in
            let n = ngtcp2_crypto_write_connection_close(raw.baseAddress?.assumingMemoryBound(to: UInt8.self), raw.count,
                                                         header.version, &dcid, &scid, error, nil, 0)
            return n > 0 ? Int(n) : 0
        }
        guard written > 0 else { return }
        socket.send(CollectionOfOne(OutboundDatagram(buffer: out, remoteAddress: datagram.remoteAddress)))
    }

    // MARK: ConnectionHost

    var hasAlternatePaths: Bool { preferredSocket != nil }

    func leavesThroughPrimarySocket(local: SocketAddress?, remote: SocketAddress) -> Bool {
        local == nil || local != preferredLocal
    }

    func send(_ datagrams: [OutboundDatagram], from connection: ConnectionCore) {
        guard let preferredSocket, let preferredLocal else {
            socket.send(datagrams)
            return
        }
        // Each packet leaves from the socket of its path's local address.
        if datagrams.allSatisfy({ $0.localAddress != preferredLocal }) {
            socket.send(datagrams)
        } else {
            socket.send(datagrams.filter { $0.localAddress != preferredLocal })
            preferredSocket.send(datagrams.filter { $0.localAddress == preferredLocal })
        }
    }

    func register(_ id: ConnectionID, for connection: ConnectionCore) {
        routes[id] = connection
    }

    func unregister(_ id: ConnectionID) {
        routes[id] = nil
    }

    func issueConnectionID(requestedLength: Int?) -> ConnectionID {
        connectionIDs.make(requestedLength: requestedLength)
    }

    func statelessResetToken(for id: ConnectionID) -> [UInt8] {
        resetKey.token(for: id)
    }

    func connectionEstablished(_ connection: ConnectionCore) {
        if configuration.issueAddressValidationTokens,
           let token = newTokens.makeToken(remote: connection.remoteAddress, now: ConnectionCore.now()),
           connection.submitAddressToken(token) {
            statistics.addressTokensIssued += 1
        }
        metrics?.handshakeCompleted(connection)
        connection.connectionLogger.debug("handshake completed", metadata: ["resumed": "\(connection.tlsSessionResumed)"])
        onEstablished(connection)
    }

    func connectionDidFinish(_ connection: ConnectionCore) {
        if connections.removeValue(forKey: ObjectIdentifier(connection)) != nil {
            group?.budget.remove()
            metrics?.connectionFinished(connection)
            connection.connectionLogger.debug("connection finished",
                                              metadata: ["reason": "\(QUICServerMetrics.CloseReason(connection.terminationError).rawValue)"])
        }
        if connections.isEmpty, !noConnectionsWaiters.isEmpty {
            let waiters = noConnectionsWaiters
            noConnectionsWaiters = []
            for waiter in waiters { waiter.succeed(()) }
        }
        if closing && connections.isEmpty {
            socket.close()
        }
    }

    // MARK: Shutdown

    /// Closes every connection with `applicationError`, waits out their closing periods, then
    /// closes the socket.
    package func close(applicationError: UInt64 = 0) {
        guard !closing else { return }
        closing = true
        if connections.isEmpty {
            socket.close()
            preferredSocket?.close()
            return
        }
        for connection in Array(connections.values) {
            if connection.isOpen {
                connection.close(applicationError: applicationError, reason: "server shutting down")
            }
        }
    }

    /// The logger of a new connection: the endpoint's, with the client's first destination
    /// connection ID (the ID qlog files are named after) and its address as metadata.
    private func connectionLogger(_ originalDestination: ConnectionID, remote: SocketAddress) -> Logger {
        var logger = self.logger
        logger[metadataKey: "quic.odcid"] = "\(originalDestination)"
        logger[metadataKey: "remote"] = "\(remote.endpointText)"
        return logger
    }

    /// Succeeds once no connection is open (at once if none is).
    package func whenNoConnections() -> EventLoopFuture<Void> {
        if connections.isEmpty { return eventLoop.makeSucceededVoidFuture() }
        let promise = eventLoop.makePromise(of: Void.self)
        noConnectionsWaiters.append(promise)
        return promise.futureResult
    }

    /// Stops accepting new connections (Initials are dropped); existing ones carry on.
    package func stopAccepting() {
        accepting = false
    }

    /// Forgets every connection without telling the peers (a crash, as far as they can tell).
    func abandonAllConnections() {
        for connection in Array(connections.values) { connection.abandon() }
    }
}
