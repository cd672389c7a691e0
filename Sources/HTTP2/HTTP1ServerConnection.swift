import HTTPAPI
import HTTPTypes
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1

/// Serves an HTTP/1.1 connection (a client that did not offer h2): one request at a time,
/// keep-alive, the same handler and response semantics as HTTP/2.
final class HTTP1ServerConnection: Sendable {
    let channel: any Channel
    private let reader: InboundReader<HTTPServerRequestPart>
    private let state: HTTP2ServerState
    private let facts: ConnectionFacts
    private struct Flags {
        var draining = false
        var busy = false
    }
    private let flags = NIOLockedValueBox(Flags())

    private init(channel: any Channel, reader: InboundReader<HTTPServerRequestPart>, state: HTTP2ServerState,
                 facts: ConnectionFacts) {
        self.channel = channel
        self.reader = reader
        self.state = state
        self.facts = facts
    }

    /// Adds the request reader to a channel whose HTTP/1.1 codec is in place, and starts serving.
    static func start(on channel: any Channel, state: HTTP2ServerState, facts: ConnectionFacts,
                      before position: some ChannelHandler) throws -> HTTP1ServerConnection {
        let reader = InboundReader<HTTPServerRequestPart>(eventLoop: channel.eventLoop)
        try channel.syncOptions?.setOption(ChannelOptions.autoRead, value: false)
        try channel.pipeline.syncOperations.addHandler(reader, position: .before(position))
        let connection = HTTP1ServerConnection(channel: channel, reader: reader, state: state, facts: facts)
        state.configuration.handlerExecution.startTask(on: EventLoopTaskExecutor(channel.eventLoop)) {
            await connection.run()
        }
        return connection
    }

    /// Closes the connection once the request in flight (if any) is answered.
    func drain() {
        let idle = flags.withLockedValue { flags -> Bool in
            flags.draining = true
            return !flags.busy
        }
        if idle { channel.close(promise: nil) }
    }

    private func run() async {
        defer { channel.close(promise: nil) }
        let writer = BoundedWriter(channel: channel)
        while true {
            // An idle connection (no request begun) closes after the idle timeout.
            let idleTimer = state.configuration.idleTimeout.map { timeout in
                channel.eventLoop.scheduleTask(in: TimeAmount(timeout)) { [channel] in channel.close(promise: nil) }
            }
            let next = try? await reader.next()
            idleTimer?.cancel()
            guard let part = next else { return }
            guard case .head(let head) = part else { continue }
            let draining = flags.withLockedValue { flags -> Bool in
                flags.busy = true
                return flags.draining
            }
            state.count { $0.requests += 1 }
            var headerSize = head.uri.utf8.count
            for (name, value) in head.headers { headerSize += name.utf8.count + value.utf8.count + 32 }
            guard headerSize <= state.configuration.maxHeaderListSize,
                  let request = try? HeaderConversion.request(head) else {
                let status: HTTPResponseStatus = headerSize > state.configuration.maxHeaderListSize
                    ? .requestHeaderFieldsTooLarge : .badRequest
                var headers = HTTPHeaders()
                headers.add(name: "content-length", value: "0")
                headers.add(name: "connection", value: "close")
                try? await writer.write(HTTPServerResponsePart.head(HTTPResponseHead(version: head.version, status: status,
                                                                                     headers: headers)))
                try? await writer.write(HTTPServerResponsePart.end(nil))
                try? await writer.drain()
                return
            }
            let keepAlive = head.isKeepAlive && !draining
            let source = HTTP1BodySource(reader: reader)
            let length = request.headerFields[.contentLength].flatMap { Int64($0) }
            let sink = HTTP1ResponseSink(writer: writer, version: head.version, isHead: request.method == .head,
                                         keepAlive: keepAlive, extraHeaders: state.configuration.responseHeaders,
                                         channel: channel)
            await state.run(request, body: HTTPBody(source: source, length: length),
                            context: facts.context(.http1_1), sink: sink)
            // The rest of a request body the handler did not read is skipped (up to 1 MiB; a
            // larger rest closes the connection rather than reading it).
            guard sink.finished, !sink.aborted, sink.keepAlive, await source.skipRest(limit: 1 << 20) else { return }
            let stop = flags.withLockedValue { flags -> Bool in
                flags.busy = false
                return flags.draining
            }
            if stop { return }
        }
    }
}

/// A request body on an HTTP/1.1 connection: body parts up to the end part (with trailers).
/// `@unchecked Sendable`: its mutable members are read and written under `lock`.
final class HTTP1BodySource: HTTPBodySource, @unchecked Sendable {
    private let reader: InboundReader<HTTPServerRequestPart>
    private let lock = NIOLock()
    private var _ended = false
    private var _trailers: HTTPFields?
    private var failure: (any Error)?
    private var cancelled = false

