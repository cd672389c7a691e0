import Logging
import NIOCore
import NIOPosix
import QUICSocket

/// Opens client connections.
public enum QUICClient {
    /// Connects to a QUIC server and completes the handshake.
    ///
    /// - Parameters:
    ///   - host: a host name or IP address. The name is also sent in SNI and checked against
    ///     the certificate unless ``QUICTLSConfiguration/serverName`` says otherwise.
    ///   - port: the UDP port.
    /// - Throws: ``QUICError`` — for example ``QUICError/connectionRefused(_:)`` at once when
    ///   nothing listens on the port, ``QUICError/handshakeTimeout`` when nothing answers,
    ///   ``QUICError/certificateVerificationFailed(_:)`` for a certificate we do not trust.
    public static func connect(host: String, port: Int, configuration: QUICConfiguration,
                               socketOptions: UDPSocketOptions = .init(),
                               eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
                               logger: Logger = Logger(label: "swift-h3.quic.client")) async throws -> QUICConnection {
        let core = try await connectCore(host: host, port: port, configuration: configuration, socketOptions: socketOptions,
                                         eventLoopGroup: eventLoopGroup, logger: logger, initialToken: nil,
                                         makeApplication: { StreamApplication(core: $0) })
        return try await core.eventLoop.submit { () throws -> QUICConnection in
            guard let application = core.application as? StreamApplication else {
                throw core.terminationError ?? QUICError.connectionClosed
            }
            let connection = QUICConnection(core: core, application: application)
            application.connection = connection
            return connection
        }.get()
    }

    /// The longest the server's first datagrams are held back for a 0-RTT request to be queued
    /// (see `holdsInboundForEarlyData`); normally the request releases them within microseconds.
    static let earlyDataInboundHold = TimeAmount.milliseconds(250)

    /// Connects and runs the given application protocol on the connection (HTTP/3 uses this).
    ///
    /// - Parameters:
    ///   - initialToken: a token to put in the first Initial (a NEW_TOKEN token; tests
    ///     also use it to present forged tokens).
    ///   - holdsInboundForEarlyData: when the connection starts with a 0-RTT key, hold the
    ///     server's first datagrams back until the application calls
    ///     ``ConnectionCore/releaseInboundHeldForEarlyData()`` (after queueing its first
    ///     request) or ``earlyDataInboundHold`` passes. Without it, on a fast path the server's
    ///     handshake reply can complete the handshake before the request is queued, and the
    ///     request goes in 1-RTT however early it was meant to go.
    package static func connectCore(host: String, port: Int, configuration: QUICConfiguration,
                                    socketOptions: UDPSocketOptions, eventLoopGroup: any EventLoopGroup,
                                    logger: Logger, initialToken: [UInt8]?, holdsInboundForEarlyData: Bool = false,
                                    makeApplication: @escaping @Sendable (ConnectionCore) throws -> any QUICApplicationProtocol)
        async throws -> ConnectionCore {
        try configuration.validate()
        let credentials = try TLSCredentials(configuration: configuration.tls, isServer: false)
        let remote: SocketAddress
        do {
            remote = try SocketAddress.makeAddressResolvingHost(host, port: port)
        } catch {
            throw QUICError.unresolvableHost(host)
        }
        let eventLoop = eventLoopGroup.next()
        let socket = try await UDPSocket.connect(to: remote, options: socketOptions, on: eventLoop)
        let serverName = configuration.tls.serverName ?? host
        let (core, clientHost) = try await eventLoop.submit { () throws -> (ConnectionCore, ClientHost) in
            let host = ClientHost(socket: socket)
            do {
                let path = PathStorage(local: socket.localAddress ?? remote, remote: remote)
                let core = try ConnectionCore(clientWith: configuration, credentials: credentials, serverName: serverName,
                                              path: path, eventLoop: eventLoop, host: host, logger: logger,
                                              initialToken: initialToken, sessionCacheKey: "\(serverName):\(port)")
                core.application = try makeApplication(core)
                host.connection = core
                socket.setDelegate(host)
                return (core, host)
            } catch {
                socket.close()
                throw error
            }
        }.get()
        let handshake = try await eventLoop.submit {
            let handshake = core.start()
            // In the same loop task as the first flight: no reply can be read before the hold.
            if holdsInboundForEarlyData, configuration.enableEarlyData, core.earlyDataKeyInstalled {
                clientHost.holdInbound(for: earlyDataInboundHold)
            }
            return handshake
        }.get()
        // With 0-RTT keys (a resumed session and early data enabled) the connection is usable
        // now; otherwise wait for the handshake.
        if configuration.enableEarlyData, try await eventLoop.submit({ core.earlyDataKeyInstalled }).get() {
            return core
        }
        try await handshake.get()
        return core
    }
}

