import HTTPAPI
import HTTPTypes
import Logging
import NIOCore
import QUIC

/// What nghttp3 reports from inside its callbacks (through ``NGHTTP3Connection``): each is fed
/// to the state machine and its answer carried out. No user code runs here.
extension HTTP3Session {
    func streamClosed(streamID: Int64, code: UInt64) {
        guard let stream = streams.removeValue(forKey: streamID) else { return }
        stream.closed = true
        let error: HTTPError = code == HTTP3ErrorCode.noError ? .connectionClosed("stream closed")
                                                              : (code == HTTP3ErrorCode.requestRejected ? .requestRejected
                                                                                                        : .streamReset(code: code))
        if !stream.receivedEnd { stream.failReader(error) }
        if !(stream.sendFinished && stream.send.unsentBytes == 0) || !stream.writers.isEmpty {
            stream.failWriters(error)
        }
        if state.requestStreamClosed(streamID) { closeConnection(code: HTTP3ErrorCode.noError) }
    }

    func receivedData(streamID: Int64, data: UnsafePointer<UInt8>?, length: Int) {
        guard let stream = streams[streamID] else {
            core.extendReceiveWindow(streamID: streamID, by: length)
            return
        }
        if stream.readError != nil || stream.readerGone {
            core.extendReceiveWindow(streamID: streamID, by: length)
            return
        }
        var buffer = ByteBufferAllocator().buffer(capacity: length)
        buffer.writeBytes(UnsafeRawBufferPointer(start: data, count: length))
        stream.bufferedBytes += length
        stream.body.append(buffer)
        if stream.reader != nil { scheduleDelivery(stream) }
    }

    func beginHeaders(streamID: Int64, trailers: Bool) {
        if state.beginHeaders(streamID: streamID, trailers: trailers) || streams[streamID] == nil {
            // Server: a new request stream.
            streams[streamID] = RequestStream(id: streamID)
        }
    }

    func receivedHeader(streamID: Int64, name: String, value: String) {
        state.receivedHeader(streamID: streamID, name: name, value: value)
    }

    func endHeaders(streamID: Int64, fin: Bool) {
        guard let stream = streams[streamID] else { return }
        switch state.endHeaders(streamID: streamID) {
        case .none, .informational:
            break
        case .trailers(let trailers):
            stream.trailers = trailers
        case .request(let request, let fields, let early):
            stream.head = fields
            stream.arrivedEarly = early
            delegate?.session(self, didReceiveRequest: stream, head: request)
        case .malformedRequest(let error):
            logger.debug("malformed request", metadata: ["stream": "\(streamID)", "error": "\(error)"])
            reset(stream, code: HTTP3ErrorCode.messageError)
        case .respond431(let limit):
            // 431 and stop reading (RFC 9114, 4.2.2).
            stream.readError = .headerSectionTooLarge(limit: limit)
            h3?.shutdownStreamRead(streamID: stream.id)
            core.stopSending(streamID: stream.id, applicationError: HTTP3ErrorCode.noError)
            var head = HTTPResponse(status: .init(code: 431, reasonPhrase: "Request Header Fields Too Large"))
            head.headerFields[.contentLength] = "0"
            try? submitResponse(stream, head: head)
            try? finish(stream, trailers: nil)
        case .resetTooLarge(let limit):
            reset(stream, code: HTTP3ErrorCode.excessiveLoad)
            stream.failReader(.headerSectionTooLarge(limit: limit))
        case .responseHead(let fields):
            stream.head = fields
            if let waiter = stream.headWaiter {
                stream.headWaiter = nil
                waiter.resume()
            }
        }
    }

    func endStream(streamID: Int64) {
        guard let stream = streams[streamID] else { return }
        stream.receivedEnd = true
        if let reader = stream.reader, stream.body.isEmpty {
            stream.reader = nil
            reader.resume(returning: nil)
        }
        if stream.head == nil, let waiter = stream.headWaiter {
            stream.headWaiter = nil
            waiter.resume(throwing: HTTPError.protocolError("the stream ended without a response head"))
        }
        let waiters = stream.trailerWaiters
        stream.trailerWaiters.removeAll()
        waiters.forEach { $0.resume(returning: stream.trailers) }
    }

