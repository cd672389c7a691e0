import Glibc
import NetSim
import QUICLB
import Testing

/// The stateless QUIC-LB balancer with plain UDP sockets as backends and hand-made packets:
/// routing by server ID, the 4-tuple fallback, replies, and the misrouting counters.
@Suite struct LoadBalancerTests {
    static let key: [UInt8] = Array(0..<16)

    struct Pool {
        let configuration: QUICLBConfiguration
        let backends: [UDPTestSocket]
        let encoders: [QUICLBEncoder]
        let balancer: QUICLoadBalancer

        init(routing: QUICLoadBalancer.Routing) throws {
            let configuration = try QUICLBConfiguration(configID: 1, serverIDLength: 1, nonceLength: 8, key: LoadBalancerTests.key)
            self.configuration = configuration
            let backends = try (0..<3).map { _ in try UDPTestSocket() }
            self.backends = backends
            encoders = try (0..<3).map { index in
                try QUICLBEncoder(QUICLBServerConfiguration(configuration: configuration, serverID: [UInt8(index + 1)]))
            }
            var balancerConfiguration = QUICLoadBalancer.Configuration(
                listen: try NetworkAddress(host: "127.0.0.1", port: 0),
                backends: backends.enumerated().map { .init(serverID: [UInt8($0.offset + 1)], address: $0.element.address) },
                quicLB: [configuration])
            balancerConfiguration.routing = routing
            balancer = try QUICLoadBalancer.start(balancerConfiguration)
        }

        /// A short-header packet for backend `index`'s connection.
        func shortPacket(to index: Int) -> [UInt8] {
            [0x41] + encoders[index].makeConnectionID() + [UInt8](repeating: 0xaa, count: 30)
        }

        /// The backend that receives the next datagram, and the datagram.
        func receiver(timeout: Duration = .seconds(2)) -> (Int, ReceivedDatagram)? {
            let clock = ContinuousClock()
            let deadline = clock.now + timeout
            while clock.now < deadline {
                for (index, backend) in backends.enumerated() {
                    if let datagram = backend.receive(timeout: .milliseconds(20)) { return (index, datagram) }
                }
            }
            return nil
        }

        /// Waits (bounded) until the published statistics satisfy `condition`.
        func statistics(until condition: (QUICLoadBalancer.Statistics) -> Bool) async -> QUICLoadBalancer.Statistics {
            for _ in 0..<200 {
                let current = balancer.statistics
                if condition(current) { return current }
                try? await Task.sleep(for: .milliseconds(10))
            }
            return balancer.statistics
        }
    }

    /// A client socket whose address the 4-tuple hash sends to another backend than `index`.
    static func client(hashedAwayFrom index: Int, in pool: Pool) throws -> UDPTestSocket {
        for _ in 0..<64 {
            let socket = try UDPTestSocket()
            if pool.balancer.fourTupleBackend(for: socket.address) != index { return socket }
        }
        throw NetSimError(.socketFailure, "no client port hashed away from backend \(index)")
    }

    @Test func routesByServerIDWhateverTheClientAddress() async throws {
        let pool = try Pool(routing: .connectionID)
        defer { pool.balancer.stop() }
        // The same connection (backend 2) from three client addresses, as after migrations.
        for _ in 0..<3 {
            let client = try Self.client(hashedAwayFrom: 1, in: pool)
            let packet = pool.shortPacket(to: 1)
            try client.send(packet, to: pool.balancer.listenAddress)
            let received = pool.receiver()
            #expect(received?.0 == 1)
            #expect(received?.1.bytes == packet)
            // The backend's reply reaches that client from the balancer's address.
            if let source = received?.1.source {
                try pool.backends[1].send([0x40, 1, 2, 3], to: source)
                let reply = client.receive()
                #expect(reply?.bytes == [0x40, 1, 2, 3])
                #expect(reply?.source == pool.balancer.listenAddress)
            }
        }
        // A client's first Initial (a random DCID of no configuration) goes by the 4-tuple.
        let newcomer = try UDPTestSocket()
        let initial: [UInt8] = [0xc0, 0, 0, 0, 1, 8, 0xe1, 2, 3, 4, 5, 6, 7, 8, 0] + [UInt8](repeating: 0, count: 40)
        try newcomer.send(initial, to: pool.balancer.listenAddress)
        #expect(pool.receiver()?.0 == pool.balancer.fourTupleBackend(for: newcomer.address))
        // A routable ID of a server ID no backend has also falls back to the 4-tuple.
        let stranger = try QUICLBEncoder(QUICLBServerConfiguration(configuration: pool.configuration, serverID: [9]))
        try newcomer.send([0x40] + stranger.makeConnectionID() + [1, 2, 3], to: pool.balancer.listenAddress)
        #expect(pool.receiver()?.0 == pool.balancer.fourTupleBackend(for: newcomer.address))
        let statistics = await pool.statistics { $0.clientDatagrams >= 5 && $0.backendDatagrams >= 3 }
        #expect(statistics.routedByConnectionID == 3)
        #expect(statistics.routedByFourTuple == 2)
        #expect(statistics.unknownServerID == 1)
        #expect(statistics.misrouted == 0)
        #expect(statistics.perBackend.reduce(0, +) == 5)
        #expect(statistics.flows == 4)
    }