/// The socket owner for one client connection: a connected UDP socket, so an ICMP
/// port-unreachable surfaces at once as `ECONNREFUSED`.
/// `@unchecked Sendable`: touched only on the socket's event loop (socket callbacks and the
/// connection run there).
final class ClientHost: ConnectionHost, UDPSocketDelegate, @unchecked Sendable {
    private(set) var socket: UDPSocket
    /// Strong: the host keeps the connection alive until it finishes.
    var connection: ConnectionCore?
    /// The path to the server's preferred address while it is validated: its remote and
    /// local address, its socket once the event loop has adopted it, and what ngtcp2 wrote
    /// to it before that (a few PATH_CHALLENGE packets; bounded).
    private var preferred: (remote: SocketAddress, local: SocketAddress, socket: UDPSocket?, waiting: [OutboundDatagram])?

    /// Datagrams from the server held back while the application queues its first 0-RTT
    /// request; `nil` when not holding.
    private var heldInbound: [InboundDatagram]?
    private var holdTimer: Scheduled<Void>?

    init(socket: UDPSocket) {
        self.socket = socket
    }

    /// Holds the server's datagrams back until ``releaseHeldInbound()``, at most `limit`.
    func holdInbound(for limit: TimeAmount) {
        guard heldInbound == nil else { return }
        heldInbound = []
        holdTimer = socket.eventLoop.scheduleTask(in: limit) { [weak self] in self?.releaseHeldInbound() }
    }

    /// Delivers the held datagrams, after the tasks already queued on the loop (the write pass
    /// that sends the request just queued goes first).
    func releaseHeldInbound() {
        guard heldInbound != nil, let timer = holdTimer else { return }
        timer.cancel()
        holdTimer = nil
        // Datagrams that arrive until then join the held ones, so the order stays.
        socket.eventLoop.execute { [self] in
            let held = heldInbound ?? []
            heldInbound = nil
            for datagram in held { connection?.receive(datagram, local: preferred == nil ? nil : socket.localAddress) }
        }
    }

    func send(_ datagrams: [OutboundDatagram], from connection: ConnectionCore) {
        guard var preferred else {
            socket.send(datagrams)
            return
        }
        // During preferred-address validation packets go to two servers' addresses.
        let toPreferred = datagrams.filter { $0.remoteAddress == preferred.remote }
        if toPreferred.count < datagrams.count {
            socket.send(datagrams.filter { $0.remoteAddress != preferred.remote })
        }
        guard !toPreferred.isEmpty else { return }
        if let alternate = preferred.socket {
            alternate.send(toPreferred)
        } else if preferred.waiting.count < 16 {
            preferred.waiting.append(contentsOf: toPreferred.prefix(16 - preferred.waiting.count))
            self.preferred = preferred
        }
    }

    func openPreferredPath(to remote: SocketAddress, for connection: ConnectionCore) -> SocketAddress? {
        guard preferred == nil else { return nil }
        let opened: (descriptor: CInt, local: SocketAddress)
        do {
            opened = try UDPSocket.openConnectedDescriptor(to: remote)
        } catch {
            connection.logger.debug("cannot open a socket to the preferred address", metadata: ["error": "\(error)"])
            return nil
        }
        preferred = (remote, opened.local, nil, [])
        UDPSocket.adopt(descriptor: opened.descriptor, on: socket.eventLoop).whenComplete { [self] result in
            switch result {
            case .success(let adopted):
                guard var pending = preferred, pending.remote == remote, self.connection != nil else {
                    adopted.close()
                    return
                }
                adopted.setDelegate(self)
                pending.socket = adopted
                let waiting = pending.waiting
                pending.waiting = []
                preferred = pending
                if !waiting.isEmpty { adopted.send(waiting) }
            case .failure(let error):
                // (The descriptor is NIO's from the adoption on; it is not closed here twice.)
                connection.logger.debug("cannot use the preferred address socket", metadata: ["error": "\(error)"])
                if preferred?.remote == remote { preferred = nil }
            }
        }
        return opened.local
    }

    var hasAlternatePaths: Bool { preferred != nil }

    func leavesThroughPrimarySocket(local: SocketAddress?, remote: SocketAddress) -> Bool {
        preferred?.remote != remote
    }

