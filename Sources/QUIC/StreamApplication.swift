internal import CNgtcp2
import NIOCore

/// The state of one stream for the async ``QUICStream`` API. Confined to the connection's
/// event loop (`@unchecked Sendable` so that ``QUICStream`` can carry the reference).
final class StreamState: @unchecked Sendable {
    let id: Int64

    // Receiving side.
    var inbound = CircularBuffer<ByteBuffer>()
    /// A hand-over of buffered bytes to the waiting reader is queued on the loop.
    var deliveryScheduled = false
    /// Bytes received and not yet taken by the reader (flow-control credit not yet returned).
    var bufferedBytes = 0
    var receivedFIN = false
    var finDelivered = false
    var readError: QUICError?
    var reader: CheckedContinuation<ByteBuffer?, any Error>?
    /// A cancellation that arrived before its read was registered.
    var readCancelled = false

    // Sending side.
    var send = SendBuffer()
    var finQueued = false
    var finSent = false
    var blocked = false
    /// The peer sent STOP_SENDING (its code is not known until the stream closes).
    var writeShutByPeer = false
    var queuedForSending = false
    var writeError: QUICError?
    /// Writers waiting for the unacknowledged total to drop under the limit.
    var writers: [CheckedContinuation<Void, any Error>] = []

    init(id: Int64) {
        self.id = id
    }

    var isBidirectional: Bool { id & 0x2 == 0 }
    var hasSomethingToSend: Bool {
        writeError == nil && !blocked && !writeShutByPeer && (send.unsentBytes > 0 || (finQueued && !finSent))
    }
}

/// The application protocol behind the public async stream API: buffers received data until
/// a reader takes it (and only then returns flow-control credit), and holds written data
/// until the peer acknowledges it (suspending writers above a limit).
///
/// Confined to the connection's event loop.
final class StreamApplication: QUICApplicationProtocol, @unchecked Sendable {
    /// Strong; the connection drops its application when it finishes, breaking the cycle.
    let core: ConnectionCore
    private var streams: [Int64: StreamState] = [:]
    /// Streams with data (or a FIN) waiting to go, in round-robin order.
    private var sendQueue = CircularBuffer<Int64>()
    private let incomingContinuation: AsyncStream<QUICStream>.Continuation
    let incomingStreams: AsyncStream<QUICStream>
    private var openWaiters: [(bidirectional: Bool, continuation: CheckedContinuation<Int64, any Error>)] = []
    private(set) var closeError: QUICError?
    private(set) var isClosed = false
    private let sendLimit: Int
    /// Set when a connection object exists to hand incoming streams to; streams the peer
    /// opened before that are handed over then.
    weak var connection: QUICConnection? {
        didSet {
            guard let connection else { return }
            let early = streamsBeforeConnection
            streamsBeforeConnection.removeAll()
            for id in early {
                if let state = streams[id] {
                    incomingContinuation.yield(QUICStream(state: state, application: self, connection: connection))
                }
            }
        }
    }
    private var streamsBeforeConnection: [Int64] = []

    init(core: ConnectionCore) {
        self.core = core
        self.sendLimit = core.configuration.streamSendBufferLimit
        (incomingStreams, incomingContinuation) = AsyncStream.makeStream(of: QUICStream.self)
    }

    // MARK: Operations (called on the event loop by QUICStream / QUICConnection)

    func state(for id: Int64) -> StreamState {
        if let state = streams[id] { return state }
        let state = StreamState(id: id)
        streams[id] = state
        return state
    }

    /// Opens a stream now, or waits until the peer's limit allows one.
    func openStream(bidirectional: Bool, continuation: CheckedContinuation<Int64, any Error>) {
        if isClosed {
            continuation.resume(throwing: closeError ?? .connectionClosed)
            return
        }
        do throws(QUICError) {
            if !openWaiters.contains(where: { $0.bidirectional == bidirectional }),
               let id = try core.openStream(bidirectional: bidirectional) {
                _ = state(for: id)
                continuation.resume(returning: id)
            } else {
                openWaiters.append((bidirectional, continuation))
            }
        } catch {
            continuation.resume(throwing: error)
        }
    }

