import HTTPAPI
import HTTPTypes
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHPACK
import NIOHTTP2

/// The body of an HTTP/2 message as it arrives on a stream: DATA frames, then optional
/// trailers. Read by one task at a time; reading is what opens the stream's flow-control window.
final class HTTP2BodySource: HTTPBodySource, @unchecked Sendable {
    private let reader: InboundReader<HTTP2Frame.FramePayload>
    private let lock = NIOLock()
    private var _ended: Bool
    private var _trailers: HTTPFields?
    private var failure: (any Error)?
    private var endReported = false
    /// Frames fetched from the reader in one batch, not handed out yet (the reading task's own).
    private var fetched = CircularBuffer<HTTP2Frame.FramePayload>()
    private let onEnd: (@Sendable () -> Void)?
    private let onCancel: @Sendable () -> Void

    /// - Parameters:
    ///   - ended: the head carried END_STREAM (no body).
    ///   - onEnd: called once, when the body was read to its end, failed or was cancelled.
    ///   - onCancel: the reader gave up on the rest of the body.
    init(reader: InboundReader<HTTP2Frame.FramePayload>, ended: Bool, onEnd: (@Sendable () -> Void)? = nil,
         onCancel: @escaping @Sendable () -> Void) {
        self.reader = reader
        self._ended = ended
        self.onEnd = onEnd
        self.onCancel = onCancel
        if ended { reportEnd() }
    }

    deinit {
        // A body dropped unread: release its stream.
        if !lock.withLock({ endReported }) {
            onCancel()
            onEnd?()
        }
    }

    /// Whether the whole body (END_STREAM) arrived.
    var ended: Bool { lock.withLock { _ended } }

    private func reportEnd() {
        let first = lock.withLock { () -> Bool in
            defer { endReported = true }
            return !endReported
        }
        if first { onEnd?() }
    }

    func next() async throws -> ByteBuffer? {
        while true {
            let (ended, failure) = lock.withLock { (_ended, self.failure) }
            if let failure { throw failure }
            if ended { return nil }
            let frame: HTTP2Frame.FramePayload?
            do {
                // A cancelled reader resets the stream (the peer sees CANCEL).
                try Task.checkCancellation()
                if fetched.isEmpty {
                    // Everything that arrived so far, in one hop to the event loop.
                    let batch = try await withTaskCancellationHandler {
                        try await reader.nextBatch()
                    } onCancel: { [onCancel] in
                        onCancel()
                    }
                    fetched.append(contentsOf: batch)
                }
                frame = fetched.popFirst()
                try Task.checkCancellation()
            } catch is CancellationError {
                onCancel()
                throw fail(CancellationError())
            } catch {
                throw fail(HTTP2Errors.map(error))
            }
            guard let frame else {
                throw fail(HTTPError.connectionClosed("the stream closed before the end of the body"))
            }
            switch frame {
            case .data(let data):
                guard case .byteBuffer(let buffer) = data.data else { continue }
                if data.endStream { finishBody(trailers: nil) }
                if buffer.readableBytes > 0 { return buffer }
            case .headers(let headers):
                do {
                    finishBody(trailers: try HeaderConversion.trailers(headers.headers))
                } catch {
                    throw fail(error)
                }
            default:
                continue
            }
        }
    }

    private func finishBody(trailers: HTTPFields?) {
        lock.withLock {
            _ended = true
            _trailers = trailers
        }
        reportEnd()
    }

    private func fail(_ error: any Error) -> any Error {
        lock.withLock { failure = error }
        reportEnd()
        return error
    }

    func trailers() async throws -> HTTPFields? {
        lock.withLock { _trailers }
    }

    func cancel() {
        let wasOpen = lock.withLock { () -> Bool in
            guard !_ended && failure == nil else { return false }
            failure = HTTPError.bodyAlreadyConsumed
            return true
        }
        if wasOpen { onCancel() }
        reportEnd()
    }
}

