internal import CNghttp3
internal import CNgtcp2
import HTTPAPI
import HTTPTypes
import Logging
import NIOCore
import QUIC
import QUICSocket

/// Settings of the HTTP/3 layer.
public struct HTTP3Settings: Sendable, Hashable {
    /// The largest header section accepted (SETTINGS_MAX_FIELD_SECTION_SIZE); larger requests get 431.
    public var maxHeaderSectionSize: Int
    /// QPACK dynamic table capacity for both directions (nghttp3 0.8 defaults to 0).
    public var qpackTableCapacity: Int
    /// Streams that may be blocked waiting for QPACK table updates.
    public var qpackBlockedStreams: Int
    /// Body bytes buffered per stream, unacknowledged, before a writer waits.
    public var sendBufferLimit: Int

    /// Creates settings with defaults.
    public init(maxHeaderSectionSize: Int = 64 << 10, qpackTableCapacity: Int = 4096, qpackBlockedStreams: Int = 100,
                sendBufferLimit: Int = 1 << 20) {
        self.maxHeaderSectionSize = maxHeaderSectionSize
        self.qpackTableCapacity = qpackTableCapacity
        self.qpackBlockedStreams = qpackBlockedStreams
        self.sendBufferLimit = sendBufferLimit
    }
}

/// Counters of one HTTP/3 connection (for diagnostics and tests).
package struct HTTP3SessionStatistics: Sendable {
    package var requestStreamsOpened = 0
    package var peakConcurrentRequestStreams = 0
    /// Bytes we sent on our QPACK encoder stream (its type byte, table capacity, insertions).
    package var qpackEncoderBytesSent = 0
    /// Bytes the peer sent on its QPACK encoder stream (counted the same way).
    package var qpackEncoderBytesReceived = 0
    /// Server: whether this connection sent GOAWAY (graceful shutdown or GOAWAY chance).
    package var goawaySent = false
    /// Client: whether the server sent GOAWAY on this connection.
    package var goawayReceived = false
    /// Client: request streams that went in 0-RTT (at least their first bytes).
    package var earlyRequestsSent = 0
    /// Client: requests sent again after the server refused the early data they went in.
    package var earlyRequestsResent = 0
    /// Client: requests answered 425 (Too Early) and sent again after the handshake.
    package var tooEarlyRetries = 0
    /// Server: requests whose head arrived in 0-RTT.
    package var earlyRequestsReceived = 0
}

/// Hears about new requests (server) and the end of the connection.
protocol HTTP3SessionDelegate: AnyObject, Sendable {
    /// A request head arrived (server). Called on the event loop, after the C call returned.
    func session(_ session: HTTP3Session, didReceiveRequest stream: RequestStream, head: HTTPRequest)
    /// The connection is closed.
    func sessionDidClose(_ session: HTTP3Session, error: QUICError?)
}

/// One HTTP/3 connection: owns the `nghttp3_conn` and runs it as the QUIC connection's
/// application protocol. The only type that calls nghttp3.
///
/// Confined to the connection's event loop.
final class HTTP3Session: QUICApplicationProtocol, @unchecked Sendable {
    enum Role { case client, server }

    /// Strong: bodies and writers may outlive the connection; the cycle core -> application ->
    /// core is broken when the connection finishes (it drops its application).
    let core: ConnectionCore
    let role: Role
    let settings: HTTP3Settings
    let logger: Logger
    private var h3: OpaquePointer?
    private var streams: [Int64: RequestStream] = [:]
    private var activeRequests = 0
    private(set) var statistics = HTTP3SessionStatistics()
    weak var delegate: (any HTTP3SessionDelegate)?
    private var qpackEncoderStreamID: Int64 = -1
    /// The control and QPACK streams are open and bound to nghttp3.
    private var controlStreamsBound = false
    /// Client: the control streams went out in 0-RTT, so requests may follow them.
    private var earlyDataReady = false
    /// Server: streams with data that arrived in 0-RTT, until their head is seen.
    private var earlyStreamIDs: Set<Int64> = []
    /// The stream whose bare FIN was offered last and not yet taken (see `pendingStreamData`).
    private var lastBareFIN: Int64?
    private var finsToRetry: [Int64] = []
    /// The peer's unidirectional streams whose type byte has been seen: the QPACK encoder one.
    private var peerUniStreamTypes: [Int64: UInt8] = [:]
    /// Client: the server's GOAWAY stream ID; requests at or above it were not processed.
    private(set) var goawayID: Int64?
    /// Server: shutting down gracefully.
    private(set) var shuttingDown = false
    private(set) var closeError: QUICError?
    private(set) var isClosed = false
    /// Called (on the loop) when the connection becomes unusable for new requests.
    var onDrain: (() -> Void)?

    let eventLoop: any EventLoop

    init(core: ConnectionCore, role: Role, settings: HTTP3Settings, maxIncomingStreams: UInt64, logger: Logger) throws(QUICError) {
        self.core = core
        self.eventLoop = core.eventLoop
        self.role = role
        self.settings = settings
        self.logger = logger
        h3 = try makeNghttp3Connection()
        if role == .server, let h3 {
            nghttp3_conn_set_max_client_streams_bidi(h3, maxIncomingStreams)
        }
    }

