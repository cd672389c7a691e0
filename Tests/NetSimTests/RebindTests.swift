import Glibc
import NetSim
import Testing

@Suite("NAT rebinding")
struct RebindTests {
    @Test("Rebinding to a new port: the server sees the new port and its replies still reach the client")
    func rebindPort() async throws {
        try await onThread {
            let server = try UDPTestSocket()
            let client = try UDPTestSocket()
            let relay = try startRelay(to: server)
            defer { relay.stop() }
            try client.send([1], to: relay.listenAddress)
            let before = try #require(server.receive())
            let new = try relay.rebind(.port)
            #expect(new.host == before.source.host)
            #expect(new.port != before.source.port)
            #expect(relay.outgoingAddress == new)
            try client.send([2], to: relay.listenAddress)
            let after = try #require(server.receive())
            #expect(after.source == new)
            try server.send([3], to: after.source)
            #expect(client.receive()?.bytes == [3])
            // The old mapping is gone.
            try server.send([4], to: before.source)
            #expect(client.receive(timeout: .milliseconds(200)) == nil)
            #expect(relay.statistics.rebinds == 1)
        }
    }

    @Test("Rebinding to a new address: the server sees 127.0.0.2")
    func rebindAddress() async throws {
        try await onThread {
            let server = try UDPTestSocket()
            let client = try UDPTestSocket()
            let relay = try startRelay(to: server)
            defer { relay.stop() }
            try client.send([1], to: relay.listenAddress)
            #expect(server.receive()?.source.host == "127.0.0.1")
            try relay.rebind(.address("127.0.0.2"))
            try client.send([2], to: relay.listenAddress)
            let after = try #require(server.receive())
            #expect(after.source.host == "127.0.0.2")
            try server.send([3], to: after.source)
            #expect(client.receive()?.bytes == [3])
        }
    }

    @Test("A scheduled rebinding after N datagrams moves datagram N+1 and later")
    func rebindAfterDatagrams() async throws {
        try await onThread {
            let server = try UDPTestSocket()
            let client = try UDPTestSocket()
            let relay = try startRelay(to: server) {
                $0.scheduledRebinds = [.init(.port, .afterDatagrams(3))]
            }
            defer { relay.stop() }
            var sources: [NetworkAddress] = []
            for i in 0..<6 {
                try client.send([UInt8(i)], to: relay.listenAddress)
                sources.append(try #require(server.receive()).source)
            }
            #expect(Set(sources[0..<3]).count == 1)
            #expect(Set(sources[3..<6]).count == 1)
            #expect(sources[0] != sources[3])
            relay.stop()
            #expect(relay.statistics.rebinds == 1)
        }
    }

    @Test("A scheduled rebinding after a time")
    func rebindAfterTime() async throws {
        try await onThread {
            let server = try UDPTestSocket()
            let client = try UDPTestSocket()
            let relay = try startRelay(to: server) {
                // 1 s of margin each side, so that a loaded machine does not move a send across it.
                $0.scheduledRebinds = [.init(.address("127.0.0.3"), .after(.milliseconds(1000)))]
            }
            defer { relay.stop() }
            try client.send([1], to: relay.listenAddress)
            #expect(server.receive()?.source.host == "127.0.0.1")
            usleep(2_000_000)
            try client.send([2], to: relay.listenAddress)
            #expect(server.receive()?.source.host == "127.0.0.3")
        }
    }

    @Test("A rebinding to an address of the other family is refused")
    func rebindWrongFamily() throws {
        let server = try UDPTestSocket()
        let relay = try startRelay(to: server)
        defer { relay.stop() }
        #expect(throws: NetSimError.self) { try relay.rebind(.address("::1")) }
        #expect(throws: NetSimError.self) { try relay.rebind(.address("not-an-address")) }
        #expect(relay.statistics.rebinds == 0)
    }
}
