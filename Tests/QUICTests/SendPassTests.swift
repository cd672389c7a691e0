import NIOCore
import QUIC
import QUICSocket
import Testing

/// The send path without ngtcp2 or a socket: a scripted packet writer and a fake socket that
/// records each batch it is asked to send.
@Suite("Send path against a fake socket")
struct SendPassTests {
    /// Records the messages and bytes of every batch instead of sending them.
    final class FakeSocket: DatagramBatchSending {
        let segmentLimit: Int
        private(set) var batches: [(bytes: ByteBuffer, messages: [GSOBatch<SocketAddress>.Message])] = []

        init(segmentLimit: Int = 64) {
            self.segmentLimit = segmentLimit
        }

        func sendBatch(minimumCapacity: Int, _ body: (inout ByteBuffer, inout GSOBatch<SocketAddress>) -> Void) -> Int {
            var buffer = ByteBufferAllocator().buffer(capacity: minimumCapacity)
            var batch = GSOBatch<SocketAddress>(segmentLimit: segmentLimit)
            body(&buffer, &batch)
            batches.append((buffer, batch.messages))
            return batch.packetCount
        }
    }

    /// One scripted packet: its size, first byte, destination and whether it takes another path.
    struct Packet {
        var length: Int
        var tag: UInt8
        var remote: SocketAddress
        var primary = true
    }

    static let peerA = try! SocketAddress(ipAddress: "127.0.0.1", port: 4433)
    static let peerB = try! SocketAddress(ipAddress: "127.0.0.2", port: 4433)

    /// Runs one pass over `script`; a `nil` entry is a write failure. `written`: how often the
    /// writer was asked for a packet.
    static func run(_ script: [Packet?], limit: Int, payload: Int = 1200, socket: FakeSocket = FakeSocket())
        -> (SendPass.Outcome, FakeSocket, diverted: [OutboundDatagram], written: Int) {
        var next = 0
        var calls = 0
        var current: Packet?
        var diverted: [OutboundDatagram] = []
        let pass = SendPass(payloadSize: payload, packetLimit: limit)
        let outcome = pass.run(on: socket, write: { raw in
            #expect(raw.count == payload)
            calls += 1
            guard next < script.count else { return .packet(length: 0, ecn: 0) }
            defer { next += 1 }
            guard let packet = script[next] else { return .failed }
            current = packet
            for index in 0..<packet.length { raw[index] = packet.tag }
            return .packet(length: packet.length, ecn: 2)
        }, destination: {
            PacketDestination(remote: current!.remote, throughPrimarySocket: current!.primary)
        }, divert: { diverted.append($0) })
        return (outcome, socket, diverted, calls)
    }

    @Test("Equal-sized packets to one peer become one GSO message; a shorter one ends it")
    func gsoRuns() throws {
        let script = [Packet(length: 1200, tag: 1, remote: Self.peerA), Packet(length: 1200, tag: 2, remote: Self.peerA),
                      Packet(length: 700, tag: 3, remote: Self.peerA), Packet(length: 1200, tag: 4, remote: Self.peerA)]
        let (outcome, socket, diverted, _) = Self.run(script, limit: 64)
        #expect(outcome == SendPass.Outcome(sent: 4, diverted: 0, messages: 2, failed: false))
        #expect(diverted.isEmpty)
        let batch = try #require(socket.batches.first)
        #expect(batch.messages.map(\.segments) == [3, 1])
        #expect(batch.messages.map(\.segmentSize) == [1200, 1200])
        #expect(batch.messages.map(\.length) == [3100, 1200])
        #expect(batch.messages.allSatisfy { $0.ecn == 2 && $0.destination == Self.peerA })
        // The bytes of each packet follow each other in the batch.
        #expect(batch.bytes.readableBytes == 4300)
        #expect(batch.bytes.getInteger(at: 2400, as: UInt8.self) == 3)
        #expect(batch.bytes.getInteger(at: 3100, as: UInt8.self) == 4)
    }

    @Test("A new destination starts a new message")
    func destinations() throws {
        let script = [Packet(length: 1200, tag: 1, remote: Self.peerA), Packet(length: 1200, tag: 2, remote: Self.peerB),
                      Packet(length: 1200, tag: 3, remote: Self.peerB)]
        let (outcome, socket, _, _) = Self.run(script, limit: 64)
        #expect(outcome.sent == 3 && outcome.messages == 2)
        #expect(try #require(socket.batches.first).messages.map(\.destination) == [Self.peerA, Self.peerB])
    }

    @Test("A pass stops at its packet limit (the send quantum) and at the first empty packet",
          arguments: [(1, 1), (3, 3), (64, 5)])
    func packetLimit(limit: Int, expected: Int) {
        let script = (0..<5).map { Packet(length: 1000, tag: UInt8($0), remote: Self.peerA) }
        let (outcome, _, _, written) = Self.run(script, limit: limit)
        #expect(outcome.sent == expected)
        // The writer is not asked for more than the pass can take (plus one empty answer).
        #expect(written == min(expected + (limit > 5 ? 1 : 0), 6))
    }

    @Test("Packets of another path leave through the host and count towards the limit")
    func diversion() throws {
        let script = [Packet(length: 1200, tag: 1, remote: Self.peerA),
                      Packet(length: 80, tag: 9, remote: Self.peerB, primary: false),
                      Packet(length: 1200, tag: 2, remote: Self.peerA),
                      Packet(length: 1200, tag: 3, remote: Self.peerA)]
        let (outcome, socket, diverted, _) = Self.run(script, limit: 3)
        #expect(outcome == SendPass.Outcome(sent: 2, diverted: 1, messages: 1, failed: false))
        #expect(diverted.count == 1)
        #expect(diverted.first?.remoteAddress == Self.peerB)
        #expect(diverted.first?.buffer.readableBytes == 80)
        #expect(diverted.first?.buffer.getInteger(at: diverted.first?.buffer.readerIndex ?? 0, as: UInt8.self) == 9)
        // The diverted packet's bytes were taken back out of the batch.
        let batch = try #require(socket.batches.first)
        #expect(batch.bytes.readableBytes == 2400)
        #expect(batch.messages.first?.segments == 2)
    }

    @Test("A write failure ends the pass; what was written before still leaves")
    func failure() {
        let script: [Packet?] = [Packet(length: 1200, tag: 1, remote: Self.peerA), nil,
                                 Packet(length: 1200, tag: 2, remote: Self.peerA)]
        let (outcome, socket, _, written) = Self.run(script, limit: 64)
        #expect(outcome.failed)
        #expect(outcome.sent == 1)
        #expect(written == 2)
        #expect(socket.batches.count == 1)
        #expect(!SendPass.updatesPacing(after: outcome, established: true))
    }

    @Test("The packet limit follows the send quantum, between one packet and the batch limit",
          arguments: [(0, 1), (1199, 1), (2400, 2), (12_000, 10), (1_000_000, 64)])
    func quantum(quantum: Int, expected: Int) {
        #expect(SendPass.packetLimit(sendQuantum: quantum, payloadSize: 1200, batchLimit: 64) == expected)
    }

    @Test("Pacing is updated after a pass that sent something, once established")
    func pacing() {
        var outcome = SendPass.Outcome()
        #expect(!SendPass.updatesPacing(after: outcome, established: true))
        outcome.diverted = 1
        #expect(SendPass.updatesPacing(after: outcome, established: true))
        #expect(!SendPass.updatesPacing(after: outcome, established: false))
        outcome = SendPass.Outcome(sent: 3)
        #expect(SendPass.updatesPacing(after: outcome, established: true))
    }
}
