import Glibc
import NetSim
import Testing

/// Sends `count` numbered datagrams client→server in windows of `window`, waiting for what
/// comes through after each; returns the sequence numbers the server received, in order.
private func pass(_ count: Int, size: Int = 200, window: Int = 25, client: UDPTestSocket,
                  server: UDPTestSocket, relay: NetworkSimulator,
                  quiet: Duration = .milliseconds(150)) throws -> [ReceivedDatagram] {
    var received: [ReceivedDatagram] = []
    var start = 0
    while start < count {
        let end = min(start + window, count)
        for i in start..<end {
            try client.send(numberedDatagram(i, size: size), to: relay.listenAddress)
        }
        received += server.receiveAll(quiet: quiet)
        start = end
    }
    return received
}

@Suite("Impairments")
struct ImpairmentTests {
    @Test("A fixed delay holds each direction back at least as long as configured")
    func delay() async throws {
        try await onThread {
            let server = try UDPTestSocket()
            let client = try UDPTestSocket()
            let relay = try startRelay(to: server) {
                $0.toServer.delay = .milliseconds(80)
                $0.toClient.delay = .milliseconds(40)
            }
            defer { relay.stop() }
            let clock = ContinuousClock()
            for i in 0..<3 {
                let sent = clock.now
                try client.send([UInt8(i)], to: relay.listenAddress)
                let atServer = try #require(server.receive())
                let oneWay = clock.now - sent
                try server.send(atServer.bytes, to: atServer.source)
                _ = try #require(client.receive())
                let roundTrip = clock.now - sent
                #expect(oneWay >= .milliseconds(80))
                #expect(roundTrip >= .milliseconds(120))
                #expect(roundTrip < .seconds(2))
            }
        }
    }

    @Test("Jitter spreads the delay around its value, never below delay - jitter")
    func jitter() async throws {
        try await onThread {
            let server = try UDPTestSocket()
            let client = try UDPTestSocket()
            let relay = try startRelay(to: server) {
                $0.seed = 5
                $0.toServer.delay = .milliseconds(40)
                $0.toServer.jitter = .milliseconds(30)
            }
            defer { relay.stop() }
            let clock = ContinuousClock()
            var delays: [Duration] = []
            for i in 0..<20 {
                let sent = clock.now
                try client.send([UInt8(i)], to: relay.listenAddress)
                _ = try #require(server.receive())
                delays.append(clock.now - sent)
            }
            let shortest = try #require(delays.min())
            let longest = try #require(delays.max())
            #expect(shortest >= .milliseconds(10))
            #expect(longest - shortest >= .milliseconds(15), "delays \(delays)")
        }
    }

    @Test("Random loss is near its probability and reproducible from the seed")
    func lossIsSeeded() async throws {
        func run(seed: UInt64) async throws -> (received: [Int], statistics: NetworkSimulator.Statistics) {
            try await onThread {
                let server = try UDPTestSocket()
                let client = try UDPTestSocket()
                let relay = try startRelay(to: server) {
                    $0.seed = seed
                    $0.toServer.lossProbability = 0.3
                }
                let received = try pass(400, client: client, server: server, relay: relay)
                relay.stop()
                return (received.map { sequenceNumber($0.bytes) }, relay.statistics)
            }
        }
        let first = try await run(seed: 42)
        let again = try await run(seed: 42)
        let other = try await run(seed: 7)
        #expect((220...340).contains(first.received.count), "\(first.received.count) of 400 arrived")
        #expect(first.received == again.received)
        #expect(first.received != other.received)
        #expect(first.statistics.toServer.droppedByLoss == 400 - first.received.count)
        #expect(first.statistics.toServer.forwarded == first.received.count)
    }

    @Test("Drops exactly the datagrams at the chosen indices, per direction")
    func dropsByIndex() async throws {
        try await onThread {
            let server = try UDPTestSocket()
            let client = try UDPTestSocket()
            let relay = try startRelay(to: server) {
                $0.toServer.dropIndices = [2...7]
                $0.toClient.dropIndices = [1...1, 3...3]
            }
            defer { relay.stop() }
            // Index n is sequence n - 1.
            let atServer = try pass(12, client: client, server: server, relay: relay)
            #expect(atServer.map { sequenceNumber($0.bytes) } == [0, 7, 8, 9, 10, 11])
            let clientAddress = try #require(atServer.first?.source)
            for i in 0..<5 {
                try server.send(numberedDatagram(i, size: 100), to: clientAddress)
            }
            let atClient = client.receiveAll()
            #expect(atClient.map { sequenceNumber($0.bytes) } == [1, 3, 4])
            relay.stop()
            #expect(relay.statistics.toServer.droppedByIndex == 6)
            #expect(relay.statistics.toClient.droppedByIndex == 2)
        }
    }

