import Logging
import NIOConcurrencyHelpers
import NIOCore
import QUICLB
import QUICSocket

/// The most connections a multi-loop server holds at once, counted across its loops. Touched
/// when a connection is accepted or finishes, never per datagram.
final class ConnectionBudget: Sendable {
    private let open = NIOLockedValueBox(0)
    let limit: Int

    init(limit: Int) { self.limit = limit }

    /// Whether one more connection fits.
    var hasRoom: Bool { open.withLockedValue { $0 < limit } }
    func add() { open.withLockedValue { $0 += 1 } }
    func remove() { open.withLockedValue { $0 = max(0, $0 - 1) } }
}

/// The endpoints of a multi-loop server, one per event loop, filled in once after they are
/// all bound and read-only from then on.
/// (Read on hand-offs only, which follow a routing miss: not per datagram.)
final class EndpointPeers: @unchecked Sendable {
    private let endpoints = NIOLockedValueBox<[ServerEndpoint]>([])

    func complete(_ endpoints: [ServerEndpoint]) {
        self.endpoints.withLockedValue { $0 = endpoints }
    }

    func endpoint(at index: Int) -> ServerEndpoint? {
        endpoints.withLockedValue { index < $0.count ? $0[index] : nil }
    }
}

/// What one endpoint of a multi-loop server shares with the others, and its place among them.
///
/// Shared: the TLS credentials (so session tickets and 0-RTT anti-replay work whichever loop a
/// resuming client lands on), the QUIC-LB configuration (server ID), the connection budget, and
/// through the configuration the stateless reset and token key. Its own: the loop index, which
/// every connection ID it issues carries in its first nonce byte.
///
/// A datagram whose destination ID is not routed on this loop but carries another loop's index
/// (the kernel's `SO_REUSEPORT` hash moved the client's new 4-tuple to this loop's socket) is
/// handed to that loop: the ID is decoded, no table shared between loops is consulted.
final class EndpointGroupContext: @unchecked Sendable {
    let loopIndex: Int
    let credentials: TLSCredentials
    let quicLB: QUICLBServerConfiguration
    let budget: ConnectionBudget
    let peers: EndpointPeers
    /// Datagrams this loop handed to another (confined to this loop).
    var handedOff = 0

    init(loopIndex: Int, credentials: TLSCredentials, quicLB: QUICLBServerConfiguration, budget: ConnectionBudget,
         peers: EndpointPeers) {
        self.loopIndex = loopIndex
        self.credentials = credentials
        self.quicLB = quicLB
        self.budget = budget
        self.peers = peers
    }

    /// Hands `datagram` to the loop whose index `destination` carries, if that is another
    /// loop of this server; returns whether it did. Called on `endpoint`'s loop after a
    /// routing miss only.
    func handOff(_ destination: ConnectionID, _ datagram: InboundDatagram, from endpoint: ServerEndpoint) -> Bool {
        guard let tag = endpoint.connectionIDs.loopTag(of: destination), Int(tag) != loopIndex else { return false }
        guard let target = peers.endpoint(at: Int(tag)) else { return false }
        handedOff += 1
        target.eventLoop.execute {
            target.socket(target.socket, didReceive: datagram)
        }
        return true
    }

    /// The group's shared credentials, or new ones for a single-loop endpoint.
    static func credentials(for group: EndpointGroupContext?, configuration: QUICServerConfiguration) throws(QUICError)
        -> TLSCredentials {
        if let group { return group.credentials }
        return try TLSCredentials(configuration: configuration.quic.tls, isServer: true)
    }

    /// The QUIC-LB configuration of a multi-loop server: the configured one, or a private one
    /// (random key and server ID) that only serves to carry the loop index.
    static func quicLB(for configuration: QUICServerConfiguration) throws(QUICError) -> QUICLBServerConfiguration {
        if let configured = configuration.quicLB { return configured }
        do {
            let own = try QUICLBConfiguration(configID: 0, serverIDLength: 3, nonceLength: 12, key: secureRandomBytes(16))
            return try QUICLBServerConfiguration(configuration: own, serverID: secureRandomBytes(3))
        } catch {
            throw .internalError("cannot make the loop-index connection ID configuration: \(error)")
        }
    }
}