    func preferredPathValidated(_ success: Bool, for connection: ConnectionCore) {
        guard let pending = preferred else { return }
        preferred = nil
        guard success, let adopted = pending.socket else {
            pending.socket?.setDelegate(nil)
            pending.socket?.close()
            return
        }
        // The connection now lives on the preferred address: that socket becomes the one.
        let old = socket
        socket = adopted
        old.setDelegate(nil)
        old.close()
    }

    func register(_ id: ConnectionID, for connection: ConnectionCore) {}
    func unregister(_ id: ConnectionID) {}

    func statelessResetToken(for id: ConnectionID) -> [UInt8] {
        secureRandomBytes(16)
    }

    func connectionEstablished(_ connection: ConnectionCore) {}

    func connectionDidFinish(_ connection: ConnectionCore) {
        socket.setDelegate(nil)
        socket.close()
        if let alternate = preferred?.socket {
            alternate.setDelegate(nil)
            alternate.close()
        }
        preferred = nil
        // Break the cycle host -> connection -> host (weak) after the current call returns.
        socket.eventLoop.execute { self.connection = nil }
    }

    func socket(_ socket: UDPSocket, didReceive datagram: InboundDatagram) {
        if let heldCount = heldInbound?.count, socket === self.socket {
            // Held while the first request is queued for 0-RTT (bounded: the rest is dropped, as
            // a full socket buffer would; QUIC recovers).
            if heldCount < 64 { heldInbound?.append(datagram) }
            return
        }
        if socket === self.socket {
            // The path's local address is this socket's (again, after packets on the preferred path).
            connection?.receive(datagram, local: preferred == nil ? nil : socket.localAddress)
        } else if let pending = preferred, socket === pending.socket {
            connection?.receive(datagram, local: pending.local)
        }
    }

    func socket(_ socket: UDPSocket, didReceiveError error: any Error) {
        guard let connection else { return }
        if let io = error as? IOError, io.errnoCode == ECONNREFUSED {
            connection.fail(with: .connectionRefused("nothing is listening at \(connection.remoteAddress) (ICMP port unreachable)"))
        }
    }

    func socketDidClose(_ socket: UDPSocket) {
        guard socket === self.socket, let connection else { return }
        // An ICMP port unreachable may surface in a send instead of a read; NIO then closes
        // the socket, and only the failed write tells why.
        if let io = socket.writeFailure as? IOError, io.errnoCode == ECONNREFUSED {
            connection.fail(with: .connectionRefused("nothing is listening at \(connection.remoteAddress) (ICMP port unreachable)"))
        } else {
            connection.fail(with: .connectionClosed)
        }
    }
}

extension ConnectionCore {
    /// Moves a client connection to a new local socket (see ``QUICConnection/migrate(localHost:localPort:)``);
    /// for protocols that run on the core directly, such as HTTP/3.
    package func migrateClient(localHost: String? = nil, localPort: Int = 0) async throws {
        guard !isServer, let host = host as? ClientHost else {
            throw QUICError.invalidArgument("only a client connection can migrate")
        }
        try await host.migrate(localHost: localHost, localPort: localPort)
    }
}

extension ClientHost {
    /// Moves the connection to a new local socket (connection migration, RFC 9000 section 9):
    /// opens a socket bound to `localHost`:`localPort`, switches the connection's path to it,
    /// and closes the old one. Packets in flight to the old address are recovered by QUIC.
    func migrate(localHost: String?, localPort: Int) async throws {
        guard let connection else { throw QUICError.connectionClosed }
        // Refuse with a clear reason (the peer's disable_active_migration, handshake not yet
        // confirmed) before opening a socket; ngtcp2 would only say "invalid state".
        if let refusal = try await socket.eventLoop.submit({ connection.activeMigrationRefusal() }).get() {
            throw refusal
        }
        let remote = connection.remoteAddress
        let newSocket = try await UDPSocket.connect(to: remote, localHost: localHost, localPort: localPort,
                                                    on: socket.eventLoop)
        try await socket.eventLoop.submit { () throws -> Void in
            guard let connection = self.connection, connection.isOpen else {
                newSocket.close()
                throw QUICError.connectionClosed
            }
            let previousLocal = connection.localAddress
            do {
                try connection.migrate(to: newSocket.localAddress ?? remote)
            } catch {
                // Refused (the peer disabled migration, or no spare connection ID): stay put.
                connection.restoreLocalAddress(previousLocal)
                newSocket.close()
                throw error
            }
            let old = self.socket
            self.socket = newSocket
            newSocket.setDelegate(self)
            old.setDelegate(nil)
            old.close()
            connection.writePackets()
        }.get()
    }
}