    func read(_ stream: StreamState, continuation: CheckedContinuation<ByteBuffer?, any Error>) {
        if stream.readCancelled {
            stream.readCancelled = false
            continuation.resume(throwing: CancellationError())
        } else if let chunk = takeBuffered(stream) {
            continuation.resume(returning: chunk)
        } else if let error = stream.readError {
            continuation.resume(throwing: error)
        } else if stream.receivedFIN {
            stream.finDelivered = true
            continuation.resume(returning: nil)
        } else if isClosed {
            continuation.resume(throwing: closeError ?? .connectionClosed)
        } else if stream.reader != nil {
            continuation.resume(throwing: QUICError.invalidArgument("another read is already waiting on this stream"))
        } else {
            stream.reader = continuation
        }
    }

    func cancelRead(_ stream: StreamState) {
        if let reader = stream.reader {
            stream.reader = nil
            reader.resume(throwing: CancellationError())
        } else {
            // The cancellation overtook the read: the read, when it comes, fails at once.
            stream.readCancelled = true
        }
    }

    /// Queues bytes once the unacknowledged total is under the limit.
    func write(_ stream: StreamState, _ bytes: ByteBuffer, continuation: CheckedContinuation<Void, any Error>) {
        if let error = stream.writeError ?? (isClosed ? (closeError ?? .connectionClosed) : nil) {
            continuation.resume(throwing: error)
            return
        }
        if stream.finQueued {
            continuation.resume(throwing: QUICError.streamClosed)
            return
        }
        if stream.writeShutByPeer {
            // Fails with the peer's code once the stream closes (or without it after a grace period).
            stream.writers.append(continuation)
            return
        }
        bytes.withUnsafeReadableBytes { stream.send.append($0) }
        enqueueForSending(stream)
        core.scheduleWrite()
        if stream.send.unacknowledgedBytes < sendLimit {
            continuation.resume()
        } else {
            stream.writers.append(continuation)
        }
    }

    func finish(_ stream: StreamState) throws(QUICError) {
        if let error = stream.writeError { throw error }
        if isClosed { throw closeError ?? .connectionClosed }
        guard !stream.finQueued else { return }
        stream.finQueued = true
        enqueueForSending(stream)
        core.scheduleWrite()
    }

    func reset(_ stream: StreamState, code: UInt64) {
        guard stream.writeError == nil else { return }
        stream.writeError = .streamClosed
        failWriters(stream, .streamClosed)
        core.resetStream(streamID: stream.id, applicationError: code)
    }

    func stopSending(_ stream: StreamState, code: UInt64) {
        // Bytes nobody will read: give their credit back to the connection.
        releaseBufferedBytes(stream)
        guard stream.readError == nil, !stream.receivedFIN else { return }
        stream.readError = .streamClosed
        core.stopSending(streamID: stream.id, applicationError: code)
    }

    /// The stream state as a tuple the tests can inspect.
    func sendProgress(_ stream: StreamState) -> (acked: UInt64, sent: UInt64, queued: UInt64) {
        (stream.send.ackedOffset, stream.send.sentOffset, stream.send.endOffset)
    }

    /// Bytes nobody will read: their connection credit goes back and the buffer is dropped.
    private func releaseBufferedBytes(_ stream: StreamState) {
        core.extendConnectionWindow(by: stream.bufferedBytes)
        stream.inbound.removeAll()
        stream.bufferedBytes = 0
    }

    private func consumed(_ stream: StreamState, _ count: Int) {
        stream.bufferedBytes -= count
        core.extendReceiveWindow(streamID: stream.id, by: count)
    }

    private func enqueueForSending(_ stream: StreamState) {
        guard !stream.queuedForSending, stream.hasSomethingToSend else { return }
        stream.queuedForSending = true
        sendQueue.append(stream.id)
    }