    func goawayReceived(id: Int64) {
        guard let actions = state.goawayReceived(id: id) else { return }
        onDrain?()
        // Requests on streams at or above the GOAWAY ID were not processed: the caller may retry.
        for streamID in actions.rejectedStreams {
            guard let stream = streams[streamID] else { continue }
            stream.failReader(.requestRejected)
            stream.failWriters(.requestRejected)
        }
        failPendingRequests(actions.pendingToFail, .requestRejected)
        if actions.closeConnection { closeConnection(code: HTTP3ErrorCode.noError) }
    }
}

// MARK: - QUICApplicationProtocol

extension HTTP3Session {
    func handshakeCompleted() throws(QUICError) {
        if !state.controlStreamsBound { try bindControlStreams() }
        state.handshakeCompleted()
        if role == .client { submitPendingRequests() }
    }

    func earlyDataRejected() {
        // ngtcp2 dropped every stream opened in 0-RTT, control streams included, and will hand
        // out the same stream IDs again: start HTTP/3 over with a fresh nghttp3 connection and
        // tell each request sent early to go again (nothing of it reached the server).
        guard let rejectedIDs = state.earlyDataRejected() else { return }
        let rejected = rejectedIDs.compactMap { streams[$0] }
        streams.removeAll()
        h3 = nil
        do throws(QUICError) {
            h3 = try NGHTTP3Connection(role: role, settings: settings, session: self)
        } catch {
            logger.error("cannot restart HTTP/3 after refused early data", metadata: ["error": "\(error)"])
            closeConnection(code: HTTP3ErrorCode.internalError)
        }
        for stream in rejected {
            stream.closed = true
            stream.earlyRejected = true
            stream.body.removeAll()
            stream.bufferedBytes = 0
            stream.failReader(.requestRejected)
            stream.failWriters(.requestRejected)
        }
    }

    func receivedEarlyData(streamID: Int64) {
        state.receivedEarlyData(streamID: streamID)
    }

    func streamOpened(streamID: Int64) {}

    func received(streamID: Int64, data: UnsafeRawBufferPointer, fin: Bool) throws(QUICError) {
        guard let h3 else { return }
        state.receivedStreamBytes(streamID: streamID, firstByte: data.first, count: data.count)
        let consumed = h3.readStream(streamID: streamID, data: data, fin: fin)
        if consumed < 0 {
            let code = NGHTTP3Connection.applicationErrorCode(Int32(consumed))
            throw .applicationClosed(code: code, reason: nghttp3Message(Int32(consumed)), remote: false)
        }
        core.extendReceiveWindow(streamID: streamID, by: consumed)
    }

    func acknowledged(streamID: Int64, offset: UInt64, length: UInt64) throws(QUICError) {
        guard let h3 else { return }
        let rv = h3.addAckOffset(streamID: streamID, bytes: length)
        if rv != 0 { throw .internalError("nghttp3_conn_add_ack_offset: \(nghttp3Message(rv))") }
    }

    func streamClosed(streamID: Int64, applicationErrorCode: UInt64?) {
        state.transportClosedStream(streamID)
        guard let h3 else { return }
        let rv = h3.closeStream(streamID: streamID, code: applicationErrorCode ?? HTTP3ErrorCode.noError)
        if rv != 0 && rv != NGHTTP3Connection.streamNotFound {
            // A critical stream (control, QPACK) closed: a connection error (RFC 9114, 6.2.1).
            logger.debug("nghttp3_conn_close_stream failed", metadata: ["error": "\(nghttp3Message(rv))"])
            closeConnection(code: NGHTTP3Connection.applicationErrorCode(rv))
        }
        // nghttp3 reports the close through its own callback (streamClosed(streamID:code:)), or
        // later: a stream whose HEADERS wait for QPACK encoder instructions stays open in nghttp3
        // until they arrive (the response and its FIN can come before them when packets are lost
        // or reordered), and must not be failed here. Only a stream nghttp3 never knew (the peer
        // reset it before any data) is finished here.
        if rv == NGHTTP3Connection.streamNotFound, let stream = streams.removeValue(forKey: streamID) {
            stream.closed = true
            stream.failReader(.streamReset(code: applicationErrorCode ?? HTTP3ErrorCode.noError))
            stream.failWriters(.streamReset(code: applicationErrorCode ?? HTTP3ErrorCode.noError))
            if state.requestStreamClosed(streamID) { closeConnection(code: HTTP3ErrorCode.noError) }
        }
    }