    private func makeNghttp3Connection() throws(QUICError) -> OpaquePointer {
        var callbacks = Self.callbacks()
        var h3Settings = nghttp3_settings()
        swift_nghttp3_settings_default(&h3Settings)
        h3Settings.max_field_section_size = UInt64(max(0, settings.maxHeaderSectionSize))
        h3Settings.qpack_max_dtable_capacity = max(0, settings.qpackTableCapacity)
        h3Settings.qpack_encoder_max_dtable_capacity = max(0, settings.qpackTableCapacity)
        h3Settings.qpack_blocked_streams = max(0, settings.qpackBlockedStreams)
        var conn: OpaquePointer?
        let userData = Unmanaged.passUnretained(self).toOpaque()
        let rv = role == .client
            ? swift_nghttp3_conn_client_new(&conn, &callbacks, &h3Settings, nil, userData)
            : swift_nghttp3_conn_server_new(&conn, &callbacks, &h3Settings, nil, userData)
        guard rv == 0, let conn else { throw .internalError("nghttp3_conn_new: \(nghttp3Message(rv))") }
        return conn
    }

    deinit {
        if let h3 { nghttp3_conn_del(h3) }
    }

    // MARK: - Client operations

    /// A request waiting for the peer's stream limit (MAX_STREAMS) to allow one more stream.
    private struct PendingRequest {
        let token: UInt64
        let head: HTTPRequest
        let hasBody: Bool
        /// The request may go in 0-RTT (``EarlyDataPolicy``); otherwise it waits for the handshake.
        let mayUseEarlyData: Bool
        let continuation: CheckedContinuation<RequestStream, any Error>
    }
    private var pendingRequests = CircularBuffer<PendingRequest>()

    /// Opens a request stream and submits the head at once if the peer's stream limit allows,
    /// otherwise when it next rises. Requests are served in order. While the connection is in
    /// 0-RTT, a request that may not go early (`mayUseEarlyData` false) waits for the handshake.
    func startRequest(_ head: HTTPRequest, hasBody: Bool, mayUseEarlyData: Bool = false, token: UInt64,
                      continuation: CheckedContinuation<RequestStream, any Error>) {
        if isClosed { continuation.resume(throwing: httpError(closeError)); return }
        if goawayID != nil { continuation.resume(throwing: HTTPError.requestRejected); return }
        if cancelledTokens.remove(token) != nil { continuation.resume(throwing: CancellationError()); return }
        pendingRequests.append(PendingRequest(token: token, head: head, hasBody: hasBody, mayUseEarlyData: mayUseEarlyData,
                                              continuation: continuation))
        submitPendingRequests()
    }

    /// Client, right after a resumed connection got its 0-RTT key: opens the control and QPACK
    /// streams in early data so requests can follow them. `false` if the server's remembered
    /// limits do not allow it (requests then wait for the handshake).
    func startEarlyData() -> Bool {
        guard role == .client, core.isSendingEarlyData, !isClosed else { return false }
        do throws(QUICError) {
            try bindControlStreams()
        } catch {
            logger.debug("no HTTP/3 requests in 0-RTT", metadata: ["reason": "\(error)"])
            return false
        }
        earlyDataReady = true
        core.scheduleWrite()
        return true
    }

    /// Requests may be sent in 0-RTT now.
    private var sendsEarlyData: Bool { earlyDataReady && core.isSendingEarlyData }

    /// The task waiting for a stream slot was cancelled: it leaves the line.
    func cancelPendingRequest(token: UInt64) {
        if let index = pendingRequests.firstIndex(where: { $0.token == token }) {
            pendingRequests.remove(at: index).continuation.resume(throwing: CancellationError())
        } else {
            // Not queued yet (the cancel overtook the request) or already submitted.
            cancelledTokens.insert(token)
            if cancelledTokens.count > 1024 { cancelledTokens.removeAll() }
        }
    }
    private var cancelledTokens: Set<UInt64> = []
    private var nextToken: UInt64 = 0
    /// A number identifying one waiting request (for cancellation).
    func makeRequestToken() -> UInt64 {
        nextToken += 1
        return nextToken
    }

    private func submitPendingRequests() {
        if role == .client && !controlStreamsBound { return }  // 0-RTT not possible: wait for the handshake
        let early = core.isSendingEarlyData
        if early && !sendsEarlyData { return }
        var waiting = CircularBuffer<PendingRequest>()
        while let pending = pendingRequests.first, core.streamsLeft(bidirectional: true) > 0 {
            pendingRequests.removeFirst()
            if early && !pending.mayUseEarlyData {
                waiting.append(pending)  // not in 0-RTT: after the handshake
                continue
            }
            do throws(HTTPError) {
                let stream = try submitRequest(pending.head, hasBody: pending.hasBody)
                if early { statistics.earlyRequestsSent += 1 }
                pending.continuation.resume(returning: stream)
            } catch {
                pending.continuation.resume(throwing: error)
            }
        }
        if !waiting.isEmpty {
            waiting.append(contentsOf: pendingRequests)
            pendingRequests = waiting
        }
    }

    /// Counts a request sent again after refused early data or a 425 (for statistics).
    func countRetry(tooEarly: Bool) {
        if tooEarly { statistics.tooEarlyRetries += 1 } else { statistics.earlyRequestsResent += 1 }
    }

    /// Whether a new request can be sent at once (pool choice).
    var acceptsRequests: Bool { !isClosed && goawayID == nil && !shuttingDown && core.isOpen }