    private func failWriters(_ stream: StreamState, _ error: QUICError) {
        let writers = stream.writers
        stream.writers.removeAll()
        writers.forEach { $0.resume(throwing: error) }
    }

    private func failReader(_ stream: StreamState, _ error: QUICError) {
        stream.reader?.resume(throwing: error)
        stream.reader = nil
    }

    // MARK: QUICApplicationProtocol

    func handshakeCompleted() throws(QUICError) {}

    func streamOpened(streamID: Int64) {
        let state = state(for: streamID)
        if let connection {
            incomingContinuation.yield(QUICStream(state: state, application: self, connection: connection))
        } else {
            streamsBeforeConnection.append(streamID)
        }
    }

    /// Everything buffered for a stream as one buffer (up to 1 MiB), its credit returned: one
    /// hand-over to the reader per batch instead of one thread wake-up per packet.
    private func takeBuffered(_ stream: StreamState) -> ByteBuffer? {
        guard var chunk = stream.inbound.popFirst() else { return nil }
        while chunk.readableBytes < 1 << 20, var next = stream.inbound.popFirst() {
            chunk.writeBuffer(&next)
        }
        consumed(stream, chunk.readableBytes)
        return chunk
    }

    /// Hands a waiting reader what arrived, once the current batch of packets was processed.
    private func scheduleDelivery(_ stream: StreamState) {
        guard !stream.deliveryScheduled else { return }
        stream.deliveryScheduled = true
        core.eventLoop.execute {
            stream.deliveryScheduled = false
            guard let reader = stream.reader, let chunk = self.takeBuffered(stream) else { return }
            stream.reader = nil
            reader.resume(returning: chunk)
        }
    }

    func received(streamID: Int64, data: UnsafeRawBufferPointer, fin: Bool) throws(QUICError) {
        let stream = state(for: streamID)
        if stream.readError != nil {
            // The reader is gone (STOP_SENDING): count the bytes as consumed.
            core.extendReceiveWindow(streamID: streamID, by: data.count)
            return
        }
        if !data.isEmpty {
            var buffer = ByteBufferAllocator().buffer(capacity: data.count)
            buffer.writeBytes(data)
            stream.bufferedBytes += data.count
            stream.inbound.append(buffer)
            if stream.reader != nil { scheduleDelivery(stream) }
        }
        if fin {
            stream.receivedFIN = true
            if let reader = stream.reader, stream.inbound.isEmpty {
                stream.reader = nil
                stream.finDelivered = true
                reader.resume(returning: nil)
            }
        }
    }

    func acknowledged(streamID: Int64, offset: UInt64, length: UInt64) throws(QUICError) {
        guard let stream = streams[streamID] else { return }
        stream.send.acknowledge(upTo: offset + length)
        if stream.send.unacknowledgedBytes < sendLimit, !stream.writers.isEmpty {
            let writers = stream.writers
            stream.writers.removeAll()
            writers.forEach { $0.resume() }
        }
    }

    func streamClosed(streamID: Int64, applicationErrorCode: UInt64?) {
        guard let stream = streams.removeValue(forKey: streamID) else { return }
        if let code = applicationErrorCode, code != 0 {
            if stream.readError == nil && !stream.receivedFIN { stream.readError = .streamReset(code: code) }
        }
        if stream.writeError == nil && !(stream.finQueued && stream.finSent) {
            // Our side was neither finished nor reset by us, yet the stream closed: the peer
            // stopped reading (ngtcp2 closes a stream only when both directions are done). The
            // close may come before any write saw the shut side, so `writeShutByPeer` is not
            // required. The code is the STOP_SENDING one unless the peer reset its side first.
            if let code = applicationErrorCode, !isClosed {
                stream.writeError = .streamStopSending(code: code)
            } else {
                stream.writeError = .streamClosed
            }
        }
        if let error = stream.readError { failReader(stream, error) }
        if let error = stream.writeError { failWriters(stream, error) }
    }