    init(reader: InboundReader<HTTPServerRequestPart>) {
        self.reader = reader
    }

    var ended: Bool { lock.withLock { _ended } }

    func next() async throws -> ByteBuffer? {
        if lock.withLock({ cancelled }) { throw HTTPError.bodyAlreadyConsumed }
        return try await readChunk()
    }

    /// The next body bytes from the connection, `nil` at the end of the body.
    private func readChunk() async throws -> ByteBuffer? {
        while true {
            let (ended, failure) = lock.withLock { (_ended, self.failure) }
            if let failure { throw failure }
            if ended { return nil }
            let part: HTTPServerRequestPart?
            do {
                part = try await reader.next()
            } catch {
                throw fail(HTTPError.connectionClosed("\(error)"))
            }
            switch part {
            case .body(let buffer)?:
                if buffer.readableBytes > 0 { return buffer }
            case .end(let trailers)?:
                var fields: HTTPFields?
                if let trailers {
                    var converted = HTTPFields()
                    for (name, value) in trailers {
                        if let fieldName = HTTPField.Name(name) { converted.append(HTTPField(name: fieldName, value: value)) }
                    }
                    fields = converted
                }
                lock.withLock {
                    _ended = true
                    _trailers = fields
                }
                return nil
            case .head?:
                throw fail(HTTPError.protocolError("a request head inside a body"))
            case nil:
                throw fail(HTTPError.connectionClosed("the connection closed before the end of the body"))
            }
        }
    }

    private func fail(_ error: any Error) -> any Error {
        lock.withLock { failure = error }
        return error
    }

    func trailers() async throws -> HTTPFields? { lock.withLock { _trailers } }

    func cancel() {
        lock.withLock { cancelled = true }
    }

    /// Reads and drops what is left of the body, up to `limit` bytes; whether the body ended
    /// cleanly, so that the connection can carry the next request.
    func skipRest(limit: Int) async -> Bool {
        var skipped = 0
        while skipped <= limit {
            do {
                guard let chunk = try await readChunk() else { return true }
                skipped += chunk.readableBytes
            } catch {
                return false
            }
        }
        return false
    }
}

/// Writes a response on an HTTP/1.1 connection (chunked when the length is not known).
/// `@unchecked Sendable`: its flags are touched only by the task that runs the handler (and
/// then the connection's loop over requests, after it); the writer and channel are Sendable.
final class HTTP1ResponseSink: HandlerResponseSink, @unchecked Sendable {
    let writer: BoundedWriter
    let version: HTTPVersion
    let isHead: Bool
    private(set) var keepAlive: Bool
    let extraHeaders: HTTPFields
    let channel: any Channel
    private(set) var headSent = false
    private(set) var finished = false
    private(set) var aborted = false
    private(set) var responseStatus: Int?

    init(writer: BoundedWriter, version: HTTPVersion, isHead: Bool, keepAlive: Bool, extraHeaders: HTTPFields,
         channel: any Channel) {
        self.writer = writer
        self.version = version
        self.isHead = isHead
        self.keepAlive = keepAlive
        self.extraHeaders = extraHeaders
        self.channel = channel
    }

    private func send(_ part: HTTPServerResponsePart) async throws {
        do {
            try await writer.write(part)
        } catch {
            throw HTTPError.connectionClosed("\(error)")
        }
    }

    func writeHead(_ head: HTTPResponse) async throws {
        guard !headSent else { throw HTTPError.responseHeadAlreadySent }
        guard !finished else { throw HTTPError.responseFinished }
        var head = head
        for field in extraHeaders where head.headerFields[field.name] == nil { head.headerFields.append(field) }
        if head.headerFields[.connection]?.lowercased() == "close" { keepAlive = false }
        if !keepAlive { head.headerFields[.connection] = "close" }
        if head.status.kind != .informational { headSent = true; responseStatus = head.status.code }
        try await send(.head(HeaderConversion.head(head, version: version)))
    }

    func writeBody(_ buffer: ByteBuffer) async throws {
        guard !finished else { throw HTTPError.responseFinished }
        if !headSent { try await writeHead(HTTPResponse(status: .ok)) }
        if isHead || buffer.readableBytes == 0 { return }
        try await send(.body(.byteBuffer(buffer)))
    }

    func finish(trailers: HTTPFields?) async throws {
        guard !finished else { return }
        if !headSent { try await writeHead(HTTPResponse(status: .ok)) }
        finished = true
        let fields = trailers.flatMap { $0.isEmpty || isHead ? nil : HeaderConversion.http1Fields($0) }
        try await send(.end(fields))
        do { try await writer.drain() } catch { throw HTTPError.connectionClosed("\(error)") }
    }

    func abort() async {
        finished = true
        aborted = true
        try? await channel.close()
    }
}
