import HTTPAPI
import HTTPTypes
import NIOCore
import QUIC

/// Body I/O: called on the event loop by the readers and writers of ``RequestStream``s, and
/// by nghttp3 when it pulls body bytes to send or reports them acknowledged.
extension HTTP3Session {
    // MARK: - Reading

    func read(_ stream: RequestStream, continuation: CheckedContinuation<ByteBuffer?, any Error>) {
        if let chunk = takeBuffered(stream) {
            continuation.resume(returning: chunk)
        } else if let error = stream.readError {
            continuation.resume(throwing: error)
        } else if stream.receivedEnd {
            continuation.resume(returning: nil)
        } else if stream.reader != nil {
            continuation.resume(throwing: HTTPError.invalidRequest("the body is already being read"))
        } else {
            stream.reader = continuation
        }
    }

    func trailers(_ stream: RequestStream, continuation: CheckedContinuation<HTTPFields?, any Error>) {
        if stream.receivedEnd {
            continuation.resume(returning: stream.trailers)
        } else if let error = stream.readError {
            continuation.resume(throwing: error)
        } else {
            stream.trailerWaiters.append(continuation)
        }
    }

    /// The reader is gone: stop the peer sending and drop what is buffered.
    func cancelReading(_ stream: RequestStream, error: HTTPError, code: UInt64 = HTTP3ErrorCode.requestCancelled) {
        // Whatever is buffered will not be read: its connection credit goes back to the peer.
        releaseBufferedBody(stream)
        guard !stream.receivedEnd, stream.readError == nil else { return }
        stream.failReader(error)
        if !stream.closed {
            h3?.shutdownStreamRead(streamID: stream.id)
            core.stopSending(streamID: stream.id, applicationError: code)
        }
    }

    /// Gives the connection credit of unread body bytes back and drops them.
    func releaseBufferedBody(_ stream: RequestStream) {
        guard stream.bufferedBytes > 0 else { return }
        core.extendConnectionWindow(by: stream.bufferedBytes)
        stream.body.removeAll()
        stream.bufferedBytes = 0
    }

    /// Everything buffered for a stream, as one buffer (up to 1 MiB), with its flow-control
    /// credit returned. One hand-over per batch instead of one per packet: each hand-over
    /// wakes a task on another thread, which costs far more than copying the bytes.
    func takeBuffered(_ stream: RequestStream) -> ByteBuffer? {
        guard var chunk = stream.body.popFirst() else { return nil }
        while chunk.readableBytes < 1 << 20, var next = stream.body.popFirst() {
            chunk.writeBuffer(&next)
        }
        stream.bufferedBytes -= chunk.readableBytes
        core.extendReceiveWindow(streamID: stream.id, by: chunk.readableBytes)
        return chunk
    }

    /// Hands a waiting reader what arrived, after the current batch of packets was processed.
    func scheduleDelivery(_ stream: RequestStream) {
        guard !stream.deliveryScheduled else { return }
        stream.deliveryScheduled = true
        eventLoop.execute {
            stream.deliveryScheduled = false
            guard let reader = stream.reader, let chunk = self.takeBuffered(stream) else { return }
            stream.reader = nil
            reader.resume(returning: chunk)
        }
    }

    // MARK: - Writing

    func write(_ stream: RequestStream, _ chunk: ByteBuffer, continuation: CheckedContinuation<Void, any Error>) {
        if let error = stream.writeError ?? (isClosed ? httpError(closeError) : nil) {
            continuation.resume(throwing: error)
            return
        }
        guard !stream.sendFinished else { continuation.resume(throwing: HTTPError.responseFinished); return }
        if stream.writeShutByPeer {
            stream.writers.append(continuation)  // failed with the peer's code shortly
            return
        }
        chunk.withUnsafeReadableBytes { stream.send.append($0) }
        resume(stream)
        if stream.send.unacknowledgedBytes < settings.sendBufferLimit {
            continuation.resume()
        } else {
            stream.writers.append(continuation)
        }
    }

    func finish(_ stream: RequestStream, trailers: HTTPFields?) throws(HTTPError) {
        if let error = stream.writeError { throw error }
        if isClosed { throw httpError(closeError) }
        guard !stream.sendFinished else { return }
        stream.sendFinished = true
        stream.sendTrailers = trailers.flatMap { $0.isEmpty ? nil : $0 }
        resume(stream)
    }

    /// Ends only our sending side (RESET_STREAM): the response can still be read.
    func resetWriting(_ stream: RequestStream, code: UInt64) {
        stream.failWriters(.streamReset(code: code))
        guard !stream.closed else { return }
        core.resetStream(streamID: stream.id, applicationError: code)
    }

    /// Abandons the stream in both directions with an HTTP/3 error code.
    func reset(_ stream: RequestStream, code: UInt64) {
        stream.failWriters(.streamReset(code: code))
        releaseBufferedBody(stream)
        stream.failReader(.streamReset(code: code))
        guard !stream.closed else { return }
        h3?.shutdownStreamRead(streamID: stream.id)
        core.shutdownStream(streamID: stream.id, applicationError: code)
    }

    private func resume(_ stream: RequestStream) {
        guard let h3 else { return }
        if stream.deferred {
            stream.deferred = false
            h3.resumeStream(streamID: stream.id)
        }
        core.scheduleWrite()
    }

    // MARK: - nghttp3 pulling and acknowledging body bytes

    /// nghttp3 asks for body bytes of `streamID`: the vectors filled, or an nghttp3 error.
    func readData(streamID: Int64, into vectors: UnsafeMutableBufferPointer<QUICIOVector>,
                  flags: UnsafeMutablePointer<UInt32>) -> Int {
        guard let stream = streams[streamID] else { return NGHTTP3Connection.callbackFailure }
        let filled = stream.send.unsent(into: vectors)
        stream.send.markSent(totalLength(UnsafeBufferPointer(rebasing: vectors.prefix(filled))))
        if stream.sendFinished && stream.send.unsentBytes == 0 {
            flags.pointee |= NGHTTP3Connection.dataFlagEOF
            if let trailers = stream.sendTrailers, let h3 {
                stream.sendTrailers = nil
                flags.pointee |= NGHTTP3Connection.dataFlagNoEndStream
                let fields = trailers.map { ($0.name.canonicalName, $0.value) }
                if h3.submitTrailers(streamID: streamID, fields: fields) != 0 { return NGHTTP3Connection.callbackFailure }
            }
            return filled
        }
        if filled == 0 {
            stream.deferred = true
            return NGHTTP3Connection.wouldBlock
        }
        return filled
    }

    func ackedStreamData(streamID: Int64, length: UInt64) {
        guard let stream = streams[streamID] else { return }
        stream.send.acknowledge(upTo: stream.send.ackedOffset + length)
        if stream.send.unacknowledgedBytes < settings.sendBufferLimit, !stream.writers.isEmpty {
            let writers = stream.writers
            stream.writers.removeAll()
            writers.forEach { $0.resume() }
        }
    }
}