    func streamReset(streamID: Int64, applicationErrorCode: UInt64) {
        guard let stream = streams[streamID] else { return }
        stream.readError = .streamReset(code: applicationErrorCode)
        releaseBufferedBytes(stream)
        failReader(stream, .streamReset(code: applicationErrorCode))
    }

    func streamCreditAvailable(streamID: Int64) {
        guard let stream = streams[streamID], stream.blocked else { return }
        stream.blocked = false
        enqueueForSending(stream)
        core.scheduleWrite()
    }

    func streamLimitRaised(bidirectional: Bool) {
        var index = 0
        while index < openWaiters.count {
            guard openWaiters[index].bidirectional == bidirectional else { index += 1; continue }
            do throws(QUICError) {
                guard let id = try core.openStream(bidirectional: bidirectional) else { return }
                _ = state(for: id)
                openWaiters.remove(at: index).continuation.resume(returning: id)
            } catch {
                openWaiters.remove(at: index).continuation.resume(throwing: error)
            }
        }
    }

    func pendingStreamData(into vectors: UnsafeMutableBufferPointer<QUICIOVector>) -> PendingStreamData? {
        while let id = sendQueue.first {
            guard let stream = streams[id], stream.hasSomethingToSend else {
                sendQueue.removeFirst()
                streams[id]?.queuedForSending = false
                continue
            }
            let count = stream.send.unsent(into: vectors)
            let offered = totalLength(UnsafeBufferPointer(rebasing: vectors.prefix(count)))
            let allQueued = stream.send.sentOffset + UInt64(offered) == stream.send.endOffset
            return PendingStreamData(streamID: id, vectorCount: count, fin: stream.finQueued && allQueued)
        }
        return nil
    }

    func wrote(streamID: Int64, bytes: Int, fin: Bool) throws(QUICError) {
        guard let stream = streams[streamID] else { return }
        stream.send.markSent(bytes)
        if fin { stream.finSent = true }
        // Round robin: the stream goes to the back of the queue if it has more.
        if sendQueue.first == streamID {
            sendQueue.removeFirst()
            stream.queuedForSending = false
            enqueueForSending(stream)
        }
    }

    func streamBlocked(streamID: Int64) {
        guard let stream = streams[streamID] else { return }
        stream.blocked = true
    }

    func streamWriteClosed(streamID: Int64) {
        guard let stream = streams[streamID], stream.writeError == nil, !stream.writeShutByPeer else { return }
        // The peer stopped reading. Its code arrives with the stream's close; writers wait for
        // it a little (the peer usually finishes its side at once), then fail without it.
        stream.writeShutByPeer = true
        let grace = TimeAmount.seconds(2)
        core.eventLoop.scheduleTask(in: grace) { [weak stream] in
            guard let stream, stream.writeError == nil else { return }
            stream.writeError = .streamClosed
            let writers = stream.writers
            stream.writers.removeAll()
            writers.forEach { $0.resume(throwing: QUICError.streamClosed) }
        }
    }

    func earlyDataRejected() {
        // ngtcp2 forgot every stream opened so far (all of them were early): fail them so the
        // application sends again; stream IDs start over.
        for stream in streams.values {
            if stream.readError == nil { stream.readError = .earlyDataRejected }
            if stream.writeError == nil { stream.writeError = .earlyDataRejected }
            failReader(stream, .earlyDataRejected)
            failWriters(stream, .earlyDataRejected)
        }
        streams.removeAll()
        sendQueue.removeAll()
    }

    func connectionClosed(error: QUICError?) {
        guard !isClosed else { return }
        isClosed = true
        closeError = error
        let failure = error ?? .connectionClosed
        for stream in streams.values {
            if stream.readError == nil && !stream.receivedFIN { stream.readError = failure }
            if stream.writeError == nil { stream.writeError = failure }
            failReader(stream, failure)
            failWriters(stream, failure)
        }
        streams.removeAll()
        sendQueue.removeAll()
        let waiters = openWaiters
        openWaiters.removeAll()
        waiters.forEach { $0.continuation.resume(throwing: failure) }
        incomingContinuation.finish()
    }
}
