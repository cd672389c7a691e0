
/// Outgoing bytes of one stream, kept at stable addresses from the moment they are queued
/// until the peer acknowledges them (ngtcp2 does not copy stream data: it keeps pointers for
/// retransmission until `acked_stream_data_offset`).
///
/// Offsets are stream offsets. `acked ≤ sent ≤ end`. Memory is released chunk by chunk as the
/// acknowledged offset passes each chunk's end. Not thread-safe.
package struct SendBuffer: ~Copyable {
    private struct Chunk {
        let memory: UnsafeMutableRawBufferPointer
        let start: UInt64
        var used: Int
        var end: UInt64 { start + UInt64(used) }
    }

    private var chunks: [Chunk] = []
    private var firstChunk = 0
    private let chunkSize: Int
    /// Everything below this offset has been acknowledged.
    package private(set) var ackedOffset: UInt64 = 0
    /// Everything below this offset has been handed to ngtcp2.
    package private(set) var sentOffset: UInt64 = 0
    /// One past the last queued byte.
    package private(set) var endOffset: UInt64 = 0

    package init(chunkSize: Int = 64 << 10) {
        self.chunkSize = chunkSize
    }

    deinit {
        for index in firstChunk..<chunks.count {
            chunks[index].memory.deallocate()
        }
    }

    /// Bytes queued or in flight that the peer has not yet acknowledged.
    package var unacknowledgedBytes: Int { Int(endOffset - ackedOffset) }
    /// Bytes queued but not yet handed to ngtcp2.
    package var unsentBytes: Int { Int(endOffset - sentOffset) }

    /// Copies `bytes` to the end of the buffer.
    package mutating func append(_ bytes: UnsafeRawBufferPointer) {
        var remaining = bytes[...]
        while !remaining.isEmpty {
            if chunks.count == firstChunk || chunks[chunks.count - 1].used == chunkSize {
                let memory = UnsafeMutableRawBufferPointer.allocate(byteCount: chunkSize, alignment: 16)
                chunks.append(Chunk(memory: memory, start: endOffset, used: 0))
            }
            let last = chunks.count - 1
            let room = chunkSize - chunks[last].used
            let count = min(room, remaining.count)
            let destination = chunks[last].memory.baseAddress! + chunks[last].used
            destination.copyMemory(from: UnsafeRawBufferPointer(rebasing: remaining).baseAddress!, byteCount: count)
            chunks[last].used += count
            endOffset += UInt64(count)
            remaining = remaining.dropFirst(count)
        }
    }

    /// Fills `vectors` with the unsent bytes, starting at ``sentOffset``. Returns how many
    /// vectors were filled.
    package func unsent(into vectors: UnsafeMutableBufferPointer<QUICIOVector>) -> Int {
        var filled = 0
        var offset = sentOffset
        var index = chunkIndex(containing: offset)
        while filled < vectors.count, offset < endOffset, let i = index, i < chunks.count {
            let chunk = chunks[i]
            let skip = Int(offset - chunk.start)
            let length = chunk.used - skip
            if length > 0 {
                let base = chunk.memory.baseAddress!.advanced(by: skip).assumingMemoryBound(to: UInt8.self)
                vectors[filled] = QUICIOVector(base: base, length: length)
                filled += 1
                offset += UInt64(length)
            }
            index = i + 1
        }
        return filled
    }

    /// Records that ngtcp2 took `count` more bytes.
    package mutating func markSent(_ count: Int) {
        sentOffset = min(endOffset, sentOffset + UInt64(count))
    }

    /// Records that the peer acknowledged everything below `offset`, and frees what it can.
    package mutating func acknowledge(upTo offset: UInt64) {
        guard offset > ackedOffset else { return }
        ackedOffset = min(offset, endOffset)
        while firstChunk < chunks.count {
            let chunk = chunks[firstChunk]
            // Only full chunks are freed; a partly filled chunk is the last one and still grows.
            guard chunk.end <= ackedOffset, chunk.used == chunkSize else { break }
            chunk.memory.deallocate()
            firstChunk += 1
        }
        if firstChunk > 32 && firstChunk * 2 > chunks.count {
            chunks.removeFirst(firstChunk)
            firstChunk = 0
        }
    }

    private func chunkIndex(containing offset: UInt64) -> Int? {
        guard firstChunk < chunks.count else { return nil }
        // Chunks are contiguous and equally sized except possibly the last.
        let first = chunks[firstChunk].start
        guard offset >= first else { return firstChunk }
        let index = firstChunk + Int((offset - first) / UInt64(chunkSize))
        return index < chunks.count ? index : nil
    }
}

/// The number of bytes that `vectors` point at.
package func totalLength(_ vectors: UnsafeBufferPointer<QUICIOVector>) -> Int {
    vectors.reduce(0) { $0 + $1.length }
}
