import NIOCore

/// The datagrams inside one buffer that the kernel merged with generic receive offload
/// (GRO, `UDP_GRO`): every `segmentSize` bytes are one datagram, the last may be shorter.
///
/// Iterating yields slices of the buffer (no copies). A missing, zero or negative segment size,
/// or one at least as large as the buffer, yields the whole buffer as one datagram; an empty
/// buffer yields nothing. Splitting is safe for any input: segments never reach past the buffer.
package struct GROSegments: Sequence, IteratorProtocol {
    private var remaining: ByteBuffer
    private let segmentSize: Int

    /// The datagrams in `buffer`, merged with `segmentSize` (`nil`: one datagram).
    package init(_ buffer: ByteBuffer, segmentSize: Int?) {
        self.remaining = buffer
        if let segmentSize, segmentSize > 0 {
            self.segmentSize = segmentSize
        } else {
            self.segmentSize = Int.max
        }
    }

    /// The next datagram, or `nil` after the last.
    package mutating func next() -> ByteBuffer? {
        let available = remaining.readableBytes
        guard available > 0 else { return nil }
        return remaining.readSlice(length: Swift.min(segmentSize, available))
    }
}