    func streamReset(streamID: Int64, applicationErrorCode: UInt64) {
        guard let h3 else { return }
        h3.shutdownStreamRead(streamID: streamID)
        if let stream = streams[streamID] {
            releaseBufferedBody(stream)
            let error: HTTPError = applicationErrorCode == HTTP3ErrorCode.requestRejected ? .requestRejected
                                                                                           : .streamReset(code: applicationErrorCode)
            stream.failReader(error)
            stream.failWriters(error)
        }
    }

    func peerStreamLimitRaised(bidirectional: Bool, maxStreams: UInt64) {
        // nghttp3 tracks how many request streams the client may open in total.
        guard bidirectional, role == .server, let h3 else { return }
        h3.setMaxClientBidirectionalStreams(maxStreams)
    }

    func streamCreditAvailable(streamID: Int64) {
        h3?.unblockStream(streamID: streamID)
    }

    func streamLimitRaised(bidirectional: Bool) {
        guard bidirectional else { return }
        submitPendingRequests()
    }

    func pendingStreamData(into vectors: UnsafeMutableBufferPointer<QUICIOVector>) -> PendingStreamData? {
        guard let h3, vectors.baseAddress != nil else { return nil }
        if let retry = state.bareFINToOffer() {
            return PendingStreamData(streamID: retry, vectorCount: 0, fin: true)
        }
        let (streamID, count, fin) = h3.writeStream(into: vectors)
        if count < 0 {
            logger.debug("nghttp3_conn_writev_stream failed", metadata: ["error": "\(nghttp3Message(Int32(count)))"])
            closeConnection(code: NGHTTP3Connection.applicationErrorCode(Int32(count)))
            return nil
        }
        guard streamID >= 0 else { return nil }
        state.offered(streamID: streamID, vectorCount: count, fin: fin)
        return PendingStreamData(streamID: streamID, vectorCount: count, fin: fin)
    }

    func wrote(streamID: Int64, bytes: Int, fin: Bool) throws(QUICError) {
        guard let h3 else { return }
        state.wrote(streamID: streamID, bytes: bytes)
        if role == .client, core.isSendingEarlyData, let stream = streams[streamID] { stream.earlyBytes += bytes }
        let rv = h3.addWriteOffset(streamID: streamID, bytes: bytes)
        if rv != 0 { throw .internalError("nghttp3_conn_add_write_offset: \(nghttp3Message(rv))") }
    }

    func streamBlocked(streamID: Int64) {
        h3?.blockStream(streamID: streamID)
    }

    func streamWriteClosed(streamID: Int64) {
        guard let h3 else { return }
        state.forgetFIN(streamID)
        h3.shutdownStreamWrite(streamID: streamID)
        guard let stream = streams[streamID], stream.writeError == nil, !stream.writeShutByPeer else { return }
        // The peer sent STOP_SENDING. ngtcp2 0.12 does not tell its code here; the peer's
        // RESET_STREAM or the stream's close usually follows at once and carries it. Writers
        // wait for that up to 2 s (as raw QUIC streams do: 500 ms was too short on a busy
        // machine), then fail without it.
        stream.writeShutByPeer = true
        eventLoop.scheduleTask(in: .seconds(2)) { [weak stream] in
            stream?.failWriters(.streamReset(code: HTTP3ErrorCode.noError))
        }
    }

    func connectionClosed(error: QUICError?) {
        guard let actions = state.connectionClosed(error: error) else { return }
        for (streamID, failure) in actions.streamFailures {
            guard let stream = streams[streamID] else { continue }
            if !stream.receivedEnd { stream.failReader(failure) }
            stream.failWriters(failure)
        }
        streams.removeAll()
        failPendingRequests(actions.pendingToFail, actions.error)
        onDrain?()
        delegate?.sessionDidClose(self, error: error)
    }
}