extension QUICListener {
    /// The loop count a server runs with: `loops` if given, otherwise one per core (at most the
    /// group's loop count), and 1 with a preferred address (whose second socket one loop owns).
    package static func resolvedLoopCount(_ loops: Int?, configuration: QUICServerConfiguration,
                                          eventLoopGroup: any EventLoopGroup) -> Int {
        if let loops { return loops }
        if configuration.preferredAddress != nil { return 1 }
        var available = 0
        for _ in eventLoopGroup.makeIterator() { available += 1 }
        return max(1, min(System.coreCount, available, 255))
    }

    /// Binds one `SO_REUSEPORT` socket per loop on the same address and port, each with its own
    /// server endpoint on its own event loop of `eventLoopGroup`.
    package static func bindEndpoints(host: String, port: Int, loops: Int, configuration: QUICServerConfiguration,
                                      socketOptions: UDPSocketOptions, eventLoopGroup: any EventLoopGroup,
                                      logger: Logger,
                                      makeApplication: @escaping @Sendable (ConnectionCore) throws -> any QUICApplicationProtocol,
                                      onEstablished: @escaping @Sendable (ConnectionCore) -> Void) async throws -> [ServerEndpoint] {
        guard (1...255).contains(loops) else { throw QUICError.invalidArgument("the loop count must be 1 to 255, not \(loops)") }
        if loops > 1 && configuration.preferredAddress != nil {
            throw QUICError.invalidArgument("a preferred address needs a single-loop server")
        }
        if loops == 1 {
            return [try await bindEndpoint(host: host, port: port, configuration: configuration, socketOptions: socketOptions,
                                           eventLoopGroup: eventLoopGroup, logger: logger, makeApplication: makeApplication,
                                           onEstablished: onEstablished)]
        }
        let eventLoops = Array(eventLoopGroup.makeIterator().prefix(loops))
        guard eventLoops.count == loops else {
            throw QUICError.invalidArgument("\(loops) loops asked for, the event loop group has \(eventLoops.count)")
        }
        try configuration.quic.validate()
        var shared = configuration
        // One reset/token key for all loops: a stateless reset or a token from any loop is valid on every other.
        shared.statelessResetKey = configuration.statelessResetKey ?? secureRandomBytes(32)
        shared.preferredAddress = nil
        let credentials = try TLSCredentials(configuration: configuration.quic.tls, isServer: true)
        let quicLB = try EndpointGroupContext.quicLB(for: configuration)
        let budget = ConnectionBudget(limit: configuration.maxConnections)
        let peers = EndpointPeers()
        var options = socketOptions
        options.reusePort = true
        var endpoints: [ServerEndpoint] = []
        var boundPort = port
        do {
            for (index, eventLoop) in eventLoops.enumerated() {
                let socket = try await UDPSocket.bind(host: host, port: boundPort, options: options, on: eventLoop)
                if index == 0 { boundPort = socket.localAddress?.port ?? port }
                let context = EndpointGroupContext(loopIndex: index, credentials: credentials, quicLB: quicLB, budget: budget,
                                                   peers: peers)
                let endpoint = try await eventLoop.submit { () throws -> ServerEndpoint in
                    do {
                        let endpoint = try ServerEndpoint(socket: socket, configuration: shared, logger: logger,
                                                          makeApplication: makeApplication, onEstablished: onEstablished,
                                                          group: context)
                        socket.setDelegate(endpoint)
                        return endpoint
                    } catch {
                        socket.close()
                        throw error
                    }
                }.get()
                endpoints.append(endpoint)
            }
        } catch {
            for endpoint in endpoints { endpoint.eventLoop.execute { endpoint.close() } }
            throw error
        }
        peers.complete(endpoints)
        return endpoints
    }
}

extension ServerEndpoint {
    /// Datagrams this endpoint handed to another loop of its server (call on its loop).
    package var handedOffDatagrams: Int { group?.handedOff ?? 0 }
}

extension EndpointStatistics {
    /// The counters of several loops' endpoints added up.
    package static func summing(_ all: [EndpointStatistics]) -> EndpointStatistics {
        var total = EndpointStatistics()
        for item in all {
            total.versionNegotiationsSent += item.versionNegotiationsSent
            total.statelessResetsSent += item.statelessResetsSent
            total.retriesSent += item.retriesSent
            total.invalidTokens += item.invalidTokens
            total.addressTokensIssued += item.addressTokensIssued
            total.addressTokensAccepted += item.addressTokensAccepted
            total.refusedConnections += item.refusedConnections
            total.droppedDatagrams += item.droppedDatagrams
            total.connectionsAccepted += item.connectionsAccepted
            total.openConnections += item.openConnections
            total.routedConnectionIDs += item.routedConnectionIDs
        }
        return total
    }
}
