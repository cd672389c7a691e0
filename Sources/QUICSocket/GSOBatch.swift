/// Groups the packets of one write pass into UDP messages for generic segmentation offload
/// (GSO, `UDP_SEGMENT`): the kernel splits each message back into its segments.
///
/// Packets are laid out back to back in one buffer; the batch records, for each message, where
/// it starts, how long it is and its segment size. A packet joins the current message when it
/// goes to the same destination with the same ECN codepoint, is no longer than the message's
/// segment size, and the message is still open: a packet shorter than the segment size is the
/// last of its message (the kernel sends only the last segment short). The segment count and
/// the message length are capped (64 segments, and what fits in one UDP datagram).
///
/// A pure value: no I/O, so it is tested by feeding packet sizes and reading the messages.
package struct GSOBatch<Destination: Equatable> {
    /// One message for `sendmsg`: `segments` packets, all `segmentSize` long except possibly the last.
    package struct Message: Equatable {
        /// Where the message starts in the batch's bytes.
        package var offset: Int
        /// The message's length in bytes (the sum of its segments).
        package var length: Int
        /// The length of every segment but the last, which may be shorter.
        package var segmentSize: Int
        /// How many packets the message carries.
        package var segments: Int
        /// Where the message goes.
        package var destination: Destination
        /// The ECN codepoint of every packet in the message (0 = not ECN-capable).
        package var ecn: UInt8

        /// A message description (the batch makes these; tests compare against them).
        @inlinable
        package init(offset: Int, length: Int, segmentSize: Int, segments: Int, destination: Destination, ecn: UInt8) {
            self.offset = offset
            self.length = length
            self.segmentSize = segmentSize
            self.segments = segments
            self.destination = destination
            self.ecn = ecn
        }

        /// The segment size to hand the kernel: `nil` for a single packet (no GSO needed).
        @inlinable package var kernelSegmentSize: Int? { segments > 1 ? segmentSize : nil }
    }

    /// The kernel's limit on segments per message (`UDP_MAX_SEGMENTS`).
    package static var maximumSegmentLimit: Int { 64 }
    /// The most UDP payload bytes one message can carry (65,535 minus the IPv4 and UDP headers).
    @inlinable package static var maximumMessageLength: Int { 65_507 }

    /// The most segments a message gets here (1: GSO off, every packet its own message).
    package let segmentLimit: Int
    /// The messages so far, in order.
    @usableFromInline package internal(set) var messages: [Message] = []
    /// The total number of bytes (packets) in the batch.
    @usableFromInline package internal(set) var byteCount = 0
    /// The number of packets in the batch.
    @usableFromInline package internal(set) var packetCount = 0
    /// Whether the last message ended with a short segment and takes no more packets.
    @usableFromInline var lastMessageClosed = false

    /// A batch whose messages carry at most `segmentLimit` packets (clamped to 1...64).
    package init(segmentLimit: Int = GSOBatch.maximumSegmentLimit) {
        self.segmentLimit = min(max(segmentLimit, 1), Self.maximumSegmentLimit)
        messages.reserveCapacity(4)
    }

    /// Adds the next packet (it follows the previous one in the batch's bytes). Empty packets are ignored.
    @inlinable  // specialized where it is used: this runs once per packet
    package mutating func append(length: Int, destination: Destination, ecn: UInt8) {
        guard length > 0 else { return }
        defer {
            byteCount += length
            packetCount += 1
        }
        if let index = messages.indices.last, !lastMessageClosed {
            var message = messages[index]
            if message.segments < segmentLimit, message.destination == destination, message.ecn == ecn,
               length <= message.segmentSize, message.length + length <= Self.maximumMessageLength {
                message.segments += 1
                message.length += length
                messages[index] = message
                lastMessageClosed = length < message.segmentSize
                return
            }
        }
        messages.append(Message(offset: byteCount, length: length, segmentSize: length, segments: 1,
                                destination: destination, ecn: ecn))
        lastMessageClosed = false
    }

    /// Empties the batch, keeping its storage for the next pass.
    @inlinable
    package mutating func removeAll() {
        messages.removeAll(keepingCapacity: true)
        byteCount = 0
        packetCount = 0
        lastMessageClosed = false
    }
}