    @Test("Corruption flips one byte of the chosen datagrams and counts them")
    func corruption() async throws {
        try await onThread {
            let server = try UDPTestSocket()
            let client = try UDPTestSocket()
            let relay = try startRelay(to: server) {
                $0.seed = 3
                $0.toServer.corruptionProbability = 0.5
            }
            defer { relay.stop() }
            let count = 200
            var changed = 0
            for i in 0..<count {
                try client.send(numberedDatagram(i, size: 300), to: relay.listenAddress)
                let datagram = try #require(server.receive())
                let original = numberedDatagram(i, size: 300)
                #expect(datagram.bytes.count == original.count)
                let differing = zip(datagram.bytes, original).filter { $0 != $1 }.count
                #expect(differing <= 1)
                changed += differing
            }
            relay.stop()
            #expect(relay.statistics.toServer.corrupted == changed)
            #expect((60...140).contains(changed), "\(changed) of \(count) corrupted")
        }
    }

    @Test("Duplication sends chosen datagrams twice and counts them")
    func duplication() async throws {
        try await onThread {
            let server = try UDPTestSocket()
            let client = try UDPTestSocket()
            let relay = try startRelay(to: server) {
                $0.toServer.duplicationProbability = 1
                $0.toClient.duplicationProbability = 0.5
                $0.toClient.delay = .milliseconds(5)
            }
            defer { relay.stop() }
            let atServer = try pass(20, client: client, server: server, relay: relay)
            #expect(atServer.map { sequenceNumber($0.bytes) } == (0..<20).flatMap { [$0, $0] })
            let clientAddress = try #require(atServer.first?.source)
            for i in 0..<100 {
                try server.send(numberedDatagram(i, size: 100), to: clientAddress)
            }
            let atClient = client.receiveAll()
            relay.stop()
            let statistics = relay.statistics
            #expect(statistics.toServer.duplicated == 20)
            #expect(statistics.toServer.forwarded == 40)
            #expect(atClient.count == 100 + statistics.toClient.duplicated)
            #expect((25...75).contains(statistics.toClient.duplicated))
            #expect(Set(atClient.map { sequenceNumber($0.bytes) }) == Set(0..<100))
        }
    }

    @Test("Reordering lets later datagrams overtake the held ones; none is lost")
    func reordering() async throws {
        try await onThread {
            let server = try UDPTestSocket()
            let client = try UDPTestSocket()
            let relay = try startRelay(to: server) {
                $0.seed = 11
                $0.toServer.reorderProbability = 0.3
                $0.toServer.reorderDelay = .milliseconds(30)
            }
            defer { relay.stop() }
            let order = try pass(60, window: 60, client: client, server: server, relay: relay)
                .map { sequenceNumber($0.bytes) }
            #expect(order.sorted() == Array(0..<60))
            #expect(order != Array(0..<60))
            relay.stop()
            #expect(relay.statistics.toServer.reordered > 5)
        }
    }

    @Test("A blackhole period drops everything in it, and only then")
    func blackhole() async throws {
        try await onThread {
            let server = try UDPTestSocket()
            let client = try UDPTestSocket()
            let relay = try startRelay(to: server) {
                // Wide margins, so that a loaded machine does not move a send across an edge.
                $0.toServer.blackholes = [Duration.milliseconds(700)..<Duration.milliseconds(3000)]
            }
            defer { relay.stop() }
            try client.send([1], to: relay.listenAddress)      // ~0 ms: before
            #expect(server.receive()?.bytes == [1])
            usleep(1_200_000)
            try client.send([2], to: relay.listenAddress)      // ~1200 ms: inside
            #expect(server.receive(timeout: .milliseconds(300)) == nil)
            usleep(1_900_000)
            try client.send([3], to: relay.listenAddress)      // >= 3400 ms: after
            #expect(server.receive()?.bytes == [3])
            relay.stop()
            #expect(relay.statistics.toServer.droppedByBlackhole == 1)
            #expect(relay.statistics.toServer.forwarded == 2)
        }
    }

    @Test("A rate limit paces datagrams and its bounded queue drops the overflow")
    func rateLimit() async throws {
        try await onThread {
            let server = try UDPTestSocket()
            let client = try UDPTestSocket()
            let relay = try startRelay(to: server) {
                $0.toServer.rateBytesPerSecond = 100_000    // 1000-byte datagram: 10 ms each
                $0.toServer.queueLimitBytes = 10_000        // ~10 datagrams queued
            }
            defer { relay.stop() }
            for i in 0..<100 {
                try client.send(numberedDatagram(i, size: 1000), to: relay.listenAddress)
            }
            let clock = ContinuousClock()
            var arrivals: [ContinuousClock.Instant] = []
            var received: [ReceivedDatagram] = []
            while let datagram = server.receive(timeout: .milliseconds(500)) {
                arrivals.append(clock.now)
                received.append(datagram)
            }
            relay.stop()
            let statistics = relay.statistics.toServer
            #expect(statistics.received == 100)
            #expect(statistics.forwarded == received.count)
            #expect(statistics.droppedByQueueOverflow == 100 - received.count)
            #expect((10...30).contains(received.count), "\(received.count) passed the queue")
            // What passed arrived in order, paced at about 10 ms each.
            #expect(received.map { sequenceNumber($0.bytes) } == received.map { sequenceNumber($0.bytes) }.sorted())
            if let first = arrivals.first, let last = arrivals.last {
                #expect(last - first >= .milliseconds(7 * (received.count - 1)))
            }
        }
    }
}
