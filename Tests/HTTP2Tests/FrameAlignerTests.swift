import NIOCore
import NIOEmbedded
import Testing
@testable import HTTP2

@Suite("HTTP/2 frame aligner (whole frames for NIOHTTP2's decoder)")
struct FrameAlignerTests {
    /// A frame: 24-bit length, type, flags, stream ID, payload of `length` bytes.
    private func frame(length: Int, fill: UInt8) -> [UInt8] {
        [UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length & 0xFF), 0x0, 0x0, 0, 0, 0, 1]
            + [UInt8](repeating: fill, count: length)
    }

    /// Feeds `bytes` in chunks of the given sizes; returns what came out, chunk by chunk.
    private func run(_ bytes: [UInt8], chunks: [Int], preface: Bool) throws -> [[UInt8]] {
        let channel = EmbeddedChannel(handler: HTTP2FrameAligner(expectsClientPreface: preface))
        var offset = 0
        var sizes = chunks.makeIterator()
        while offset < bytes.count {
            let size = min(sizes.next() ?? 1000, bytes.count - offset)
            try channel.writeInbound(ByteBuffer(bytes: bytes[offset..<offset + size]))
            offset += size
        }
        var out: [[UInt8]] = []
        while let buffer = try channel.readInbound(as: ByteBuffer.self) { out.append(Array(buffer.readableBytesView)) }
        _ = try channel.finish(acceptAlreadyClosed: true)
        return out
    }

    @Test("random chunking: the bytes come out unchanged, each piece ending on a frame boundary")
    func randomChunking() throws {
        var generator = SystemRandomNumberGenerator()
        for round in 0..<50 {
            var stream: [UInt8] = []
            var boundaries: Set<Int> = [0]
            for index in 0..<40 {
                stream += frame(length: Int.random(in: 0...16_384, using: &generator), fill: UInt8(index))
                boundaries.insert(stream.count)
            }
            let chunks = (0..<400).map { _ in Int.random(in: 1...40_000, using: &generator) }
            let out = try run(stream, chunks: chunks, preface: false)
            #expect(out.flatMap { $0 } == stream, "round \(round)")
            var end = 0
            for piece in out {
                end += piece.count
                #expect(boundaries.contains(end), "round \(round): a piece ended at \(end), inside a frame")
            }
        }
    }

    @Test("a server passes the 24-byte client preface on first, then whole frames")
    func preface() throws {
        let prefaceBytes = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)
        #expect(prefaceBytes.count == HTTP2FrameAligner.clientPrefaceLength)
        let stream = prefaceBytes + frame(length: 6, fill: 1) + frame(length: 100, fill: 2)
        let out = try run(stream, chunks: [10, 20, 50, 60], preface: true)
        #expect(out.flatMap { $0 } == stream)
        #expect(out.first == Array(prefaceBytes.prefix(10)))
        #expect(out.map(\.count).reduce(0, +) == stream.count)
    }

    @Test("a frame longer than the advertised maximum is not waited for: it goes on at once for NIOHTTP2 to refuse")
    func oversizeFrame() throws {
        let header: [UInt8] = [0x01, 0x00, 0x00, 0x0, 0x0, 0, 0, 0, 1]  // 65,536 bytes announced
        let out = try run(header + [1, 2, 3], chunks: [12], preface: false)
        #expect(out == [header + [1, 2, 3]])
        #expect(HTTP2FrameAligner.wholeFramesLength(ByteBuffer(bytes: header), maxFrameSize: 16_384) == nil)
        #expect(HTTP2FrameAligner.wholeFramesLength(ByteBuffer(bytes: frame(length: 3, fill: 0)), maxFrameSize: 16_384) == 12)
        #expect(HTTP2FrameAligner.wholeFramesLength(ByteBuffer(bytes: [0, 0]), maxFrameSize: 16_384) == 0)
    }

    @Test("a partial frame left when the connection ends is still delivered, so NIOHTTP2 sees the truncation")
    func truncatedAtEnd() throws {
        let channel = EmbeddedChannel(handler: HTTP2FrameAligner(expectsClientPreface: false))
        let bytes = frame(length: 10, fill: 7) + Array(frame(length: 50, fill: 8).prefix(20))
        try channel.writeInbound(ByteBuffer(bytes: bytes))
        #expect(try channel.readInbound(as: ByteBuffer.self).map { Array($0.readableBytesView) } == Array(bytes.prefix(19)))
        #expect(try channel.readInbound(as: ByteBuffer.self) == nil)
        channel.pipeline.fireChannelInactive()
        #expect(try channel.readInbound(as: ByteBuffer.self).map { Array($0.readableBytesView) } == Array(bytes.suffix(20)))
    }
}
