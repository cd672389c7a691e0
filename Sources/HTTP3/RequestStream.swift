import HTTPAPI
import HTTPTypes
import NIOCore
import QUIC

/// One HTTP/3 request stream: the message received on it and the message sent on it.
/// Confined to the connection's event loop (`@unchecked Sendable` so handles can carry it).
final class RequestStream: @unchecked Sendable {
    let id: Int64

    // MARK: Receiving
    // The header section being received is kept by the session's state machine.
    /// The received head, once complete (1xx heads are skipped on the client).
    var head: [(name: String, value: String)]?
    var trailers: HTTPFields?
    var body = CircularBuffer<ByteBuffer>()
    /// A hand-over of buffered body bytes to the waiting reader is queued on the loop.
    var deliveryScheduled = false
    var bufferedBytes = 0
    var receivedEnd = false
    var readError: HTTPError?
    var readerGone = false
    var reader: CheckedContinuation<ByteBuffer?, any Error>?
    var headWaiter: CheckedContinuation<Void, any Error>?
    var trailerWaiters: [CheckedContinuation<HTTPFields?, any Error>] = []

    // MARK: Sending
    var send = SendBuffer()
    var sendFinished = false
    var sendTrailers: HTTPFields?
    /// nghttp3 asked for data when there was none (NGHTTP3_ERR_WOULDBLOCK): resume it on write.
    var deferred = false
    var writeError: HTTPError?
    var writers: [CheckedContinuation<Void, any Error>] = []
    /// The peer sent STOP_SENDING; its code is not known yet.
    var writeShutByPeer = false
    var headSent = false
    var closed = false

    // MARK: Early data (0-RTT)
    /// Server: the request head arrived in 0-RTT, before the handshake completed.
    var arrivedEarly = false
    /// Client: bytes of this stream (HEADERS and DATA frames) that went in 0-RTT packets.
    var earlyBytes = 0
    /// Client: the server refused the early data this stream went in; nothing of it arrived,
    /// and the request is to be sent again after the handshake.
    var earlyRejected = false

    init(id: Int64) {
        self.id = id
    }

    func failReader(_ error: HTTPError) {
        // A body that arrived complete stays readable (RFC 9114, 4.1.1: never discard a
        // complete response because the request side failed).
        if readError == nil && !receivedEnd { readError = error }
        if let reader {
            self.reader = nil
            reader.resume(throwing: error)
        }
        if let headWaiter {
            self.headWaiter = nil
            headWaiter.resume(throwing: error)
        }
        let waiters = trailerWaiters
        trailerWaiters.removeAll()
        waiters.forEach { $0.resume(throwing: error) }
    }

    func failWriters(_ error: HTTPError) {
        if writeError == nil { writeError = error }
        let waiting = writers
        writers.removeAll()
        waiting.forEach { $0.resume(throwing: error) }
    }
}

/// The received body of a request or response, pulled from a ``RequestStream``.
struct HTTP3BodySource: HTTPBodySource {
    let stream: RequestStream
    let session: HTTP3Session

    func next() async throws -> ByteBuffer? {
        let stream = self.stream, session = self.session
        if Task.isCancelled {
            // Cancelled between reads: the stream must still be cancelled on the wire.
            session.eventLoop.execute { session.cancelReading(stream, error: .streamReset(code: HTTP3ErrorCode.requestCancelled)) }
            throw CancellationError()
        }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                session.onLoop { session.read(stream, continuation: continuation) }
            }
        } onCancel: {
            session.eventLoop.execute { session.cancelReading(stream, error: .streamReset(code: HTTP3ErrorCode.requestCancelled)) }
        }
    }

    func trailers() async throws -> HTTPFields? {
        let stream = self.stream, session = self.session
        return try await withCheckedThrowingContinuation { continuation in
            session.onLoop { session.trailers(stream, continuation: continuation) }
        }
    }

    func cancel() {
        let stream = self.stream, session = self.session
        // A server that does not want the rest of a request says H3_NO_ERROR; a client that
        // abandons a response cancels the request.
        let code: UInt64 = session.role == .server ? HTTP3ErrorCode.noError : HTTP3ErrorCode.requestCancelled
        session.eventLoop.execute { session.cancelReading(stream, error: .streamReset(code: code), code: code) }
    }
}

