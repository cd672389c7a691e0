import Logging
import NIOCore
import NIOPosix
import QUICSocket

/// A QUIC server: listens on a UDP port and hands out established connections.
///
/// ```swift
/// let listener = try await QUICListener.bind(host: "127.0.0.1", port: 4433, configuration: config)
/// for await connection in listener.connections {
///     Task { for await stream in connection.incomingStreams { ... } }
/// }
/// ```
public final class QUICListener: Sendable {
    /// The first loop's endpoint (the only one with one loop).
    let endpoint: ServerEndpoint
    /// One endpoint per loop, each on its own `SO_REUSEPORT` socket of the same port.
    let endpoints: [ServerEndpoint]
    /// The address the listener is bound to (with the real port when bound to port 0).
    public let localAddress: SocketAddress
    /// Connections whose handshake completed, in order. Ends when the listener closes.
    public let connections: AsyncStream<QUICConnection>

    private init(endpoints: [ServerEndpoint], localAddress: SocketAddress, connections: AsyncStream<QUICConnection>) {
        self.endpoint = endpoints[0]
        self.endpoints = endpoints
        self.localAddress = localAddress
        self.connections = connections
    }

    /// Binds a UDP socket and starts accepting QUIC connections.
    ///
    /// With `loops` above 1 it binds that many `SO_REUSEPORT` sockets on the same address and
    /// port, each served by its own event loop of `eventLoopGroup` (which must have that many):
    /// the kernel spreads clients over them by their 4-tuple, each connection stays on the loop
    /// that accepted it, and a datagram the kernel delivers to another loop's socket (after a
    /// migration or NAT rebinding) is handed over by the loop index its connection ID carries.
    /// `nil` (the default) means one loop per core, at most as many as the group has; a
    /// preferred address (``QUICServerConfiguration/preferredAddress``) needs one loop.
    public static func bind(host: String, port: Int, configuration: QUICServerConfiguration, loops: Int? = nil,
                            socketOptions: UDPSocketOptions = .init(),
                            eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
                            logger: Logger = Logger(label: "swift-h3.quic.server")) async throws -> QUICListener {
        let (stream, continuation) = AsyncStream.makeStream(of: QUICConnection.self)
        let endpoints = try await bindEndpoints(
            host: host, port: port,
            loops: resolvedLoopCount(loops, configuration: configuration, eventLoopGroup: eventLoopGroup), configuration: configuration, socketOptions: socketOptions,
            eventLoopGroup: eventLoopGroup, logger: logger,
            makeApplication: { core in StreamApplication(core: core) },
            onEstablished: { core in
                guard let application = core.application as? StreamApplication else { return }
                let connection = QUICConnection(core: core, application: application)
                application.connection = connection
                continuation.yield(connection)
            })
        let closed = EventLoopFuture.andAllComplete(endpoints.map(\.closeFuture), on: endpoints[0].eventLoop)
        closed.whenComplete { _ in continuation.finish() }
        guard let address = endpoints[0].socket.localAddress else {
            throw QUICError.internalError("the bound socket has no local address")
        }
        return QUICListener(endpoints: endpoints, localAddress: address, connections: stream)
    }

    /// Binds a server endpoint whose connections run the given application protocol
    /// (HTTP/3 uses this with nghttp3).
    package static func bindEndpoint(host: String, port: Int, configuration: QUICServerConfiguration,
                                     socketOptions: UDPSocketOptions, eventLoopGroup: any EventLoopGroup,
                                     logger: Logger,
                                     makeApplication: @escaping @Sendable (ConnectionCore) throws -> any QUICApplicationProtocol,
                                     onEstablished: @escaping @Sendable (ConnectionCore) -> Void) async throws -> ServerEndpoint {
        let eventLoop = eventLoopGroup.next()
        let socket = try await UDPSocket.bind(host: host, port: port, options: socketOptions, on: eventLoop)
        var preferredSocket: UDPSocket?
        if let preferred = configuration.preferredAddress {
            do {
                guard (1...65535).contains(preferred.port), (1...65535).contains(preferred.bindPort ?? preferred.port) else {
                    throw QUICError.invalidArgument("the preferred address needs a port (1-65535)")
                }
                preferredSocket = try await UDPSocket.bind(host: preferred.bindHost ?? preferred.host,
                                                           port: preferred.bindPort ?? preferred.port,
                                                           options: socketOptions, on: eventLoop)
            } catch {
                try? await socket.channel.close().get()
                throw error
            }
        }
        let secondSocket = preferredSocket
        return try await eventLoop.submit { () throws -> ServerEndpoint in
            do {
                let endpoint = try ServerEndpoint(socket: socket, preferredSocket: secondSocket, configuration: configuration,
                                                  logger: logger, makeApplication: makeApplication, onEstablished: onEstablished)
                socket.setDelegate(endpoint)
                secondSocket?.setDelegate(endpoint)
                return endpoint
            } catch {
                socket.close()
                secondSocket?.close()
                throw error
            }
        }.get()
    }

    /// Closes every connection (application error 0) and then the socket; returns when done.
    public func close() async {
        for endpoint in endpoints { endpoint.eventLoop.execute { endpoint.close() } }
        for endpoint in endpoints { try? await endpoint.closeFuture.get() }
    }

    /// Each loop's endpoint counters and how many datagrams it handed to another loop (for
    /// diagnostics and tests).
    package func loopStatistics() async throws -> [(statistics: EndpointStatistics, handedOff: Int)] {
        var result: [(statistics: EndpointStatistics, handedOff: Int)] = []
        for endpoint in endpoints {
            result.append(try await endpoint.eventLoop.submit { (endpoint.currentStatistics, endpoint.handedOffDatagrams) }.get())
        }
        return result
    }

    /// What the endpoint did with datagrams it could not route (for diagnostics and tests).
    package func statistics() async throws -> EndpointStatistics {
        .summing(try await loopStatistics().map(\.statistics))
    }

    /// What the listener's UDP sockets (one per loop, added up) handed to and got from the
    /// kernel, and whether GSO and GRO are on (on every socket) (for tests and diagnostics).
    package func socketStatistics() async throws -> (statistics: UDPSocketStatistics, segmentationOffload: Bool,
                                                      receiveOffload: Bool) {
        var all: [(statistics: UDPSocketStatistics, gso: Bool, gro: Bool)] = []
        for endpoint in endpoints {
            all.append(try await endpoint.eventLoop.submit {
                (endpoint.socket.statistics, endpoint.socket.segmentationOffloadEnabled, endpoint.socket.receiveOffloadEnabled)
            }.get())
        }
        let total = UDPSocketStatistics.summing(all.map(\.statistics))
        return (total, all.allSatisfy(\.gso), all.allSatisfy(\.gro))
    }

    /// Hands `bytes` to the endpoint as if they had arrived on its socket from `remoteAddress`,
    /// and returns once the endpoint has handled them. Replies go out through the real socket.
    /// The datagram fuzz target (`Fuzz/`, `FuzzEntryPoints`) uses this to skip the network.
    package func receive(datagram bytes: [UInt8], from remoteAddress: SocketAddress) async throws {
        let endpoint = self.endpoint
        try await endpoint.eventLoop.submit {
            let datagram = InboundDatagram(buffer: ByteBuffer(bytes: bytes), remoteAddress: remoteAddress)
            endpoint.socket(endpoint.socket, didReceive: datagram)
        }.get()
    }

    /// Drops every connection's state without telling the peers (tests of stateless reset).
    package func abandonAllConnections() async throws {
        for endpoint in endpoints { try await endpoint.eventLoop.submit { endpoint.abandonAllConnections() }.get() }
    }
}
