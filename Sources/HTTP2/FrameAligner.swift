import NIOCore

/// Hands NIOHTTP2's frame decoder whole frames only.
///
/// NIOHTTP2 (1.46) keeps the bytes it has not decoded in a buffer that it never compacts while
/// a frame is incomplete, and DATA frames are slices of that buffer. When TLS records do not end
/// on frame boundaries (they rarely do), the buffer's write position only grows; whenever a slice
/// is still held, the next append copies the buffer into a new one of the same, ever larger,
/// capacity. A 100 MB HTTP/2 download then allocated a fresh 32 MiB buffer ~300 times and took
/// up to 2.7 million page faults and 6 s of CPU (h3-bench --http2: 15 to 787 MB/s from run to
/// run). Cut at frame boundaries, each append leaves the decoder's buffer empty, which resets
/// its indices, and its capacity stays at one chunk.
///
/// The partial frame at the end of a chunk waits here (a copy, so the TLS handler's buffer is
/// not held). A frame header announcing more than `maxFrameSize` bytes is not waited for: the
/// bytes go straight on, and NIOHTTP2 rejects the frame as the protocol says.
final class HTTP2FrameAligner: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    /// The 24-byte client connection preface the server reads before any frame.
    static let clientPrefaceLength = 24
    static let frameHeaderLength = 9

    private var preface: ClientPrefaceCountdown
    private let maxFrameSize: Int
    private var pending: ByteBuffer?
    /// Set once a frame too large to wait for was seen: everything passes through from then on.
    private var passThrough = false

    /// - Parameters:
    ///   - expectsClientPreface: true on a server, whose peer first sends the connection preface.
    ///   - maxFrameSize: the SETTINGS_MAX_FRAME_SIZE this side advertised (16,384 unless raised).
    init(expectsClientPreface: Bool, maxFrameSize: Int = 16_384) {
        self.preface = ClientPrefaceCountdown(remaining: expectsClientPreface ? Self.clientPrefaceLength : 0)
        self.maxFrameSize = maxFrameSize
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        if let prefaceBytes = preface.take(from: &incoming) {
            context.fireChannelRead(wrapInboundOut(prefaceBytes))
            if incoming.readableBytes == 0 { return }
        }
        if passThrough {
            context.fireChannelRead(wrapInboundOut(incoming))
            return
        }
        var buffer: ByteBuffer
        if var held = pending {
            pending = nil
            held.writeBuffer(&incoming)
            buffer = held
        } else {
            buffer = incoming
        }
        let whole = Self.wholeFramesLength(buffer, maxFrameSize: maxFrameSize)
        guard let whole else {
            // A frame larger than allowed: NIOHTTP2 must see it now to refuse it.
            passThrough = true
            context.fireChannelRead(wrapInboundOut(buffer))
            return
        }
        if whole > 0, let frames = buffer.readSlice(length: whole) {
            context.fireChannelRead(wrapInboundOut(frames))
        }
        if buffer.readableBytes > 0 {
            var rest = context.channel.allocator.buffer(capacity: max(buffer.readableBytes, Self.frameHeaderLength))
            rest.writeBuffer(&buffer)
            pending = rest
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        // A truncated last frame: NIOHTTP2 reports the connection's end as it would have.
        if let rest = pending {
            pending = nil
            context.fireChannelRead(wrapInboundOut(rest))
        }
        context.fireChannelInactive()
    }

    /// The length of the longest prefix of `buffer` made of whole frames; `nil` when a frame
    /// header in it announces more than `maxFrameSize` bytes.
    static func wholeFramesLength(_ buffer: ByteBuffer, maxFrameSize: Int) -> Int? {
        var offset = 0
        let readable = buffer.readableBytes
        let base = buffer.readerIndex
        while readable - offset >= frameHeaderLength {
            guard let high = buffer.getInteger(at: base + offset, as: UInt8.self),
                  let low = buffer.getInteger(at: base + offset + 1, as: UInt16.self) else { break }
            let length = Int(high) << 16 | Int(low)
            if length > maxFrameSize { return nil }
            guard readable - offset >= frameHeaderLength + length else { break }
            offset += frameHeaderLength + length
        }
        return offset
    }
}

/// The part of the client connection preface (RFC 9113, 3.4) still to come ahead of the first
/// frame, for the handlers that look at frames and pass the preface on untouched.
struct ClientPrefaceCountdown {
    private(set) var remaining: Int

    /// Takes the preface bytes still due off the front of `incoming` (`nil` once the whole
    /// preface has gone by).
    mutating func take(from incoming: inout ByteBuffer) -> ByteBuffer? {
        guard remaining > 0 else { return nil }
        let count = min(remaining, incoming.readableBytes)
        remaining -= count
        return incoming.readSlice(length: count)
    }
}