    /// Opens a stream and submits a request head; the stream limit must allow it.
    private func submitRequest(_ head: HTTPRequest, hasBody: Bool) throws(HTTPError) -> RequestStream {
        guard let h3, !isClosed else { throw httpError(closeError) }
        if goawayID != nil { throw .requestRejected }
        let opened: Int64?
        do throws(QUICError) {
            opened = try core.openStream(bidirectional: true)
        } catch {
            throw httpError(error)
        }
        guard let id = opened else { throw .requestRejected }
        let stream = RequestStream(id: id)
        streams[id] = stream
        requestOpened()
        var fields: [(String, String)] = [(":method", head.method.rawValue)]
        if let scheme = head.scheme { fields.append((":scheme", scheme)) }
        if let authority = head.authority { fields.append((":authority", authority)) }
        if let path = head.path { fields.append((":path", path)) }
        for field in head.headerFields { fields.append((field.name.canonicalName, field.value)) }
        var reader = nghttp3_data_reader(read_data: Self.readData)
        let rv = withHeaderVector(fields) { nva in
            hasBody ? nghttp3_conn_submit_request(h3, id, nva.baseAddress, nva.count, &reader, nil)
                    : nghttp3_conn_submit_request(h3, id, nva.baseAddress, nva.count, nil, nil)
        }
        guard rv == 0 else {
            streams[id] = nil
            core.shutdownStream(streamID: id, applicationError: HTTP3ErrorCode.internalError)
            throw .invalidRequest("nghttp3 rejected the request: \(nghttp3Message(rv))")
        }
        stream.headSent = true
        if !hasBody { stream.sendFinished = true }
        core.scheduleWrite()
        return stream
    }

    /// Waits for the response head (1xx heads are skipped).
    func awaitHead(_ stream: RequestStream, continuation: CheckedContinuation<Void, any Error>) {
        if stream.head != nil {
            continuation.resume()
        } else if let error = stream.readError {
            continuation.resume(throwing: error)
        } else {
            stream.headWaiter = continuation
        }
    }

    // MARK: - What a server's handler learns about the connection

    /// The connection's facts for a request's context, kept between requests: formatting the
    /// addresses and asking TLS for the name and certificate cost more than the rest of a small
    /// request. Made again when the path changes (migration, NAT rebinding).
    private var cachedContext: (remote: SocketAddress, local: SocketAddress, context: HTTPRequestContext)?

    func requestContext() -> HTTPRequestContext {
        let remote = core.remoteAddress, local = core.localAddress
        if let cachedContext, cachedContext.remote == remote, cachedContext.local == local {
            return cachedContext.context
        }
        let context = HTTPRequestContext(protocolVersion: .http3, remoteAddress: remote.endpointText,
                                         localAddress: local.endpointText, tlsServerName: core.tlsServerName,
                                         clientCertificate: core.peerCertificate, isEarlyData: false)
        // Before the handshake completes (0-RTT) the certificate may be yet to come: keep only complete facts.
        if core.isEstablished { cachedContext = (remote, local, context) }
        return context
    }

    // MARK: - Reaching the event loop from a task

    /// Runs `body` on the session's event loop and waits for it: directly when the calling task
    /// already runs there (a handler placed on the event loop), else by a hand-off. Only for
    /// callers in a task of their own, never from inside the session's own callbacks.
    func onLoop(_ body: @escaping @Sendable () throws(HTTPError) -> Void) async throws {
        if eventLoop.inEventLoop {
            try body()
        } else {
            try await eventLoop.submit { () throws -> Void in try body() }.get()
        }
    }

    /// Runs `body` on the session's event loop without waiting: directly when the calling task
    /// already runs there. For the start of a continuation-based wait.
    func onLoop(_ body: @escaping @Sendable () -> Void) {
        if eventLoop.inEventLoop { body() } else { eventLoop.execute(body) }
    }

    // MARK: - Server operations

    /// What every response head needs: an open session and stream, the control streams bound,
    /// and the fields as nghttp3 takes them.
    private func prepareResponseHead(_ stream: RequestStream, _ head: HTTPResponse) throws(HTTPError)
        -> (OpaquePointer, [(String, String)]) {
        guard !isClosed else { throw httpError(closeError) }
        if let error = stream.writeError { throw error }
        // A response to a request that came in 0-RTT can be ready before the handshake
        // completes (0.5-RTT): nghttp3 needs its control and QPACK streams first.
        if !controlStreamsBound {
            do throws(QUICError) {
                try bindControlStreams()
            } catch {
                throw httpError(error)
            }
        }
        guard let h3 else { throw httpError(closeError) }
        var fields: [(String, String)] = [(":status", String(head.status.code))]
        for field in head.headerFields { fields.append((field.name.canonicalName, field.value)) }
        return (h3, fields)
    }

    /// Sends a response head; the body follows through ``write``/``finish``.
    func submitResponse(_ stream: RequestStream, head: HTTPResponse) throws(HTTPError) {
        let (h3, fields) = try prepareResponseHead(stream, head)
        var reader = nghttp3_data_reader(read_data: Self.readData)
        let rv = withHeaderVector(fields) { nva in
            nghttp3_conn_submit_response(h3, stream.id, nva.baseAddress, nva.count, &reader)
        }
        guard rv == 0 else { throw .invalidRequest("nghttp3 rejected the response: \(nghttp3Message(rv))") }
        stream.headSent = true
        core.scheduleWrite()
    }

    /// Server: stop taking new requests (GOAWAY), finish the ones in flight, then close.
    func beginGracefulShutdown() {
        guard role == .server, !shuttingDown, h3 != nil, !isClosed else { return }
        shuttingDown = true
        // Before the handshake completed there is no control stream to carry GOAWAY (nghttp3
        // asserts on it): the GOAWAY goes out as soon as the handshake binds it.
        if controlStreamsBound { sendGoAway() }
    }

    /// The two GOAWAYs of a graceful shutdown (the control stream is bound).
    private func sendGoAway() {
        guard let h3, !isClosed else { return }
        statistics.goawaySent = true
        // A first GOAWAY announces the shutdown; the final one (with the last stream we will
        // serve) follows a round trip later, so requests already on their way are not lost.
        _ = nghttp3_conn_submit_shutdown_notice(h3)
        core.scheduleWrite()
        let delay = TimeAmount.milliseconds(100)
        eventLoop.scheduleTask(in: delay) { [self] in
            guard let h3 = self.h3, !isClosed else { return }
            _ = nghttp3_conn_shutdown(h3)
            core.scheduleWrite()
            closeIfDrained()
        }
    }

