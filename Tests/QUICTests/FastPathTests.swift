import Foundation
import NIOCore
import NIOPosix
import QUIC
import QUICSocket
import QUICTestSupport
import Testing

@Suite("GSO batching")
struct GSOBatchTests {
    typealias Message = GSOBatch<Int>.Message

    /// The messages a batch makes of `packets` (length, destination, ECN codepoint).
    static func messages(_ packets: [(Int, Int, UInt8)], segmentLimit: Int = 64) -> [Message] {
        var batch = GSOBatch<Int>(segmentLimit: segmentLimit)
        for (length, destination, ecn) in packets { batch.append(length: length, destination: destination, ecn: ecn) }
        return batch.messages
    }

    @Test("equal sizes to one destination coalesce; the last segment may be shorter")
    func equalSizesCoalesce() {
        let result = Self.messages(Array(repeating: (1200, 1, 2), count: 5) + [(700, 1, 2)])
        #expect(result == [Message(offset: 0, length: 6700, segmentSize: 1200, segments: 6, destination: 1, ecn: 2)])
        #expect(result[0].kernelSegmentSize == 1200)
    }

    @Test("a shorter packet ends its message: the next one starts a new message")
    func shorterSegmentEndsMessage() {
        // 1200, 1200, 500 | 500 (as short as the one before, but that message is closed) | 1200 (larger)
        let result = Self.messages([(1200, 1, 0), (1200, 1, 0), (500, 1, 0), (500, 1, 0), (1200, 1, 0)])
        #expect(result == [
            Message(offset: 0, length: 2900, segmentSize: 1200, segments: 3, destination: 1, ecn: 0),
            Message(offset: 2900, length: 500, segmentSize: 500, segments: 1, destination: 1, ecn: 0),
            Message(offset: 3400, length: 1200, segmentSize: 1200, segments: 1, destination: 1, ecn: 0),
        ])
    }

    @Test("a larger packet starts a new message")
    func largerPacketSplits() {
        let result = Self.messages([(800, 1, 0), (800, 1, 0), (1200, 1, 0), (1200, 1, 0)])
        #expect(result.map(\.segments) == [2, 2])
        #expect(result.map(\.segmentSize) == [800, 1200])
        #expect(result.map(\.offset) == [0, 1600])
    }

    @Test("a change of destination or of ECN codepoint splits; single packets need no segment size")
    func pathAndECNSplit() {
        let result = Self.messages([(1200, 1, 2), (1200, 1, 2), (1200, 2, 2), (1200, 2, 2), (1200, 2, 0), (1200, 1, 0)])
        #expect(result.map(\.destination) == [1, 2, 2, 1])
        #expect(result.map(\.ecn) == [2, 2, 0, 0])
        #expect(result.map(\.segments) == [2, 2, 1, 1])
        #expect(result.map(\.kernelSegmentSize) == [1200, 1200, nil, nil])
        #expect(result.map(\.offset) == [0, 2400, 4800, 6000])
    }

    @Test("at most 64 segments per message")
    func segmentCap() {
        let result = Self.messages(Array(repeating: (1000, 1, 0), count: 150))
        #expect(result.map(\.segments) == [64, 64, 22])
        #expect(result.map(\.offset) == [0, 64_000, 128_000])
        #expect(result.reduce(0) { $0 + $1.length } == 150_000)
    }

    @Test("a message never exceeds one UDP datagram's 65,507 bytes")
    func byteCap() {
        let result = Self.messages(Array(repeating: (1452, 1, 0), count: 64))
        #expect(result.map(\.segments) == [45, 19])
        #expect(result.allSatisfy { $0.length <= GSOBatch<Int>.maximumMessageLength })
    }

    @Test("segment limit 1 (GSO off): one message per packet; empty packets are ignored")
    func gsoOff() {
        var batch = GSOBatch<Int>(segmentLimit: 1)
        for _ in 0..<5 { batch.append(length: 1200, destination: 1, ecn: 0) }
        batch.append(length: 0, destination: 1, ecn: 0)
        #expect(batch.messages.count == 5)
        #expect(batch.messages.allSatisfy { $0.segments == 1 && $0.kernelSegmentSize == nil })
        #expect(batch.packetCount == 5 && batch.byteCount == 6000)
        batch.removeAll()
        #expect(batch.messages.isEmpty && batch.packetCount == 0 && batch.byteCount == 0)
        #expect(GSOBatch<Int>(segmentLimit: 1000).segmentLimit == 64)
        #expect(GSOBatch<Int>(segmentLimit: -3).segmentLimit == 1)
    }
}

@Suite("GRO splitting")
struct GROSegmentsTests {
    static func buffer(_ count: Int) -> ByteBuffer {
        ByteBuffer(bytes: (0..<count).map { UInt8(truncatingIfNeeded: $0) })
    }

