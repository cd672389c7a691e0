import Glibc
import NetSim
import Testing

/// Sends `sizes` client→server through `relay`, then echoes each back server→client, checking
/// every datagram byte for byte. Works in windows so no socket buffer overflows.
private func roundTrip(sizes: [Int], client: UDPTestSocket, server: UDPTestSocket,
                       relay: NetworkSimulator) throws -> (toServer: Int, toClient: Int) {
    var atServer = 0
    var atClient = 0
    var start = 0
    while start < sizes.count {
        let window = start..<min(start + 50, sizes.count)
        for i in window {
            try client.send(numberedDatagram(i, size: sizes[i]), to: relay.listenAddress)
        }
        for i in window {
            guard let datagram = server.receive() else {
                throw TestSocketError(description: "datagram \(i) did not reach the server")
            }
            #expect(datagram.bytes == numberedDatagram(i, size: sizes[i]))
            atServer += 1
            try server.send(datagram.bytes, to: datagram.source)
        }
        for i in window {
            guard let datagram = client.receive() else {
                throw TestSocketError(description: "reply \(i) did not reach the client")
            }
            #expect(datagram.bytes == numberedDatagram(i, size: sizes[i]))
            #expect(datagram.source == relay.listenAddress)
            atClient += 1
        }
        start = window.upperBound
    }
    return (atServer, atClient)
}

@Suite("Forwarding")
struct ForwardingTests {
    @Test("Forwards both ways byte for byte, in order, small to 65000-byte datagrams")
    func forwardsBothWaysByteExact() async throws {
        try await onThread {
            let server = try UDPTestSocket()
            let client = try UDPTestSocket()
            let relay = try startRelay(to: server)
            defer { relay.stop() }
            var sizes = (0..<600).map { 4 + ($0 * 37) % 1497 }
            sizes += [1500, 1500, 9000, 30000, 65000, 65000, 4]
            let (toServer, toClient) = try roundTrip(sizes: sizes, client: client, server: server, relay: relay)
            #expect(toServer == sizes.count)
            #expect(toClient == sizes.count)
            relay.stop()
            let statistics = relay.statistics
            let bytes = sizes.reduce(0, +)
            #expect(statistics.toServer.received == sizes.count)
            #expect(statistics.toServer.forwarded == sizes.count)
            #expect(statistics.toServer.forwardedBytes == bytes)
            #expect(statistics.toClient.forwarded == sizes.count)
            #expect(statistics.toClient.receivedBytes == bytes)
            #expect(statistics.toServer.dropped == 0 && statistics.toClient.dropped == 0)
        }
    }

    @Test("Forwards over IPv6 (::1)")
    func forwardsOverIPv6() async throws {
        try await onThread {
            let server = try UDPTestSocket(host: "::1")
            let client = try UDPTestSocket(host: "::1")
            let relay = try startRelay(to: server)
            defer { relay.stop() }
            #expect(relay.listenAddress.isIPv6)
            #expect(relay.outgoingAddress?.host == "::1")
            let sizes = (0..<200).map { 4 + ($0 * 53) % 1400 } + [20000, 65000]
            let (toServer, toClient) = try roundTrip(sizes: sizes, client: client, server: server, relay: relay)
            #expect(toServer == sizes.count)
            #expect(toClient == sizes.count)
        }
    }

    @Test("The server sees the relay's server-facing address; replies follow the newest client address")
    func followsClientMigration() async throws {
        try await onThread {
            let server = try UDPTestSocket()
            let first = try UDPTestSocket()
            let second = try UDPTestSocket()
            let relay = try startRelay(to: server)
            defer { relay.stop() }
            try first.send([1], to: relay.listenAddress)
            let fromFirst = try #require(server.receive())
            #expect(fromFirst.source == relay.outgoingAddress)
            try server.send([10], to: fromFirst.source)
            #expect(first.receive()?.bytes == [10])
            // The client moves to another port: replies go there.
            try second.send([2], to: relay.listenAddress)
            let fromSecond = try #require(server.receive())
            #expect(fromSecond.source == fromFirst.source)
            try server.send([20], to: fromSecond.source)
            #expect(second.receive()?.bytes == [20])
            #expect(first.receive(timeout: .milliseconds(200)) == nil)
        }
    }

    @Test("Datagrams from anyone but the server are not forwarded to the client")
    func dropsStrangers() async throws {
        try await onThread {
            let server = try UDPTestSocket()
            let client = try UDPTestSocket()
            let stranger = try UDPTestSocket()
            let relay = try startRelay(to: server)
            defer { relay.stop() }
            // Before any client: nowhere to send.
            let outgoing = try #require(relay.outgoingAddress)
            try server.send([0], to: outgoing)
            for _ in 0..<200 where relay.statistics.toClient.droppedUnroutable == 0 {
                usleep(5000)
            }
            #expect(relay.statistics.toClient.droppedUnroutable == 1)
            try client.send([1], to: relay.listenAddress)
            _ = try #require(server.receive())
            try stranger.send([2], to: outgoing)
            #expect(client.receive(timeout: .milliseconds(300)) == nil)
            relay.stop()
            #expect(relay.statistics.toClient.droppedUnroutable == 2)
        }
    }

    @Test("ECN marks are carried across both ways (IPv4 TOS and IPv6 traffic class)",
          arguments: ["127.0.0.1", "::1"])
    func preservesECN(host: String) async throws {
        try await onThread {
            let server = try UDPTestSocket(host: host)
            let client = try UDPTestSocket(host: host)
            let relay = try startRelay(to: server)
            defer { relay.stop() }
            for mark: Int32 in [2, 1, 3, 0] {   // ECT(0), ECT(1), CE, Not-ECT
                client.setTrafficClass(mark)
                try client.send([UInt8(mark)], to: relay.listenAddress)
                let atServer = try #require(server.receive())
                #expect(atServer.trafficClass == UInt8(mark), "client→server mark \(mark)")
                server.setTrafficClass(mark)
                try server.send([UInt8(mark)], to: atServer.source)
                let atClient = try #require(client.receive())
                #expect(atClient.trafficClass == UInt8(mark), "server→client mark \(mark)")
            }
        }
    }
}
