import HTTPAPI
import HTTPTypes
import Logging
import NIOCore
import QUIC
import QUICSocket

/// Hears about new requests (server) and the end of the connection.
protocol HTTP3SessionDelegate: AnyObject, Sendable {
    /// A request head arrived (server). Called on the event loop, after the C call returned.
    func session(_ session: HTTP3Session, didReceiveRequest stream: RequestStream, head: HTTPRequest)
    /// The connection is closed.
    func sessionDidClose(_ session: HTTP3Session, error: QUICError?)
}

/// One HTTP/3 connection, run as the QUIC connection's application protocol: the driver on
/// the event loop. It feeds what happens into its ``HTTP3SessionStateMachine`` (the rules),
/// carries out the actions that come back through its ``NGHTTP3Connection`` (the only owner
/// of the `nghttp3_conn`) and the ``ConnectionCore``, and resumes the continuations of the
/// tasks that wait on requests and bodies.
///
/// Files: this one (creation, client requests, server responses, shutdown),
/// `HTTP3Session+BodyIO.swift` (reading and writing bodies), `HTTP3Session+Events.swift`
/// (nghttp3 callbacks and the ``QUICApplicationProtocol`` events).
///
/// `@unchecked Sendable`: confined to the connection's event loop; every method that touches
/// its state runs there (callers hop with ``onLoop(_:)`` or `eventLoop.execute`).
final class HTTP3Session: QUICApplicationProtocol, @unchecked Sendable {
    typealias Role = HTTP3SessionStateMachine<RequestWaiter>.Role
    typealias RequestWaiter = CheckedContinuation<RequestStream, any Error>

    /// Strong: bodies and writers may outlive the connection; the cycle core -> application ->
    /// core is broken when the connection finishes (it drops its application).
    let core: ConnectionCore
    let role: Role
    let settings: HTTP3Settings
    let logger: Logger
    let eventLoop: any EventLoop
    /// `nil` only while it is replaced after refused early data, or if that failed.
    var h3: NGHTTP3Connection?
    /// The rules: stream table, pending requests, GOAWAY, early data, header limits.
    var state: HTTP3SessionStateMachine<RequestWaiter>
    /// The I/O side of each open request stream (buffers and waiting continuations).
    var streams: [Int64: RequestStream] = [:]
    weak var delegate: (any HTTP3SessionDelegate)?
    /// Called (on the loop) when the connection becomes unusable for new requests.
    var onDrain: (() -> Void)?

    var statistics: HTTP3SessionStatistics { state.statistics }
    /// Client: the server's GOAWAY stream ID; requests at or above it were not processed.
    var goawayID: Int64? { state.goawayID }
    /// Server: shutting down gracefully.
    var shuttingDown: Bool { state.shuttingDown }
    var closeError: QUICError? { state.closeError }
    var isClosed: Bool { state.isClosed }

    init(core: ConnectionCore, role: Role, settings: HTTP3Settings, maxIncomingStreams: UInt64, logger: Logger) throws(QUICError) {
        self.core = core
        self.eventLoop = core.eventLoop
        self.role = role
        self.settings = settings
        self.logger = logger
        self.state = HTTP3SessionStateMachine(role: role, maxHeaderSectionSize: settings.maxHeaderSectionSize)
        h3 = try NGHTTP3Connection(role: role, settings: settings, session: self)
        if role == .server { h3?.setMaxClientBidirectionalStreams(maxIncomingStreams) }
    }

    // MARK: - Client operations

    /// Opens a request stream and submits the head at once if the peer's stream limit allows,
    /// otherwise when it next rises. Requests are served in order. While the connection is in
    /// 0-RTT, a request that may not go early (`mayUseEarlyData` false) waits for the handshake.
    func startRequest(_ head: HTTPRequest, hasBody: Bool, mayUseEarlyData: Bool = false, token: UInt64,
                      continuation: RequestWaiter) {
        let pending = HTTP3SessionStateMachine<RequestWaiter>.PendingRequest(
            token: token, head: head, hasBody: hasBody, mayUseEarlyData: mayUseEarlyData, waiter: continuation)
        switch state.startRequest(pending) {
        case .fail(let waiter, let error): waiter.resume(throwing: error)
        case .queued: submitPendingRequests()
        }
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
        state.earlyDataStarted()
        core.scheduleWrite()
        return true
    }

    /// The task waiting for a stream slot was cancelled: it leaves the line.
    func cancelPendingRequest(token: UInt64) {
        state.cancelPendingRequest(token: token)?.resume(throwing: CancellationError())
    }

    /// A number identifying one waiting request (for cancellation).
    func makeRequestToken() -> UInt64 { state.makeRequestToken() }