    @Test("a merged buffer splits into segment-sized datagrams, the last shorter, with their bytes")
    func splits() {
        let merged = Self.buffer(1200 * 3 + 100)
        let parts = Array(GROSegments(merged, segmentSize: 1200))
        #expect(parts.map(\.readableBytes) == [1200, 1200, 1200, 100])
        var joined = ByteBuffer()
        for var part in parts { joined.writeBuffer(&part) }
        #expect(joined == merged)
    }

    @Test("an exact multiple has no short tail")
    func exactMultiple() {
        #expect(Array(GROSegments(Self.buffer(3000), segmentSize: 1000)).map(\.readableBytes) == [1000, 1000, 1000])
    }

    @Test("no, zero, negative or oversized segment sizes give the whole buffer; empty gives nothing")
    func malformedSizes() {
        for size in [nil, 0, -5, 5000, Int.max] as [Int?] {
            #expect(Array(GROSegments(Self.buffer(1500), segmentSize: size)).map(\.readableBytes) == [1500])
        }
        #expect(Array(GROSegments(ByteBuffer(), segmentSize: 1200)).isEmpty)
        #expect(Array(GROSegments(Self.buffer(7), segmentSize: 1)).count == 7)
    }
}

/// Carries a loop-confined value into closures that run on its event loop (tests only).
private struct OnLoop<Value>: @unchecked Sendable {
    let value: Value
}

/// Collects datagrams a ``UDPSocket`` receives, for tests.
private final class DatagramCollector: UDPSocketDelegate, @unchecked Sendable {
    let continuation: AsyncStream<ByteBuffer>.Continuation
    init(_ continuation: AsyncStream<ByteBuffer>.Continuation) { self.continuation = continuation }
    func socket(_ socket: UDPSocket, didReceive datagram: InboundDatagram) { continuation.yield(datagram.buffer) }
    func socket(_ socket: UDPSocket, didReceiveError error: any Error) {}
    func socketDidClose(_ socket: UDPSocket) { continuation.finish() }
}

@Suite("GSO and GRO on real sockets")
struct OffloadSocketTests {
    /// Sends `sizes` (packet i filled with byte i) from one socket to another in one batch; returns
    /// the sender's and the receiver's statistics and the datagrams as received.
    static func exchange(sizes: [Int], sender senderOptions: UDPSocketOptions, receiver receiverOptions: UDPSocketOptions)
        async throws -> (sent: UDPSocketStatistics, received: UDPSocketStatistics, datagrams: [ByteBuffer], gso: Bool) {
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let receiver = try await UDPSocket.bind(host: "127.0.0.1", port: 0, options: receiverOptions, on: loop)
        let (stream, continuation) = AsyncStream.makeStream(of: ByteBuffer.self)
        let collector = DatagramCollector(continuation)
        let receiverBox = OnLoop(value: receiver)
        try await loop.submit { receiverBox.value.setDelegate(collector) }.get()
        guard let address = receiver.localAddress else { throw QUICError.internalError("no local address") }
        let sender = try await UDPSocket.bind(host: "127.0.0.1", port: 0, options: senderOptions, on: loop)
        let senderBox = OnLoop(value: sender)
        let gso = try await loop.submit { () -> Bool in
            let socket = senderBox.value
            socket.sendBatch(minimumCapacity: sizes.reduce(0, +)) { buffer, batch in
                for (index, size) in sizes.enumerated() {
                    buffer.writeRepeatingByte(UInt8(truncatingIfNeeded: index), count: size)
                    batch.append(length: size, destination: address, ecn: 2)
                }
            }
            return socket.segmentationOffloadEnabled
        }.get()
        let datagrams = try await withTimeout(20) {
            var collected: [ByteBuffer] = []
            for await datagram in stream {
                collected.append(datagram)
                if collected.count == sizes.count { break }
            }
            return collected
        }
        let sent = try await loop.submit { senderBox.value.statistics }.get()
        let received = try await loop.submit { receiverBox.value.statistics }.get()
        sender.close()
        receiver.close()
        return (sent, received, datagrams, gso)
    }

    static let sizes = Array(repeating: 1200, count: 100) + [500]

    static func checkContent(_ datagrams: [ByteBuffer]) {
        #expect(datagrams.map(\.readableBytes) == sizes)
        for (index, datagram) in datagrams.enumerated() {
            let expected = UInt8(truncatingIfNeeded: index)
            #expect(datagram.readableBytesView.allSatisfy { $0 == expected }, "datagram \(index) has foreign bytes")
        }
    }

