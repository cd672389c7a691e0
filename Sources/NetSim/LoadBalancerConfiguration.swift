import QUICLB

extension QUICLoadBalancer {
    /// How the balancer picks a backend for a client's datagram.
    public enum Routing: Sendable, Hashable {
        /// By the server ID in the destination connection ID (QUIC-LB); by a hash of the
        /// client's address and port only when the ID carries no known server ID.
        case connectionID
        /// By a hash of the client's address and port alone: what a plain L4 balancer (or
        /// `SO_REUSEPORT`) does; a client whose address changes may land elsewhere.
        case fourTuple
    }

    /// One backend instance: the server ID it encodes in its connection IDs and its address.
    public struct Backend: Sendable, Hashable {
        /// The server ID allocated to it (as in its `h3 serve --server-id`).
        public var serverID: [UInt8]
        /// Where its UDP socket listens.
        public var address: NetworkAddress

        /// Creates a backend.
        public init(serverID: [UInt8], address: NetworkAddress) {
            self.serverID = serverID
            self.address = address
        }
    }

    /// What the balancer listens on, its backends and how it routes.
    public struct Configuration: Sendable {
        /// Where clients send to. Port `0` binds any free port; read the actual one from
        /// ``QUICLoadBalancer/listenAddress``.
        public var listenAddress: NetworkAddress
        /// The backends, in order (the 4-tuple hash picks among them by index).
        public var backends: [Backend]
        /// The pool's QUIC-LB configurations (one per config ID in use). With
        /// ``Routing/fourTuple`` they only serve the misrouting statistics.
        public var quicLB: [QUICLBConfiguration]
        /// How datagrams are routed.
        public var routing: Routing = .connectionID
        /// A client address that sends nothing for this long loses its backend-facing socket.
        public var flowIdleTimeout: Duration = .seconds(60)

        /// Creates a configuration that routes by connection ID.
        public init(listen listenAddress: NetworkAddress, backends: [Backend], quicLB: [QUICLBConfiguration]) {
            self.listenAddress = listenAddress
            self.backends = backends
            self.quicLB = quicLB
        }

        func validate() throws {
            guard !backends.isEmpty else { throw NetSimError(.invalidConfiguration, "the balancer needs at least one backend") }
            var ids = Set<[UInt8]>()
            for backend in backends {
                guard backend.address.port != 0 else {
                    throw NetSimError(.invalidAddress, "the backend address \(backend.address) has no port")
                }
                guard ids.insert(backend.serverID).inserted else {
                    throw NetSimError(.invalidConfiguration, "two backends share a server ID")
                }
                guard backend.address.isIPv6 == listenAddress.isIPv6 else {
                    throw NetSimError(.invalidAddress, "backend \(backend.address) is not of the listen address's family")
                }
            }
            guard flowIdleTimeout > .zero else {
                throw NetSimError(.invalidConfiguration, "the flow idle timeout must be positive")
            }
        }
    }

    /// The balancer's counters.
    public struct Statistics: Sendable, Hashable, CustomStringConvertible {
        /// Datagrams received from clients.
        public var clientDatagrams = 0
        /// Client datagrams routed by the server ID in their connection ID.
        public var routedByConnectionID = 0
        /// Client datagrams routed by the 4-tuple hash (unroutable IDs, or ``Routing/fourTuple``).
        public var routedByFourTuple = 0
        /// Client datagrams with a routable ID whose server ID no backend has (then 4-tuple).
        public var unknownServerID = 0
        /// Client datagrams sent to each backend, by index.
        public var perBackend: [Int] = []
        /// Client datagrams sent to a backend that does not own their connection: one whose
        /// connection ID decodes to another backend's server ID, or that another backend was
        /// seen to choose (as the source ID of its long-header packets).
        public var misrouted = 0
        /// Of ``misrouted``: those caught by the learned source IDs alone (independent of the
        /// QUIC-LB decoding).
        public var misroutedByLearnedID = 0
        /// Datagrams relayed from backends to clients.
        public var backendDatagrams = 0
        /// Server-chosen connection IDs learned from backends' long headers.
        public var learnedConnectionIDs = 0
        /// Client addresses seen (each gets its own backend-facing socket).
        public var flows = 0
        /// Datagrams that could not be sent or whose socket could not be opened.
        public var dropped = 0

        public var description: String {
            "client datagrams \(clientDatagrams) (by connection ID \(routedByConnectionID), by 4-tuple \(routedByFourTuple), "
                + "unknown server ID \(unknownServerID)), per backend \(perBackend), misrouted \(misrouted) "
                + "(by learned IDs \(misroutedByLearnedID)), backend datagrams \(backendDatagrams), "
                + "learned IDs \(learnedConnectionIDs), flows \(flows), dropped \(dropped)"
        }
    }
}