    private func closeIfDrained() {
        guard activeRequests == 0, !isClosed else { return }
        if (role == .server && shuttingDown) || (role == .client && goawayID != nil) {
            closeConnection(code: HTTP3ErrorCode.noError)
        }
    }

    /// Closes the connection after the current call into ngtcp2/nghttp3 has returned (closing
    /// from inside their callbacks is not allowed).
    private func closeConnection(code: UInt64) {
        let core = self.core
        eventLoop.execute { core.close(applicationError: code, reason: "") }
    }

    // MARK: - Body I/O (called on the loop by readers and writers)

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
            if let h3 { _ = nghttp3_conn_shutdown_stream_read(h3, stream.id) }
            core.stopSending(streamID: stream.id, applicationError: code)
        }
    }

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

    /// An informational (1xx) response head, before the final one.
    func submitInformational(_ stream: RequestStream, head: HTTPResponse) throws(HTTPError) {
        guard !stream.headSent else { throw .responseHeadAlreadySent }
        // 101 has no meaning in HTTP/3 (RFC 9114, 4.5): refused rather than sent.
        guard head.status.kind == .informational, head.status.code != 101 else {
            throw .invalidRequest("status \(head.status.code) cannot be sent as an informational response in HTTP/3")
        }
        let (h3, fields) = try prepareResponseHead(stream, head)
        let rv = withHeaderVector(fields) { nva in
            nghttp3_conn_submit_info(h3, stream.id, nva.baseAddress, nva.count)
        }
        guard rv == 0 else { throw .invalidRequest("nghttp3 rejected the informational response: \(nghttp3Message(rv))") }
        core.scheduleWrite()
    }

    /// A whole response: head, a body that fits the send buffer, and the end (``submitResponse``,
    /// ``write`` and ``finish`` in one turn of the event loop).
    func respond(_ stream: RequestStream, head: HTTPResponse, body: ByteBuffer, trailers: HTTPFields?) throws(HTTPError) {
        try submitResponse(stream, head: head)
        // A peer that stopped reading gets no body; its reset reaches the stream as usual.
        guard !stream.writeShutByPeer else { return }
        body.withUnsafeReadableBytes { stream.send.append($0) }
        try finish(stream, trailers: trailers)
    }

    /// Gives the connection credit of unread body bytes back and drops them.
    private func releaseBufferedBody(_ stream: RequestStream) {
        guard stream.bufferedBytes > 0 else { return }
        core.extendConnectionWindow(by: stream.bufferedBytes)
        stream.body.removeAll()
        stream.bufferedBytes = 0
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
        if let h3 { _ = nghttp3_conn_shutdown_stream_read(h3, stream.id) }
        core.shutdownStream(streamID: stream.id, applicationError: code)
    }

    private func resume(_ stream: RequestStream) {
        guard let h3 else { return }
        if stream.deferred {
            stream.deferred = false
            _ = nghttp3_conn_resume_stream(h3, stream.id)
        }
        core.scheduleWrite()
    }

    // MARK: - nghttp3 callback handlers

    fileprivate func readData(streamID: Int64, vectors: UnsafeMutablePointer<nghttp3_vec>?, count: Int,
                              flags: UnsafeMutablePointer<UInt32>?) -> Int {
        guard let stream = streams[streamID], let vectors, let flags else { return Int(NGHTTP3_ERR_CALLBACK_FAILURE) }
        let (filled, total) = vectors.withMemoryRebound(to: ngtcp2_vec.self, capacity: count) { base in
            let filled = stream.send.unsent(into: UnsafeMutableBufferPointer(start: base, count: count))
            return (filled, totalLength(UnsafeBufferPointer(start: base, count: filled)))
        }
        stream.send.markSent(total)
        if stream.sendFinished && stream.send.unsentBytes == 0 {
            flags.pointee |= UInt32(NGHTTP3_DATA_FLAG_EOF)
            if let trailers = stream.sendTrailers, let h3 {
                stream.sendTrailers = nil
                flags.pointee |= UInt32(NGHTTP3_DATA_FLAG_NO_END_STREAM)
                let fields = trailers.map { ($0.name.canonicalName, $0.value) }
                let rv = withHeaderVector(fields) { nva in
                    nghttp3_conn_submit_trailers(h3, streamID, nva.baseAddress, nva.count)
                }
                if rv != 0 { return Int(NGHTTP3_ERR_CALLBACK_FAILURE) }
            }
            return filled
        }
        if filled == 0 {
            stream.deferred = true
            return Int(NGHTTP3_ERR_WOULDBLOCK)
        }
        return filled
    }

    fileprivate func ackedStreamData(streamID: Int64, length: UInt64) {
        guard let stream = streams[streamID] else { return }
        stream.send.acknowledge(upTo: stream.send.ackedOffset + length)
        if stream.send.unacknowledgedBytes < settings.sendBufferLimit, !stream.writers.isEmpty {
            let writers = stream.writers
            stream.writers.removeAll()
            writers.forEach { $0.resume() }
        }
    }

    fileprivate func streamClosed(streamID: Int64, code: UInt64) {
        guard let stream = streams.removeValue(forKey: streamID) else { return }
        stream.closed = true
        let error: HTTPError = code == HTTP3ErrorCode.noError ? .connectionClosed("stream closed")
                                                              : (code == HTTP3ErrorCode.requestRejected ? .requestRejected
                                                                                                        : .streamReset(code: code))
        if !stream.receivedEnd { stream.failReader(error) }
        if !(stream.sendFinished && stream.send.unsentBytes == 0) || !stream.writers.isEmpty {
            stream.failWriters(error)
        }
        requestClosed()
    }

    /// Everything buffered for a stream, as one buffer (up to 1 MiB), with its flow-control
    /// credit returned. One hand-over per batch instead of one per packet: each hand-over
    /// wakes a task on another thread, which costs far more than copying the bytes.
    private func takeBuffered(_ stream: RequestStream) -> ByteBuffer? {
        guard var chunk = stream.body.popFirst() else { return nil }
        while chunk.readableBytes < 1 << 20, var next = stream.body.popFirst() {
            chunk.writeBuffer(&next)
        }
        stream.bufferedBytes -= chunk.readableBytes
        core.extendReceiveWindow(streamID: stream.id, by: chunk.readableBytes)
        return chunk
    }

    /// Hands a waiting reader what arrived, after the current batch of packets was processed.
    private func scheduleDelivery(_ stream: RequestStream) {
        guard !stream.deliveryScheduled else { return }
        stream.deliveryScheduled = true
        eventLoop.execute {
            stream.deliveryScheduled = false
            guard let reader = stream.reader, let chunk = self.takeBuffered(stream) else { return }
            stream.reader = nil
            reader.resume(returning: chunk)
        }
    }

    fileprivate func receivedData(streamID: Int64, data: UnsafePointer<UInt8>?, length: Int) {
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

    fileprivate func beginHeaders(streamID: Int64, trailers: Bool) {
        let stream: RequestStream
        if let existing = streams[streamID] {
            stream = existing
        } else {
            // Server: a new request stream.
            stream = RequestStream(id: streamID)
            streams[streamID] = stream
            requestOpened()
        }
        stream.fields.removeAll()
        stream.fieldBytes = 0
        stream.receivingTrailers = trailers
    }

    fileprivate func receivedHeader(streamID: Int64, name: String, value: String) {
        guard let stream = streams[streamID] else { return }
        stream.fieldBytes += name.utf8.count + value.utf8.count + 32
        if stream.fieldBytes > settings.maxHeaderSectionSize {
            stream.fieldsTooLarge = true
            return
        }
        stream.fields.append((name, value))
    }

    fileprivate func endHeaders(streamID: Int64, fin: Bool) {
        guard let stream = streams[streamID] else { return }
        if stream.receivingTrailers {
            if !stream.fieldsTooLarge {
                var trailers = HTTPFields()
                for (name, value) in stream.fields where !name.hasPrefix(":") {
                    if let fieldName = HTTPField.Name(parsed: name) { trailers.append(HTTPField(name: fieldName, value: value)) }
                }
                stream.trailers = trailers
            }
            return
        }
        if stream.fieldsTooLarge {
            rejectOversizedHead(stream)
            return
        }
        switch role {
        case .server:
            do throws(HTTPError) {
                let request = try Self.makeRequest(stream.fields)
                stream.head = stream.fields
                if earlyStreamIDs.remove(streamID) != nil {
                    stream.arrivedEarly = true
                    statistics.earlyRequestsReceived += 1
                }
                delegate?.session(self, didReceiveRequest: stream, head: request)
            } catch {
                logger.debug("malformed request", metadata: ["stream": "\(streamID)", "error": "\(error)"])
                reset(stream, code: HTTP3ErrorCode.messageError)
            }
        case .client:
            // Informational (1xx) heads are skipped; the final head follows.
            if let status = stream.fields.first(where: { $0.name == ":status" }).flatMap({ Int($0.value) }),
               (100..<200).contains(status) {
                stream.fields.removeAll()
                return
            }
            stream.head = stream.fields
            if let waiter = stream.headWaiter {
                stream.headWaiter = nil
                waiter.resume()
            }
        }
    }

    private func rejectOversizedHead(_ stream: RequestStream) {
        let limit = settings.maxHeaderSectionSize
        switch role {
        case .server:
            // 431 and stop reading (RFC 9114, 4.2.2).
            stream.readError = .headerSectionTooLarge(limit: limit)
            if let h3 { _ = nghttp3_conn_shutdown_stream_read(h3, stream.id) }
            core.stopSending(streamID: stream.id, applicationError: HTTP3ErrorCode.noError)
            var head = HTTPResponse(status: .init(code: 431, reasonPhrase: "Request Header Fields Too Large"))
            head.headerFields[.contentLength] = "0"
            try? submitResponse(stream, head: head)
            try? finish(stream, trailers: nil)
        case .client:
            reset(stream, code: HTTP3ErrorCode.excessiveLoad)
            stream.failReader(.headerSectionTooLarge(limit: limit))
        }
    }

    fileprivate func endStream(streamID: Int64) {
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

    fileprivate func goawayReceived(id: Int64) {
        guard role == .client else { return }
        goawayID = id
        statistics.goawayReceived = true
        onDrain?()
        // Requests on streams at or above the GOAWAY ID were not processed: the caller may retry.
        for (streamID, stream) in streams where streamID >= id {
            stream.failReader(.requestRejected)
            stream.failWriters(.requestRejected)
        }
        failPendingRequests(.requestRejected)
        closeIfDrained()
    }

    private func failPendingRequests(_ error: HTTPError) {
        let pending = pendingRequests
        pendingRequests.removeAll()
        pending.forEach { $0.continuation.resume(throwing: error) }
    }

    private func requestOpened() {
        activeRequests += 1
        statistics.requestStreamsOpened += 1
        statistics.peakConcurrentRequestStreams = max(statistics.peakConcurrentRequestStreams, activeRequests)
    }

    private func requestClosed() {
        activeRequests -= 1
        closeIfDrained()
    }

    // MARK: - QUICApplicationProtocol

    func handshakeCompleted() throws(QUICError) {
        if !controlStreamsBound { try bindControlStreams() }
        earlyStreamIDs.removeAll()
        if role == .client { submitPendingRequests() }
    }

    /// Opens the control stream and the QPACK encoder and decoder streams (RFC 9114, 6.2).
    private func bindControlStreams() throws(QUICError) {
        guard let h3 else { return }
        guard let control = try core.openStream(bidirectional: false),
              let encoder = try core.openStream(bidirectional: false),
              let decoder = try core.openStream(bidirectional: false) else {
            throw QUICError.internalError("the peer allows too few unidirectional streams for HTTP/3")
        }
        guard nghttp3_conn_bind_control_stream(h3, control) == 0,
              nghttp3_conn_bind_qpack_streams(h3, encoder, decoder) == 0 else {
            throw QUICError.internalError("nghttp3 could not bind its streams")
        }
        qpackEncoderStreamID = encoder
        controlStreamsBound = true
        // A shutdown that began before the control stream existed.
        if shuttingDown { sendGoAway() }
    }

    func earlyDataRejected() {
        guard role == .client else { return }
        // ngtcp2 dropped every stream opened in 0-RTT, control streams included, and will hand
        // out the same stream IDs again: start HTTP/3 over with a fresh nghttp3 connection and
        // tell each request sent early to go again (nothing of it reached the server).
        let rejected = streams.values
        streams.removeAll()
        activeRequests = 0
        if let h3 { nghttp3_conn_del(h3) }
        h3 = nil
        controlStreamsBound = false
        earlyDataReady = false
        qpackEncoderStreamID = -1
        lastBareFIN = nil
        finsToRetry.removeAll()
        peerUniStreamTypes.removeAll()
        do throws(QUICError) {
            h3 = try makeNghttp3Connection()
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
        // Only request streams (client-initiated, bidirectional) matter; bounded by MAX_STREAMS.
        guard role == .server, streamID & 0x3 == 0 else { return }
        earlyStreamIDs.insert(streamID)
    }

    func streamOpened(streamID: Int64) {}

    func received(streamID: Int64, data: UnsafeRawBufferPointer, fin: Bool) throws(QUICError) {
        guard let h3 else { return }
        countQPACKBytes(streamID: streamID, data: data)
        let consumed = nghttp3_conn_read_stream(h3, streamID, data.baseAddress?.assumingMemoryBound(to: UInt8.self),
                                                data.count, fin ? 1 : 0)
        if consumed < 0 {
            let code = nghttp3_err_infer_quic_app_error_code(Int32(consumed))
            throw .applicationClosed(code: code, reason: nghttp3Message(Int32(consumed)), remote: false)
        }
        core.extendReceiveWindow(streamID: streamID, by: Int(consumed))
    }

    private func countQPACKBytes(streamID: Int64, data: UnsafeRawBufferPointer) {
        let peerUni = streamID & 0x2 != 0 && (streamID & 0x1 == 1) == (role == .client)
        guard peerUni, !data.isEmpty else { return }
        if let type = peerUniStreamTypes[streamID] {
            if type == 0x02 { statistics.qpackEncoderBytesReceived += data.count }
        } else {
            peerUniStreamTypes[streamID] = data[0]
            if data[0] == 0x02 { statistics.qpackEncoderBytesReceived += data.count }
        }
    }

    func acknowledged(streamID: Int64, offset: UInt64, length: UInt64) throws(QUICError) {
        guard let h3 else { return }
        let rv = nghttp3_conn_add_ack_offset(h3, streamID, length)
        if rv != 0 { throw .internalError("nghttp3_conn_add_ack_offset: \(nghttp3Message(rv))") }
    }

    func streamClosed(streamID: Int64, applicationErrorCode: UInt64?) {
        earlyStreamIDs.remove(streamID)
        guard let h3 else { return }
        finsToRetry.removeAll { $0 == streamID }
        if lastBareFIN == streamID { lastBareFIN = nil }
        let rv = nghttp3_conn_close_stream(h3, streamID, applicationErrorCode ?? HTTP3ErrorCode.noError)
        if rv != 0 && rv != NGHTTP3_ERR_STREAM_NOT_FOUND {
            // A critical stream (control, QPACK) closed: a connection error (RFC 9114, 6.2.1).
            logger.debug("nghttp3_conn_close_stream failed", metadata: ["error": "\(nghttp3Message(rv))"])
            closeConnection(code: nghttp3_err_infer_quic_app_error_code(rv))
        }
        // nghttp3 reports the close through its own callback (streamClosed(streamID:code:)), or
        // later: a stream whose HEADERS wait for QPACK encoder instructions stays open in nghttp3
        // until they arrive (the response and its FIN can come before them when packets are lost
        // or reordered), and must not be failed here. Only a stream nghttp3 never knew (the peer
        // reset it before any data) is finished here.
        if rv == NGHTTP3_ERR_STREAM_NOT_FOUND, let stream = streams.removeValue(forKey: streamID) {
            stream.closed = true
            stream.failReader(.streamReset(code: applicationErrorCode ?? HTTP3ErrorCode.noError))
            stream.failWriters(.streamReset(code: applicationErrorCode ?? HTTP3ErrorCode.noError))
            requestClosed()
        }
    }

    func streamReset(streamID: Int64, applicationErrorCode: UInt64) {
        guard let h3 else { return }
        _ = nghttp3_conn_shutdown_stream_read(h3, streamID)
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
        nghttp3_conn_set_max_client_streams_bidi(h3, maxStreams)
    }

    func streamCreditAvailable(streamID: Int64) {
        guard let h3 else { return }
        _ = nghttp3_conn_unblock_stream(h3, streamID)
    }

    func streamLimitRaised(bidirectional: Bool) {
        guard bidirectional else { return }
        submitPendingRequests()
    }

    func pendingStreamData(into vectors: UnsafeMutableBufferPointer<ngtcp2_vec>) -> PendingStreamData? {
        guard let h3, let base = vectors.baseAddress else { return nil }
        // nghttp3 0.8 unschedules a stream as soon as it hands out a bare FIN, before knowing
        // whether the packet had room for it; if it had not, nghttp3 never offers it again.
        // Keep such FINs and offer them ourselves until ngtcp2 takes them.
        if let offered = lastBareFIN {
            lastBareFIN = nil
            if !finsToRetry.contains(offered) { finsToRetry.append(offered) }
        }
        if let retry = finsToRetry.first {
            lastBareFIN = retry
            return PendingStreamData(streamID: retry, vectorCount: 0, fin: true)
        }
        var streamID: Int64 = -1
        var fin: Int32 = 0
        let count = base.withMemoryRebound(to: nghttp3_vec.self, capacity: vectors.count) {
            nghttp3_conn_writev_stream(h3, &streamID, &fin, $0, vectors.count)
        }
        if count < 0 {
            logger.debug("nghttp3_conn_writev_stream failed", metadata: ["error": "\(nghttp3Message(Int32(count)))"])
            closeConnection(code: nghttp3_err_infer_quic_app_error_code(Int32(count)))
            return nil
        }
        guard streamID >= 0 else { return nil }
        if count == 0 && fin != 0 { lastBareFIN = streamID }
        return PendingStreamData(streamID: streamID, vectorCount: count, fin: fin != 0)
    }

    func wrote(streamID: Int64, bytes: Int, fin: Bool) throws(QUICError) {
        guard let h3 else { return }
        if streamID == lastBareFIN {
            lastBareFIN = nil
            finsToRetry.removeAll { $0 == streamID }
        }
        if streamID == qpackEncoderStreamID { statistics.qpackEncoderBytesSent += bytes }
        if role == .client, core.isSendingEarlyData, let stream = streams[streamID] { stream.earlyBytes += bytes }
        let rv = nghttp3_conn_add_write_offset(h3, streamID, bytes)
        if rv != 0 { throw .internalError("nghttp3_conn_add_write_offset: \(nghttp3Message(rv))") }
    }

    func streamBlocked(streamID: Int64) {
        guard let h3 else { return }
        nghttp3_conn_block_stream(h3, streamID)
    }

    func streamWriteClosed(streamID: Int64) {
        guard let h3 else { return }
        finsToRetry.removeAll { $0 == streamID }
        if lastBareFIN == streamID { lastBareFIN = nil }
        nghttp3_conn_shutdown_stream_write(h3, streamID)
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
        guard !isClosed else { return }
        isClosed = true
        closeError = error
        let httpFailure = httpError(error)
        // A server that sent GOAWAY closes gracefully (H3_NO_ERROR) only once every request it
        // accepted is answered (RFC 9114, 5.2): a request still without a response head was
        // not processed, and neither was one at or above the GOAWAY ID. Retrying them is safe.
        var gracefulAfterGoaway = false
        if role == .client, goawayID != nil, case .applicationClosed(let code, _, remote: true)? = error,
           code == HTTP3ErrorCode.noError {
            gracefulAfterGoaway = true
        }
        for stream in streams.values {
            let unprocessed = role == .client
                && (goawayID.map { stream.id >= $0 } == true || (gracefulAfterGoaway && stream.head == nil))
            let failure = unprocessed ? HTTPError.requestRejected : httpFailure
            if !stream.receivedEnd { stream.failReader(failure) }
            stream.failWriters(failure)
        }
        streams.removeAll()
        failPendingRequests(httpFailure)
        onDrain?()
        delegate?.sessionDidClose(self, error: error)
    }

    // MARK: - Helpers

    /// Builds a request from received fields, checking RFC 9114 section 4.3.1.
    static func makeRequest(_ fields: [(name: String, value: String)]) throws(HTTPError) -> HTTPRequest {
        var method: String?, scheme: String?, authority: String?, path: String?
        var headers = HTTPFields()
        var seenRegular = false
        for (name, value) in fields {
            if name.hasPrefix(":") {
                if seenRegular { throw .protocolError("pseudo-header \(name) after regular fields") }
                switch name {
                case ":method" where method == nil: method = value
                case ":scheme" where scheme == nil: scheme = value
                case ":authority" where authority == nil: authority = value
                case ":path" where path == nil: path = value
                default: throw .protocolError("unexpected or repeated pseudo-header \(name)")
                }
            } else {
                seenRegular = true
                guard let fieldName = HTTPField.Name(parsed: name) else { throw .protocolError("invalid field name \(name)") }
                headers.append(HTTPField(name: fieldName, value: value))
            }
        }
        guard let method, let parsedMethod = HTTPRequest.Method(method) else { throw .protocolError("missing or invalid :method") }
        if parsedMethod != .connect {
            guard scheme != nil else { throw .protocolError("missing :scheme") }
            guard let path, !path.isEmpty else { throw .protocolError("missing :path") }
        }
        return HTTPRequest(method: parsedMethod, scheme: scheme, authority: authority, path: path, headerFields: headers)
    }

    /// Builds a response head from received fields.
    static func makeResponse(_ fields: [(name: String, value: String)]) throws(HTTPError) -> HTTPResponse {
        var status: Int?
        var headers = HTTPFields()
        for (name, value) in fields {
            if name == ":status" {
                guard status == nil, let code = Int(value), (100...999).contains(code) else {
                    throw .protocolError("invalid :status \(value)")
                }
                status = code
            } else if name.hasPrefix(":") {
                throw .protocolError("unexpected pseudo-header \(name) in a response")
            } else if let fieldName = HTTPField.Name(parsed: name) {
                headers.append(HTTPField(name: fieldName, value: value))
            } else {
                throw .protocolError("invalid field name \(name)")
            }
        }
        guard let status else { throw .protocolError("missing :status") }
        return HTTPResponse(status: .init(code: status), headerFields: headers)
    }
}

/// Maps a QUIC error to the transport-neutral HTTP error.
func httpError(_ error: QUICError?) -> HTTPError {
    guard let error else { return .connectionClosed("the connection closed") }
    switch error {
    case .connectionRefused(let why): return .connectionRefused(why)
    case .unresolvableHost(let host): return .unresolvableHost(host)
    case .handshakeTimeout: return .connectTimeout
    case .certificateVerificationFailed(let why): return .certificateVerificationFailed(why)
    case .tlsHandshakeFailed(_, let why): return .tlsHandshakeFailed(why)
    case .applicationClosed(let code, _, _) where code == HTTP3ErrorCode.noError:
        return .connectionClosed("the connection closed")
    default: return .connectionClosed(error.description)
    }
}

func nghttp3Message(_ code: Int32) -> String {
    guard let text = nghttp3_strerror(code) else { return "nghttp3 error \(code)" }
    return String(cString: text)
}

/// Calls `body` with an `nghttp3_nv` array for the fields (nghttp3 copies what it needs).
private func withHeaderVector<R>(_ fields: [(String, String)], _ body: (UnsafeMutableBufferPointer<nghttp3_nv>) -> R) -> R {
    var storage: [UInt8] = []
    var ranges: [(Int, Int, Int, Int)] = []
    for (name, value) in fields {
        let nameStart = storage.count
        storage.append(contentsOf: name.utf8)
        let valueStart = storage.count
        storage.append(contentsOf: value.utf8)
        ranges.append((nameStart, valueStart - nameStart, valueStart, storage.count - valueStart))
    }
    storage.append(0)
    return storage.withUnsafeMutableBufferPointer { bytes in
        guard let base = bytes.baseAddress else {
            var empty: [nghttp3_nv] = []
            return empty.withUnsafeMutableBufferPointer { body($0) }
        }
        var nva = ranges.map { range in
            nghttp3_nv(name: base + range.0, value: base + range.2, namelen: range.1, valuelen: range.3,
                       flags: UInt8(NGHTTP3_NV_FLAG_NONE))
        }
        return nva.withUnsafeMutableBufferPointer { body($0) }
    }
}

// MARK: - C callbacks

@inline(__always)
private func session(_ userData: UnsafeMutableRawPointer?) -> HTTP3Session? {
    guard let userData else { return nil }
    return Unmanaged<HTTP3Session>.fromOpaque(userData).takeUnretainedValue()
}

private func string(_ rcbuf: OpaquePointer?) -> String {
    guard let rcbuf else { return "" }
    let vec = nghttp3_rcbuf_get_buf(rcbuf)
    guard let base = vec.base else { return "" }
    return String(decoding: UnsafeBufferPointer(start: base, count: vec.len), as: UTF8.self)
}

extension HTTP3Session {
    static let readData: nghttp3_read_data_callback = { _, streamID, vectors, count, flags, userData, _ in
        guard let session = session(userData) else { return nghttp3_ssize(NGHTTP3_ERR_CALLBACK_FAILURE) }
        return nghttp3_ssize(session.readData(streamID: streamID, vectors: vectors, count: count, flags: flags))
    }

    static func callbacks() -> nghttp3_callbacks {
        var cb = nghttp3_callbacks()
        cb.acked_stream_data = { _, streamID, length, userData, _ in
            session(userData)?.ackedStreamData(streamID: streamID, length: length)
            return 0
        }
        cb.stream_close = { _, streamID, code, userData, _ in
            session(userData)?.streamClosed(streamID: streamID, code: code)
            return 0
        }
        cb.recv_data = { _, streamID, data, length, userData, _ in
            session(userData)?.receivedData(streamID: streamID, data: data, length: length)
            return 0
        }
        cb.deferred_consume = { _, streamID, consumed, userData, _ in
            session(userData)?.core.extendReceiveWindow(streamID: streamID, by: consumed)
            return 0
        }
        cb.begin_headers = { _, streamID, userData, _ in
            session(userData)?.beginHeaders(streamID: streamID, trailers: false)
            return 0
        }
        cb.recv_header = { _, streamID, _, name, value, _, userData, _ in
            session(userData)?.receivedHeader(streamID: streamID, name: string(name), value: string(value))
            return 0
        }
        cb.end_headers = { _, streamID, fin, userData, _ in
            session(userData)?.endHeaders(streamID: streamID, fin: fin != 0)
            return 0
        }
        cb.begin_trailers = { _, streamID, userData, _ in
            session(userData)?.beginHeaders(streamID: streamID, trailers: true)
            return 0
        }
        cb.recv_trailer = { _, streamID, _, name, value, _, userData, _ in
            session(userData)?.receivedHeader(streamID: streamID, name: string(name), value: string(value))
            return 0
        }
        cb.end_trailers = { _, streamID, fin, userData, _ in
            session(userData)?.endHeaders(streamID: streamID, fin: fin != 0)
            return 0
        }
        cb.end_stream = { _, streamID, userData, _ in
            session(userData)?.endStream(streamID: streamID)
            return 0
        }
        cb.stop_sending = { _, streamID, code, userData, _ in
            session(userData)?.core.stopSending(streamID: streamID, applicationError: code)
            return 0
        }
        cb.reset_stream = { _, streamID, code, userData, _ in
            session(userData)?.core.resetStream(streamID: streamID, applicationError: code)
            return 0
        }
        cb.shutdown = { _, id, userData in
            session(userData)?.goawayReceived(id: id)
            return 0
        }
        return cb
    }
}
