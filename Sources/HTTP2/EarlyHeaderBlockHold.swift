import NIOCore

/// Lets a large header block that a client sent before acknowledging our SETTINGS be judged by
/// our advertised SETTINGS_MAX_HEADER_LIST_SIZE rather than NIOHTTP2's 16 KiB default.
///
/// NIOHTTP2 (1.46) decodes header blocks with a 16 KiB limit until the client acknowledges our
/// SETTINGS, and a larger block is a connection error. A client sends its first request right
/// after its preface, before it has even read our SETTINGS, so a request with a 100 KB header
/// killed the whole connection where it deserved a 431 on its stream.
///
/// NIOHTTP2 applies that limit to the decoded list as well, so a 20 KB header that compresses
/// into one frame is as fatal as one spanning CONTINUATION frames.
///
/// Before the client's SETTINGS ACK has been seen, a HEADERS frame that does not end its header
/// block, or carries at least ``largeBlockThreshold`` bytes of it, is held here with what
/// follows it, until the client's SETTINGS ACK arrives; the ACK is then passed on first, so
/// NIOHTTP2 applies our settings, then the held frames in their order. Moving the ACK ahead only
/// applies our (larger) limits a little earlier. Held bytes are bounded: past `holdLimit`, or
/// when the connection ends, they go on as they came (and NIOHTTP2 decides as before).
///
/// Sits after ``HTTP2FrameAligner``, so its input is whole frames (after the client preface).
/// Loop-confined.
final class EarlyHeaderBlockHold: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private static let frameHeaderLength = 9
    private static let headersType: UInt8 = 0x1
    private static let settingsType: UInt8 = 0x4
    private static let endHeadersFlag: UInt8 = 0x4
    private static let ackFlag: UInt8 = 0x1
    /// A header block this large may decode to more than 16 KiB (Huffman codes expand at most
    /// 8/5 times); smaller ones go on at once, so an ordinary first request waits for nothing.
    static let largeBlockThreshold = 8 << 10

    private var preface = ClientPrefaceCountdown(remaining: HTTP2FrameAligner.clientPrefaceLength)
    /// Once the client's SETTINGS ACK went on (or holding gave up), bytes just pass.
    private var passThrough = false
    private var held: ByteBuffer?
    private let holdLimit: Int

    /// - Parameter holdLimit: the most bytes held while waiting for the ACK.
    init(holdLimit: Int) {
        self.holdLimit = holdLimit
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
        if var buffer = held {
            held = nil
            buffer.writeBuffer(&incoming)
            incoming = buffer
        }
        process(incoming, context: context)
    }

    /// Walks the frames: passes them on until a HEADERS frame without END_HEADERS, holds from
    /// there until the SETTINGS ACK.
    private func process(_ buffer: ByteBuffer, context: ChannelHandlerContext) {
        var buffer = buffer
        var offset = 0
        var holdingFrom: Int?
        let base = buffer.readerIndex
        while let header = Self.frameHeader(buffer, at: base + offset) {
            let frameEnd = offset + Self.frameHeaderLength + header.length
            guard frameEnd <= buffer.readableBytes else { break }
            if header.type == Self.settingsType, header.flags & Self.ackFlag != 0, header.stream == 0 {
                // The ACK goes on first, then everything before it that was held, then the rest.
                passThrough = true
                let ack = buffer.getSlice(at: base + offset, length: frameEnd - offset)
                let before = buffer.getSlice(at: base, length: offset)
                let after = buffer.getSlice(at: base + frameEnd, length: buffer.readableBytes - frameEnd)
                if let start = holdingFrom {
                    if start > 0, let passed = buffer.getSlice(at: base, length: start) {
                        context.fireChannelRead(wrapInboundOut(passed))
                    }
                    if let ack { context.fireChannelRead(wrapInboundOut(ack)) }
                    if let rest = buffer.getSlice(at: base + start, length: offset - start), rest.readableBytes > 0 {
                        context.fireChannelRead(wrapInboundOut(rest))
                    }
                } else {
                    if let before, before.readableBytes > 0 { context.fireChannelRead(wrapInboundOut(before)) }
                    if let ack { context.fireChannelRead(wrapInboundOut(ack)) }
                }
                if let after, after.readableBytes > 0 { context.fireChannelRead(wrapInboundOut(after)) }
                return
            }
            if holdingFrom == nil, header.type == Self.headersType,
               header.flags & Self.endHeadersFlag == 0 || header.length >= Self.largeBlockThreshold {
                holdingFrom = offset
            }
            offset = frameEnd
        }
        guard let start = holdingFrom else {
            context.fireChannelRead(wrapInboundOut(buffer))
            return
        }
        if start > 0, let passed = buffer.readSlice(length: start) {
            context.fireChannelRead(wrapInboundOut(passed))
        }
        if buffer.readableBytes > holdLimit {
            // No ACK within the bound: on as it came.
            passThrough = true
            context.fireChannelRead(wrapInboundOut(buffer))
            return
        }
        // A copy, so that the TLS handler's buffer is not kept.
        var copy = context.channel.allocator.buffer(capacity: buffer.readableBytes)
        copy.writeBuffer(&buffer)
        held = copy
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let rest = held {
            held = nil
            passThrough = true
            context.fireChannelRead(wrapInboundOut(rest))
        }
        context.fireChannelInactive()
    }

    /// The frame header at `index`: payload length, type, flags, stream ID (reserved bit cleared).
    private static func frameHeader(_ buffer: ByteBuffer, at index: Int)
        -> (length: Int, type: UInt8, flags: UInt8, stream: UInt32)? {
        guard buffer.writerIndex - index >= frameHeaderLength,
              let high = buffer.getInteger(at: index, as: UInt8.self),
              let low = buffer.getInteger(at: index + 1, as: UInt16.self),
              let type = buffer.getInteger(at: index + 3, as: UInt8.self),
              let flags = buffer.getInteger(at: index + 4, as: UInt8.self),
              let stream = buffer.getInteger(at: index + 5, as: UInt32.self) else { return nil }
        return (Int(high) << 16 | Int(low), type, flags, stream & 0x7FFF_FFFF)
    }
}

@available(*, unavailable)
extension EarlyHeaderBlockHold: Sendable {}