/// Sends a message on a ``RequestStream``: head, body with backpressure, trailers.
struct HTTP3MessageWriter: Sendable {
    let stream: RequestStream
    let session: HTTP3Session

    func write(_ buffer: ByteBuffer) async throws {
        var remaining = buffer
        repeat {
            try Task.checkCancellation()
            let chunk = remaining.readSlice(length: min(64 << 10, remaining.readableBytes)) ?? ByteBuffer()
            let stream = self.stream, session = self.session
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                session.onLoop { session.write(stream, chunk, continuation: continuation) }
            }
        } while remaining.readableBytes > 0
    }

    func finish(trailers: HTTPFields?) async throws {
        let stream = self.stream, session = self.session
        try await session.onLoop { () throws(HTTPError) in try session.finish(stream, trailers: trailers) }
    }

    func reset(code: UInt64) {
        let stream = self.stream, session = self.session
        session.eventLoop.execute { session.reset(stream, code: code) }
    }

    /// Resets only the sending side; what the peer sends can still be read.
    func resetWriting(code: UInt64) {
        let stream = self.stream, session = self.session
        session.eventLoop.execute { session.resetWriting(stream, code: code) }
    }
}

/// The server's response writer for one request.
/// `@unchecked Sendable`: `headSent` and `finished` are touched only by the task that runs
/// the handler (and then ``HTTPHandler/run``); the writer is Sendable.
final class HTTP3ResponseSink: HandlerResponseSink, @unchecked Sendable {
    let writer: HTTP3MessageWriter
    let isHead: Bool
    /// Touched only by the handler's task.
    private(set) var headSent = false
    private(set) var finished = false
    /// The final response's status code, once its head is sent (for the server's metrics).
    private(set) var responseStatus: Int?

    init(writer: HTTP3MessageWriter, isHead: Bool) {
        self.writer = writer
        self.isHead = isHead
    }

    /// Resets the stream (H3_INTERNAL_ERROR): the handler failed after the head.
    func abort() async {
        writer.reset(code: HTTP3ErrorCode.internalError)
    }

    func writeHead(_ head: HTTPResponse) async throws {
        guard !headSent else { throw HTTPError.responseHeadAlreadySent }
        guard !finished else { throw HTTPError.responseFinished }
        let stream = writer.stream, session = writer.session
        if head.status.kind == .informational {
            // 1xx (103 Early Hints, ...): sent at once; the final head follows.
            try await session.onLoop { () throws(HTTPError) in try session.submitInformational(stream, head: head) }
            return
        }
        headSent = true
        responseStatus = head.status.code
        try await session.onLoop { () throws(HTTPError) in try session.submitResponse(stream, head: head) }
    }

    func writeBody(_ buffer: ByteBuffer) async throws {
        guard !finished else { throw HTTPError.responseFinished }
        if !headSent { try await writeHead(HTTPResponse(status: .ok)) }
        // A response to HEAD carries no body (RFC 9110, 9.3.2): the bytes are dropped.
        if isHead { return }
        try await writer.write(buffer)
    }

    func finish(trailers: HTTPFields?) async throws {
        guard !finished else { return }
        if !headSent { try await writeHead(HTTPResponse(status: .ok)) }
        finished = true
        try await writer.finish(trailers: trailers)
    }

    /// Head, body and end in one hand-off to the event loop (three otherwise), when the body
    /// fits the stream's send buffer; a larger one goes the streamed way, with backpressure.
    func respond(_ head: HTTPResponse, body: ByteBuffer, trailers: HTTPFields?) async throws {
        guard !headSent else { throw HTTPError.responseHeadAlreadySent }
        guard !finished else { throw HTTPError.responseFinished }
        let stream = writer.stream, session = writer.session
        guard head.status.kind != .informational, body.readableBytes <= session.settings.sendBufferLimit else {
            try await respondInSteps(head, body: body, trailers: trailers)
            return
        }
        headSent = true
        finished = true
        responseStatus = head.status.code
        let body = isHead ? ByteBuffer() : body
        try await session.onLoop { () throws(HTTPError) in
            try session.respond(stream, head: head, body: body, trailers: trailers)
        }
    }
}