/// HTTP/2-specific error mapping.
enum HTTP2Errors {
    /// The HTTP/3 equivalent of an HTTP/2 RST_STREAM code (RFC 9114, appendix A.4), so that
    /// ``HTTPError/streamReset(code:)`` means the same on both transports.
    static func http3Code(_ code: NIOHTTP2.HTTP2ErrorCode) -> UInt64 {
        switch code {
        case .noError: return HTTP3ErrorCode.noError
        case .internalError: return HTTP3ErrorCode.internalError
        case .refusedStream: return HTTP3ErrorCode.requestRejected
        case .cancel: return HTTP3ErrorCode.requestCancelled
        case .frameSizeError: return HTTP3ErrorCode.frameError
        case .compressionError: return 0x200  // QPACK_DECOMPRESSION_FAILED
        case .connectError: return HTTP3ErrorCode.connectError
        case .enhanceYourCalm: return HTTP3ErrorCode.excessiveLoad
        case .http11Required: return HTTP3ErrorCode.versionFallback
        default: return HTTP3ErrorCode.generalProtocolError
        }
    }

    /// A NIO or NIOHTTP2 error as an ``HTTPError``.
    static func map(_ error: any Error) -> any Error {
        switch error {
        case let error as HTTPError: return error
        case let closed as NIOHTTP2Errors.StreamClosed:
            return HTTPError.streamReset(code: http3Code(closed.errorCode))
        case is CancellationError: return error
        case let channelError as ChannelError:
            switch channelError {
            case .ioOnClosedChannel, .alreadyClosed, .eof: return HTTPError.connectionClosed("the stream or connection closed")
            default: return HTTPError.connectionClosed("\(channelError)")
            }
        default:
            return HTTPError.connectionClosed("\(error)")
        }
    }
}

/// Writes a response on an HTTP/2 stream.
/// `@unchecked Sendable`: `headSent` and `finished` are touched only by the task that runs
/// the handler (and then ``HTTPHandler/run``); the writer and reader are Sendable.
final class HTTP2ResponseSink: HandlerResponseSink, @unchecked Sendable {
    let writer: BoundedWriter
    let reader: InboundReader<HTTP2Frame.FramePayload>
    let isHead: Bool
    let extraHeaders: HTTPFields
    /// Touched only by the handler's task.
    private(set) var headSent = false
    private(set) var finished = false
    private(set) var responseStatus: Int?

    init(writer: BoundedWriter, reader: InboundReader<HTTP2Frame.FramePayload>, isHead: Bool, extraHeaders: HTTPFields) {
        self.writer = writer
        self.reader = reader
        self.isHead = isHead
        self.extraHeaders = extraHeaders
    }

    /// `head` with the server's extra header fields it does not set itself.
    private func withExtraHeaders(_ head: HTTPResponse) -> HTTPResponse {
        var head = head
        for field in extraHeaders where head.headerFields[field.name] == nil { head.headerFields.append(field) }
        return head
    }

    /// A write failure, explained by the peer's reset when there was one.
    private func failure(_ error: any Error) -> any Error {
        HTTP2Errors.map(reader.closeReason.withLockedValue { $0 } ?? error)
    }

    private func send(_ payload: HTTP2Frame.FramePayload) async throws {
        do {
            try await writer.write(payload)
        } catch {
            throw failure(error)
        }
    }

    func writeHead(_ head: HTTPResponse) async throws {
        guard !headSent else { throw HTTPError.responseHeadAlreadySent }
        guard !finished else { throw HTTPError.responseFinished }
        let head = withExtraHeaders(head)
        if head.status.kind != .informational { headSent = true; responseStatus = head.status.code }
        try await send(.headers(.init(headers: HeaderConversion.headers(head), endStream: false)))
    }

    func writeBody(_ buffer: ByteBuffer) async throws {
        guard !finished else { throw HTTPError.responseFinished }
        if !headSent { try await writeHead(HTTPResponse(status: .ok)) }
        if isHead || buffer.readableBytes == 0 { return }
        try await send(.data(.init(data: .byteBuffer(buffer), endStream: false)))
    }

    func finish(trailers: HTTPFields?) async throws {
        guard !finished else { return }
        if !headSent { try await writeHead(HTTPResponse(status: .ok)) }
        finished = true
        if let trailers, !trailers.isEmpty, !isHead {
            try await send(.headers(.init(headers: HeaderConversion.headers(trailers), endStream: true)))
        } else {
            try await send(.data(.init(data: .byteBuffer(ByteBuffer()), endStream: true)))
        }
        do { try await writer.drain() } catch { throw failure(error) }
    }