    @Test func fourTupleRoutingMisroutesAMovedClient() async throws {
        let pool = try Pool(routing: .fourTuple)
        defer { pool.balancer.stop() }
        // A client whose address hashes away from backend 0 sends backend 0's connection ID.
        let moved = try Self.client(hashedAwayFrom: 0, in: pool)
        try moved.send(pool.shortPacket(to: 0), to: pool.balancer.listenAddress)
        let received = pool.receiver()
        #expect(received?.0 == pool.balancer.fourTupleBackend(for: moved.address))
        #expect(received?.0 != 0)
        var statistics = await pool.statistics { $0.misrouted >= 1 }
        #expect(statistics.misrouted == 1)
        #expect(statistics.routedByFourTuple == 1 && statistics.routedByConnectionID == 0)

        // Ownership learned from a backend's long header (its source ID), without QUIC-LB
        // decoding: backend 0 answers a client, then a client hashed elsewhere uses that ID.
        let first = try UDPTestSocket()
        try first.send([0xc0, 0, 0, 0, 1, 4, 9, 9, 9, 9, 0] + [UInt8](repeating: 0, count: 20), to: pool.balancer.listenAddress)
        guard let (owner, initial) = pool.receiver() else {
            Issue.record("the Initial reached no backend")
            return
        }
        let serverChosen: [UInt8] = [0xee, 1, 2, 3, 4, 5, 6, 7, 8]  // not a QUIC-LB ID of this pool
        try pool.backends[owner].send([0xc0, 0, 0, 0, 1, 4, 7, 7, 7, 7, UInt8(serverChosen.count)] + serverChosen + [0, 0],
                                      to: initial.source)
        #expect(first.receive() != nil)
        let other = try Self.client(hashedAwayFrom: owner, in: pool)
        try other.send([0x40] + serverChosen + [1, 2, 3, 4], to: pool.balancer.listenAddress)
        #expect(pool.receiver()?.0 != owner)
        statistics = await pool.statistics { $0.misroutedByLearnedID >= 1 }
        #expect(statistics.learnedConnectionIDs == 1)
        #expect(statistics.misroutedByLearnedID == 1)
        #expect(statistics.misrouted == 2)
    }

    @Test func invalidConfigurationsAreRejected() throws {
        let configuration = try QUICLBConfiguration(configID: 0, serverIDLength: 1, nonceLength: 4)
        let listen = try NetworkAddress(host: "127.0.0.1", port: 0)
        let backend = try NetworkAddress(host: "127.0.0.1", port: 4433)
        #expect(throws: NetSimError.self) {
            try QUICLoadBalancer.start(.init(listen: listen, backends: [], quicLB: [configuration]))
        }
        #expect(throws: NetSimError.self) {
            try QUICLoadBalancer.start(.init(listen: listen, backends: [.init(serverID: [1], address: backend),
                                                                        .init(serverID: [1], address: backend)],
                                             quicLB: [configuration]))
        }
        #expect(throws: NetSimError.self) {
            try QUICLoadBalancer.start(.init(listen: listen, backends: [.init(serverID: [1], address: backend)], quicLB: []))
        }
        #expect(throws: NetSimError.self) {
            try QUICLoadBalancer.start(.init(listen: listen, backends: [.init(serverID: [1], address: backend.withPort(0))],
                                             quicLB: [configuration]))
        }
    }
}