    func submitPendingRequests() {
        let early = core.isSendingEarlyData
        let ready = state.requestsToSubmit(streamsLeft: core.streamsLeft(bidirectional: true), sendingEarlyData: early)
        for pending in ready {
            do throws(HTTPError) {
                let stream = try submitRequest(pending.head, hasBody: pending.hasBody)
                state.requestSubmitted(streamID: stream.id, early: early)
                pending.waiter.resume(returning: stream)
            } catch {
                pending.waiter.resume(throwing: error)
            }
        }
    }

    /// Counts a request sent again after refused early data or a 425 (for statistics).
    func countRetry(tooEarly: Bool) { state.countRetry(tooEarly: tooEarly) }

    /// Whether a new request can be sent at once (pool choice).
    var acceptsRequests: Bool { state.acceptsRequests && core.isOpen }

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
        state.requestStreamOpened(id)
        var fields: [(String, String)] = [(":method", head.method.rawValue)]
        if let scheme = head.scheme { fields.append((":scheme", scheme)) }
        if let authority = head.authority { fields.append((":authority", authority)) }
        if let path = head.path { fields.append((":path", path)) }
        for field in head.headerFields { fields.append((field.name.canonicalName, field.value)) }
        let rv = h3.submitRequest(streamID: id, fields: fields, hasBody: hasBody)
        guard rv == 0 else {
            streams[id] = nil
            state.requestSubmissionFailed(id)
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
        -> (NGHTTP3Connection, [(String, String)]) {
        guard !isClosed else { throw httpError(closeError) }
        if let error = stream.writeError { throw error }
        // A response to a request that came in 0-RTT can be ready before the handshake
        // completes (0.5-RTT): nghttp3 needs its control and QPACK streams first.
        if !state.controlStreamsBound {
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
        let rv = h3.submitResponse(streamID: stream.id, fields: fields)
        guard rv == 0 else { throw .invalidRequest("nghttp3 rejected the response: \(nghttp3Message(rv))") }
        stream.headSent = true
        core.scheduleWrite()
    }

    /// An informational (1xx) response head, before the final one.
    func submitInformational(_ stream: RequestStream, head: HTTPResponse) throws(HTTPError) {
        guard !stream.headSent else { throw .responseHeadAlreadySent }
        // 101 has no meaning in HTTP/3 (RFC 9114, 4.5): refused rather than sent.
        guard head.status.kind == .informational, head.status.code != 101 else {
            throw .invalidRequest("status \(head.status.code) cannot be sent as an informational response in HTTP/3")
        }
        let (h3, fields) = try prepareResponseHead(stream, head)
        let rv = h3.submitInformational(streamID: stream.id, fields: fields)
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

    /// Server: stop taking new requests (GOAWAY), finish the ones in flight, then close.
    func beginGracefulShutdown() {
        guard h3 != nil else { return }
        // Before the handshake completed there is no control stream to carry GOAWAY (nghttp3
        // asserts on it): the GOAWAY goes out as soon as the handshake binds it.
        if state.beginGracefulShutdown() { sendGoAway() }
    }

    /// The two GOAWAYs of a graceful shutdown (the control stream is bound).
    private func sendGoAway() {
        guard let h3, !isClosed else { return }
        state.goawayNoticeSent()
        // A first GOAWAY announces the shutdown; the final one (with the last stream we will
        // serve) follows a round trip later, so requests already on their way are not lost.
        h3.submitShutdownNotice()
        core.scheduleWrite()
        let delay = TimeAmount.milliseconds(100)
        eventLoop.scheduleTask(in: delay) { [self] in
            guard let h3 = self.h3, !isClosed else { return }
            h3.shutdown()
            core.scheduleWrite()
            closeIfDrained()
        }
    }

    func closeIfDrained() {
        if state.shouldCloseAfterDrain { closeConnection(code: HTTP3ErrorCode.noError) }
    }

    /// Closes the connection after the current call into ngtcp2/nghttp3 has returned (closing
    /// from inside their callbacks is not allowed).
    func closeConnection(code: UInt64) {
        let core = self.core
        eventLoop.execute { core.close(applicationError: code, reason: "") }
    }

    /// Opens the control stream and the QPACK encoder and decoder streams (RFC 9114, 6.2).
    func bindControlStreams() throws(QUICError) {
        guard let h3 else { return }
        guard let control = try core.openStream(bidirectional: false),
              let encoder = try core.openStream(bidirectional: false),
              let decoder = try core.openStream(bidirectional: false) else {
            throw QUICError.internalError("the peer allows too few unidirectional streams for HTTP/3")
        }
        guard h3.bindControlStreams(control: control, encoder: encoder, decoder: decoder) else {
            throw QUICError.internalError("nghttp3 could not bind its streams")
        }
        // A shutdown that began before the control stream existed sends its GOAWAY now.
        if state.controlStreamsDidBind(encoderStreamID: encoder) { sendGoAway() }
    }

    /// Fails every request still waiting for a stream.
    func failPendingRequests(_ waiters: [RequestWaiter], _ error: HTTPError) {
        waiters.forEach { $0.resume(throwing: error) }
    }
}