    @Test("with GSO, 101 packets leave in 2 messages and arrive as 101 datagrams")
    func gsoSegmentsPerMessage() async throws {
        let gsoDisabledByEnvironment = UDPSocketOptions.environmentDisables("SWIFT_H3_DISABLE_GSO")
        let result = try await Self.exchange(sizes: Self.sizes, sender: .init(), receiver: .init(receiveOffload: false))
        Self.checkContent(result.datagrams)
        #expect(result.sent.sentDatagrams == 101)
        #expect(result.received.receivedMessages == 101, "a socket without GRO reads one datagram at a time")
        if gsoDisabledByEnvironment {
            #expect(!result.gso)
            #expect(result.sent.sentMessages == 101)
        } else {
            #expect(result.gso, "this kernel supports UDP_SEGMENT")
            // 65,507 bytes per message at most: 54 segments of 1,200 bytes, then 46 and the short one.
            #expect(result.sent.sentMessages == 2)
        }
    }

    @Test("with GSO off, every packet is its own message")
    func gsoOff() async throws {
        let result = try await Self.exchange(sizes: Self.sizes, sender: .init(segmentationOffload: false),
                                             receiver: .init(receiveOffload: false))
        Self.checkContent(result.datagrams)
        #expect(!result.gso)
        #expect(result.sent.sentMessages == 101 && result.sent.sentDatagrams == 101)
    }

    @Test("with GRO, merged reads are split back into the datagrams that were sent")
    func groSplits() async throws {
        let groDisabledByEnvironment = UDPSocketOptions.environmentDisables("SWIFT_H3_DISABLE_GRO")
        let gsoDisabledByEnvironment = UDPSocketOptions.environmentDisables("SWIFT_H3_DISABLE_GSO")
        let result = try await Self.exchange(sizes: Self.sizes, sender: .init(), receiver: .init())
        Self.checkContent(result.datagrams)
        #expect(result.received.receivedDatagrams == 101)
        if !groDisabledByEnvironment && !gsoDisabledByEnvironment {
            // Loopback hands a GSO message to a GRO socket whole: far fewer reads than datagrams.
            #expect(result.received.receivedMessages < 101, "reads: \(result.received.receivedMessages)")
        } else {
            #expect(result.received.receivedMessages == 101)
        }
    }
}

@Suite("Fast path end to end")
struct FastPathEndToEndTests {
    /// Echoes `size` bytes over one connection between a server and a client using `options`;
    /// returns the server socket's statistics and offload state.
    static func echo(options: UDPSocketOptions, size: Int = 8 << 20)
        async throws -> (statistics: UDPSocketStatistics, segmentationOffload: Bool, receiveOffload: Bool) {
        let listener = try await QUICListener.bind(host: "127.0.0.1", port: 0, configuration: serverConfiguration(),
                                                   socketOptions: options)
        let serving = Task { for await connection in listener.connections { await EchoServer.serve(connection) } }
        defer { serving.cancel() }
        let port = listener.localAddress.port ?? 0
        try await withTimeout(90) {
            let connection = try await QUICClient.connect(host: "127.0.0.1", port: port,
                                                          configuration: clientConfiguration(), socketOptions: options)
            let stream = try await connection.openStream()
            let echo = try await echoPattern(on: stream, total: size, seed: 11, chunk: 256 << 10)
            #expect(echo.received == size)
            #expect(echo.sentHash == echo.receivedHash, "echoed bytes differ")
            await connection.close()
        }
        let result = try await listener.socketStatistics()
        await listener.close()
        return result
    }

    static var gsoByEnvironment: Bool { !UDPSocketOptions.environmentDisables("SWIFT_H3_DISABLE_GSO") }
    static var groByEnvironment: Bool { !UDPSocketOptions.environmentDisables("SWIFT_H3_DISABLE_GRO") }

    @Test("GSO and GRO on: byte-exact, more than one segment per sendmsg on average, merged reads")
    func bothOn() async throws {
        let result = try await Self.echo(options: .init())
        let stats = result.statistics
        #expect(result.segmentationOffload == Self.gsoByEnvironment)
        #expect(result.receiveOffload == Self.groByEnvironment)
        if Self.gsoByEnvironment {
            #expect(stats.sentDatagrams > stats.sentMessages * 2,
                    "segments per message: \(Double(stats.sentDatagrams) / Double(max(stats.sentMessages, 1)))")
        } else {
            #expect(stats.sentDatagrams == stats.sentMessages)
        }
        if Self.groByEnvironment && Self.gsoByEnvironment {
            #expect(stats.receivedDatagrams > stats.receivedMessages, "reads: \(stats.receivedMessages)")
        }
    }

    @Test("GSO off: byte-exact, exactly one datagram per message")
    func gsoOff() async throws {
        let result = try await Self.echo(options: .init(segmentationOffload: false))
        #expect(!result.segmentationOffload)
        #expect(result.statistics.sentDatagrams == result.statistics.sentMessages)
        #expect(result.statistics.sentMessages > 1000)
    }

    @Test("GRO off: byte-exact, one datagram per read")
    func groOff() async throws {
        let result = try await Self.echo(options: .init(receiveOffload: false))
        #expect(!result.receiveOffload)
        #expect(result.statistics.receivedDatagrams == result.statistics.receivedMessages)
    }
}
