extension NetworkSimulator {
    /// How the relay's server-facing socket changes on a rebinding, emulating a NAT that gives
    /// the client's flow a new mapping.
    public enum Rebind: Sendable, Hashable {
        /// A new source port on the same local address.
        case port
        /// A new local source address (such as `127.0.0.2`), with any free port.
        case address(String)
    }

    /// A rebinding the relay carries out by itself.
    public struct ScheduledRebind: Sendable, Hashable {
        /// When a scheduled rebinding happens.
        public enum Trigger: Sendable, Hashable {
            /// This long after the simulator started.
            case after(Duration)
            /// Once this many client→server datagrams have been received: datagram `count + 1`
            /// and later leave from the new socket.
            case afterDatagrams(Int)
        }

        /// When the rebinding happens.
        public var trigger: Trigger
        /// What changes.
        public var rebind: Rebind

        /// Creates a scheduled rebinding.
        public init(_ rebind: Rebind, _ trigger: Trigger) {
            self.rebind = rebind
            self.trigger = trigger
        }
    }

    /// What the relay listens on, where it forwards to, and what it does to the datagrams.
    public struct Configuration: Sendable {
        /// Where the client sends to. Port `0` binds any free port; read the actual one from
        /// ``NetworkSimulator/listenAddress``.
        public var listenAddress: NetworkAddress
        /// The server the relay forwards the client's datagrams to.
        public var serverAddress: NetworkAddress
        /// The local address of the server-facing socket; `nil` for the loopback address of the
        /// server's family (`127.0.0.1` or `::1`).
        public var outgoingHost: String? = nil
        /// The seed of the impairment decisions (each direction derives its own generator).
        public var seed: UInt64 = 0
        /// Impairments of client→server datagrams.
        public var toServer = Impairments()
        /// Impairments of server→client datagrams.
        public var toClient = Impairments()
        /// Rebindings the relay carries out by itself.
        public var scheduledRebinds: [ScheduledRebind] = []
        /// Where to write a pcap (LINKTYPE_RAW) of every forwarded datagram; `nil` for none.
        public var pcapPath: String? = nil
        /// How many datagrams each direction may hold back (delayed or queued) at once; beyond
        /// that datagrams are dropped as queue overflow. Bounds the relay's memory.
        public var maxHeldDatagrams: Int = 4096

        /// Creates a configuration that forwards without impairments.
        public init(listen listenAddress: NetworkAddress, server serverAddress: NetworkAddress) {
            self.listenAddress = listenAddress
            self.serverAddress = serverAddress
        }

        func validate() throws {
            try toServer.validate(direction: "client→server")
            try toClient.validate(direction: "server→client")
            guard (1...1_000_000).contains(maxHeldDatagrams) else {
                throw NetSimError(.invalidConfiguration, "maxHeldDatagrams must be within 1...1000000")
            }
            if serverAddress.port == 0 {
                throw NetSimError(.invalidAddress, "the server address \(serverAddress) has no port")
            }
            for scheduled in scheduledRebinds {
                switch scheduled.trigger {
                case .after(let delay) where delay < .zero:
                    throw NetSimError(.invalidConfiguration, "a rebinding is scheduled before the start")
                case .afterDatagrams(let count) where count < 0:
                    throw NetSimError(.invalidConfiguration, "a rebinding is scheduled after \(count) datagrams")
                default:
                    break
                }
                if case .address(let host) = scheduled.rebind {
                    let address = try NetworkAddress(host: host, port: 0)
                    guard address.isIPv6 == serverAddress.isIPv6 else {
                        throw NetSimError(.invalidAddress,
                                          "rebind address \(host) is not of the server's address family")
                    }
                }
            }
        }
    }
}