    /// Head, body and end written in one hand-off to the event loop (three otherwise).
    func respond(_ head: HTTPResponse, body: ByteBuffer, trailers: HTTPFields?) async throws {
        guard !headSent else { throw HTTPError.responseHeadAlreadySent }
        guard !finished else { throw HTTPError.responseFinished }
        guard head.status.kind != .informational else {
            try await respondInSteps(head, body: body, trailers: trailers)
            return
        }
        let head = withExtraHeaders(head)
        headSent = true
        responseStatus = head.status.code
        finished = true
        let sendsBody = !isHead && body.readableBytes > 0
        let trailers = isHead ? nil : trailers.flatMap { $0.isEmpty ? nil : $0 }
        var frames: [HTTP2Frame.FramePayload] = [
            .headers(.init(headers: HeaderConversion.headers(head), endStream: !sendsBody && trailers == nil)),
        ]
        if sendsBody { frames.append(.data(.init(data: .byteBuffer(body), endStream: trailers == nil))) }
        if let trailers { frames.append(.headers(.init(headers: HeaderConversion.headers(trailers), endStream: true))) }
        do {
            try await writer.write(all: frames)
            try await writer.drain()
        } catch {
            throw failure(error)
        }
    }

    func abort() async {
        finished = true
        try? await writer.write(HTTP2Frame.FramePayload.rstStream(.internalError))
    }
}

/// Serves one HTTP/2 request stream.
enum HTTP2ServerStream {
    /// Prepares a new inbound stream channel and starts serving it (on the stream's event loop).
    static func start(on channel: any Channel, state: HTTP2ServerState, facts: ConnectionFacts) throws {
        try channel.syncOptions?.setOption(ChannelOptions.autoRead, value: false)
        let reader = InboundReader<HTTP2Frame.FramePayload>(eventLoop: channel.eventLoop)
        try channel.pipeline.syncOperations.addHandler(reader)
        state.configuration.handlerExecution.startTask(on: EventLoopTaskExecutor(channel.eventLoop)) {
            await serve(channel, reader: reader, state: state, facts: facts)
        }
    }

    private static func serve(_ channel: any Channel, reader: InboundReader<HTTP2Frame.FramePayload>,
                              state: HTTP2ServerState, facts: ConnectionFacts) async {
        let writer = BoundedWriter(channel: channel)
        guard case .headers(let headers)? = try? await reader.next() else {
            channel.close(promise: nil)
            return
        }
        state.count { $0.requests += 1 }
        if HeaderConversion.listSize(headers.headers) > state.configuration.maxHeaderListSize {
            var fields = HPACKHeaders()
            fields.add(name: ":status", value: "431")
            fields.add(name: "content-length", value: "0")
            try? await writer.write(HTTP2Frame.FramePayload.headers(.init(headers: fields, endStream: true)))
            try? await writer.drain()
            if !headers.endStream { try? await writer.write(HTTP2Frame.FramePayload.rstStream(.noError)) }
            return
        }
        let request: HTTPRequest
        do {
            request = try HeaderConversion.request(headers.headers)
        } catch {
            try? await writer.write(HTTP2Frame.FramePayload.rstStream(.protocolError))
            return
        }
        let source = HTTP2BodySource(reader: reader, ended: headers.endStream, onCancel: {})
        let length = request.headerFields[.contentLength].flatMap { Int64($0) }
        let sink = HTTP2ResponseSink(writer: writer, reader: reader, isHead: request.method == .head,
                                     extraHeaders: state.configuration.responseHeaders)
        await state.run(request, body: HTTPBody(source: source, length: length), context: facts.context(.http2), sink: sink)
        // The response is complete: the rest of an unread request body is not needed.
        if sink.finished && !source.ended {
            try? await writer.write(HTTP2Frame.FramePayload.rstStream(.noError))
        }
    }
}

extension HTTP2ServerState {
    /// Runs the handler for one request with the servers' shared policy (``HTTPHandler/run``):
    /// a handler that throws before the head yields a 500, after the head an abort (stream reset).
    func run(_ request: HTTPRequest, body: HTTPBody, context: HTTPRequestContext, sink: some HandlerResponseSink) async {
        let logger = self.logger
        metrics?.requestStarted(context.protocolVersion)
        defer { metrics?.requestFinished(context.protocolVersion, status: sink.responseStatus) }
        await handler.run(request, body: body, context: context, sink: sink) { error in
            logger.debug("handler failed", metadata: ["path": "\(request.path ?? "")", "error": "\(error)"])
        }
    }
}
