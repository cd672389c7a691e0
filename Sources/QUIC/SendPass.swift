import NIOCore
import QUICSocket

/// Something that sends a batch of packets with one flush: the socket, or a fake in tests.
package protocol DatagramBatchSending: AnyObject {
    /// Calls `body` with an empty buffer and batch to fill, then sends the batch's messages.
    /// Returns the number of packets sent.
    func sendBatch(minimumCapacity: Int, _ body: (inout ByteBuffer, inout GSOBatch<SocketAddress>) -> Void) -> Int
}

extension UDPSocket: DatagramBatchSending {}

/// What writing one packet gave.
package enum PacketWriteResult: Equatable, Sendable {
    /// A packet of `length` bytes (0: nothing to send now), to be marked with the ECN codepoint.
    case packet(length: Int, ecn: UInt8)
    /// Writing failed; the connection closes (the writer keeps the reason).
    case failed
}

/// Where the packet just written goes.
package struct PacketDestination: Sendable {
    /// The peer's address.
    package var remote: SocketAddress
    /// The local address it leaves from, when the host has more than one socket.
    package var local: SocketAddress?
    /// Whether it leaves through the batch's socket; other packets are sent one by one by the host.
    package var throughPrimarySocket: Bool

    /// A destination.
    package init(remote: SocketAddress, local: SocketAddress? = nil, throughPrimarySocket: Bool = true) {
        self.remote = remote
        self.local = local
        self.throughPrimarySocket = throughPrimarySocket
    }
}

/// One write pass of a connection, without ngtcp2: takes packets from a writer into the
/// socket's batch (runs of equal-sized packets to one destination become GSO messages), at
/// most `packetLimit` of them, takes out those of another path, and stops at the first empty
/// packet or failure. ``ConnectionCore`` runs one per burst with ngtcp2 as the writer; tests
/// run it against a fake socket.
package struct SendPass {
    /// The largest packet.
    package let payloadSize: Int
    /// The most packets this pass sends (batched and diverted together).
    package let packetLimit: Int

    /// What a pass did.
    package struct Outcome: Equatable, Sendable {
        /// Packets that went in the batch.
        package var sent = 0
        /// Packets handed to the host for another socket.
        package var diverted = 0
        /// GSO messages the batch made.
        package var messages = 0
        /// The writer failed.
        package var failed = false

        /// An outcome (an empty one by default).
        package init(sent: Int = 0, diverted: Int = 0, messages: Int = 0, failed: Bool = false) {
            self.sent = sent
            self.diverted = diverted
            self.messages = messages
            self.failed = failed
        }
    }

    /// A pass of packets up to `payloadSize` bytes, at most `packetLimit` of them.
    package init(payloadSize: Int, packetLimit: Int) {
        self.payloadSize = payloadSize
        self.packetLimit = packetLimit
    }

    /// How many packets one pass sends: the send quantum (the bytes ngtcp2 lets go without
    /// spacing) in packets, at least one, at most `batchLimit`.
    package static func packetLimit(sendQuantum: Int, payloadSize: Int, batchLimit: Int) -> Int {
        min(max(sendQuantum / max(payloadSize, 1), 1), batchLimit)
    }

    /// Whether the next transmission time is to be set after the pass (pacing). Pacing starts
    /// once the handshake is done: before the first RTT sample ngtcp2 0.12 paces on its 333 ms
    /// default, which held the client's Finished (and first request) back ~20 ms on every new
    /// connection, though the handshake flights are already bounded by the congestion window
    /// and the amplification limit.
    package static func updatesPacing(after outcome: Outcome, established: Bool) -> Bool {
        !outcome.failed && outcome.sent + outcome.diverted > 0 && established
    }

    /// Runs the pass: `write` fills the given bytes with the next packet, `destination` says
    /// where the packet just written goes, `divert` sends a packet of another path.
    package func run(on socket: some DatagramBatchSending,
                     write: (UnsafeMutableRawBufferPointer) -> PacketWriteResult,
                     destination: () -> PacketDestination,
                     divert: (OutboundDatagram) -> Void) -> Outcome {
        var outcome = Outcome()
        let sent = socket.sendBatch(minimumCapacity: payloadSize * packetLimit) { buffer, batch in
            while batch.packetCount + outcome.diverted < packetLimit {
                var result = PacketWriteResult.packet(length: 0, ecn: 0)
                buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: payloadSize) { raw in
                    result = write(UnsafeMutableRawBufferPointer(rebasing: raw.prefix(payloadSize)))
                    if case .packet(let length, _) = result { return length }
                    return 0
                }
                guard case .packet(let length, let ecn) = result, length > 0 else {
                    outcome.failed = result == .failed
                    break
                }
                // Destination per packet: while a new path is validated, ngtcp2 writes
                // PATH_CHALLENGE to one address and other packets to another in the same burst.
                let target = destination()
                if !target.throughPrimarySocket {
                    let start = buffer.writerIndex - length
                    if let packet = buffer.getSlice(at: start, length: length) {
                        divert(OutboundDatagram(buffer: packet, remoteAddress: target.remote, ecn: UDPSocket.ecnState(ecn),
                                                localAddress: target.local))
                    }
                    buffer.moveWriterIndex(to: start)
                    outcome.diverted += 1
                    continue
                }
                batch.append(length: length, destination: target.remote, ecn: ecn)
            }
            outcome.messages = batch.messages.count
        }
        outcome.sent = sent
        return outcome
    }
}
