import HTTPAPI
import HTTPTypes
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHPACK
import NIOHTTP2
import NIOPosix
import NIOSSL
import NIOTLS
import QUIC

/// One pooled HTTP/2 client connection (TCP + TLS), multiplexing request streams.
final class HTTP2ClientConnection: PooledConnection {
    let channel: any Channel
    let multiplexer: NIOHTTP2Handler.StreamMultiplexer
    let info: HTTPConnectionInfo
    let idleTimeout: Duration
    let permits: StreamPermits
    private let state: NIOLockedValueBox<State>

    struct State {
        var usable = true
        /// The last-stream-ID of the lowest GOAWAY received.
        var goAwayLastStreamID: Int?
        var inFlight = 0
        var idleTimer: Scheduled<Void>?
    }

    private init(channel: any Channel, multiplexer: NIOHTTP2Handler.StreamMultiplexer, info: HTTPConnectionInfo,
                 idleTimeout: Duration, maxStreams: Int, state: NIOLockedValueBox<State>) {
        self.channel = channel
        self.multiplexer = multiplexer
        self.info = info
        self.idleTimeout = idleTimeout
        self.permits = StreamPermits(maxStreams)
        self.state = state
    }

    var isUsable: Bool { state.withLockedValue { $0.usable } }

    static func connect(origin: HTTP2Origin, transport: HTTP2Transport) async throws -> HTTP2ClientConnection {
        let configuration = transport.configuration
        let sslContext = try transport.sslContext()
        let address = configuration.resolve["\(origin.host):\(origin.port)"] ?? origin.host
        let name = configuration.tls.serverName ?? origin.host
        // SNI carries host names only, never IP literals (RFC 6066, section 3).
        let isIPLiteral = (try? SocketAddress(ipAddress: name, port: 0)) != nil
        let serverName = isIPLiteral ? nil : name
        let waiter = HandshakeWaiter()
        let state = NIOLockedValueBox(State())
        let permitsBox = NIOLockedValueBox<StreamPermits?>(nil)
        let multiplexerBox = NIOLockedValueBox<NIOHTTP2Handler.StreamMultiplexer?>(nil)
        let permits = max(1, configuration.maxConcurrentStreams)
        let window = configuration.initialWindowSize
        let logger = transport.logger
        // The whole pipeline goes in at once: the server's SETTINGS follow its last handshake
        // bytes at once, and the HTTP/2 handler must be there to read them.
        let bootstrap = ClientBootstrap(group: transport.eventLoopGroup)
            .connectTimeout(TimeAmount(configuration.connectTimeout))
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let operations = channel.pipeline.syncOperations
                    try operations.addHandler(try NIOSSLClientHandler(context: sslContext, serverHostname: serverName))
                    try operations.addHandler(waiter)
                    try operations.addHandler(HTTP2FrameAligner(expectsClientPreface: false))
                    var connection = NIOHTTP2Handler.ConnectionConfiguration()
                    connection.initialSettings = [
                        HTTP2Setting(parameter: .enablePush, value: 0),
                        HTTP2Setting(parameter: .maxConcurrentStreams, value: 0),
                        HTTP2Setting(parameter: .initialWindowSize, value: window),
                        HTTP2Setting(parameter: .maxHeaderListSize, value: 256 << 10),
                    ]
                    connection.targetWindowSize = min(16 << 20, window * 4)
                    var stream = NIOHTTP2Handler.StreamConfiguration()
                    stream.targetWindowSize = window
                    stream.outboundBufferSizeHighWatermark = 256 << 10
                    stream.outboundBufferSizeLowWatermark = 64 << 10
                    let handler = NIOHTTP2Handler(mode: .client, eventLoop: channel.eventLoop,
                                                  connectionConfiguration: connection, streamConfiguration: stream,
                                                  inboundStreamInitializer: { pushed in pushed.close() })
                    try operations.addHandler(handler)
                    try operations.addHandler(GoAwayObserver(state: state, logger: logger, onGoAway: {
                        // Requests waiting for a stream here go to a new connection at once.
                        permitsBox.withLockedValue { $0 }?.close(HTTPError.requestRejected)
                    }))
                    let multiplexer = try handler.syncMultiplexer()
                    multiplexerBox.withLockedValue { $0 = multiplexer }
                }
            }
        let channel: any Channel
        do {
            channel = try await bootstrap.connect(host: address, port: origin.port).get()
        } catch {
            throw mapConnectError(error, origin: origin)
        }
        // The handshake gets what is left of the connect timeout; the waiter fails itself then
        // (a waiting task cannot be interrupted, so the timer completes it instead).
        let timeout = channel.eventLoop.scheduleTask(in: TimeAmount(configuration.connectTimeout)) {
            waiter.fail(HTTPError.connectTimeout)
        }
        let negotiated: String?
        do {
            negotiated = try await waiter.result.get()
            timeout.cancel()
        } catch {
            timeout.cancel()
            channel.close(promise: nil)
            throw mapHandshakeError(error)
        }
        guard negotiated == "h2" else {
            channel.close(promise: nil)
            throw HTTPError.protocolError("the server at \(origin) did not agree to HTTP/2 in ALPN "
                                          + "(it chose \(negotiated.map { "\"\($0)\"" } ?? "nothing"))")
        }
        guard let multiplexer = multiplexerBox.withLockedValue({ $0 }) else {
            channel.close(promise: nil)
            throw HTTPError.connectionClosed("the connection closed during set-up")
        }
        let info = try await channel.eventLoop.submit { () throws -> HTTPConnectionInfo in
            let tls = try channel.pipeline.syncOperations.handler(type: NIOSSLClientHandler.self)
            let version: String
            switch tls.tlsVersion {
            case .tlsv13?: version = "TLSv1.3"
            case .tlsv12?: version = "TLSv1.2"
            case .tlsv11?: version = "TLSv1.1"
            case .tlsv1?: version = "TLSv1.0"
            case nil: version = "TLS"
            }
            let certificate = tls.peerCertificate
            let summary = (try? certificate?.toDERBytes()).flatMap { CertificateSummary(der: $0) }
            return HTTPConnectionInfo(
                transport: "tcp", localAddress: channel.localAddress.map(endpointText),
                remoteAddress: channel.remoteAddress.map(endpointText), tlsParameters: version,
                applicationProtocol: "h2", sessionResumed: false,
                peerCertificateSubject: summary?.subject, peerCertificateIssuer: summary?.issuer,
                peerCertificateNotAfter: summary?.notAfter ?? certificate.map { Int($0.notValidAfter) })
        }.get()
        let connection = HTTP2ClientConnection(channel: channel, multiplexer: multiplexer, info: info,
                                               idleTimeout: configuration.idleConnectionTimeout, maxStreams: permits,
                                               state: state)
        permitsBox.withLockedValue { $0 = connection.permits }
        if !connection.isUsable { connection.permits.close(HTTPError.requestRejected) }
        channel.closeFuture.whenComplete { [weak connection] _ in
            state.withLockedValue { $0.usable = false }
            connection?.permits.close(HTTPError.requestRejected)
        }
        connection.armIdleTimer()
        return connection
    }

    /// The lowest last-stream-ID of the GOAWAY frames received, `nil` if none.
    var goAwayLastStreamID: Int? { state.withLockedValue { $0.goAwayLastStreamID } }

    /// Sends one request on this connection. Every failure before the response head is an
    /// ``HTTP2AttemptFailure`` saying how far the request got (the transport decides on a retry
    /// from it), except cancellation, which is rethrown as is.
    func send(_ request: HTTPRequest, body: HTTPBody?, options: HTTPRequestOptions, reused: Bool,
              connectTime: Duration, started: ContinuousClock.Instant, bodyUse: BodyUse) async throws -> HTTPClientResponse {
        try Task.checkCancellation()
        do {
            try await permits.acquire()
        } catch let error as CancellationError {
            throw error
        } catch {
            // GOAWAY or the connection's end while this request waited for a stream.
            throw HTTP2AttemptFailure(fate: .notSent, underlying: error)
        }
        if !isUsable {
            permits.release()
            throw HTTP2AttemptFailure(fate: .notSent, underlying: HTTPError.requestRejected)
        }
        begin()
        let loop = channel.eventLoop
        let reader = InboundReader<HTTP2Frame.FramePayload>(eventLoop: loop)
        let ended = NIOLockedValueBox(false)
        let finished: @Sendable () -> Void = { [self] in
            let first = ended.withLockedValue { ended -> Bool in
                defer { ended = true }
                return !ended
            }
            if first { end() }
        }
        let stream: any Channel
        do {
            stream = try await multiplexer.createStreamChannel { stream in
                stream.eventLoop.makeCompletedFuture {
                    try stream.syncOptions?.setOption(ChannelOptions.autoRead, value: false)
                    try stream.pipeline.syncOperations.addHandler(reader)
                }
            }.get()
        } catch {
            finished()
            // No stream was made, so nothing was sent.
            throw HTTP2AttemptFailure(fate: .notSent, underlying: error)
        }
        let writer = BoundedWriter(channel: stream)
        var timings = HTTPTimings()
        timings.connected = connectTime
        timings.tlsHandshakeDone = connectTime
        // How far this request got, from the stream's and the connection's state. Reading the
        // stream ID hops to the event loop, after the GOAWAY that closed the stream was seen.
        let attemptFailure: @Sendable (any Error, Bool) async -> any Error = { [self] error, headersWritten in
            if error is CancellationError || Task.isCancelled { return CancellationError() }
            let streamID = (try? await stream.getOption(HTTP2StreamChannelOptions.streamID).get()).map { Int($0) }
            let fate = HTTP2RetryPolicy.fate(of: error, streamID: streamID, headersWritten: headersWritten,
                                             goAwayLastStreamID: goAwayLastStreamID)
            return HTTP2AttemptFailure(fate: fate, underlying: error)
        }
        do {
            try await withTaskCancellationHandler {
                let head = HeaderConversion.headers(request)
                // Waits until the stream is open (within the server's stream limit) and its HEADERS went out.
                try await stream.writeAndFlush(HTTP2Frame.FramePayload.headers(.init(headers: head, endStream: body == nil))).get()
            } onCancel: {
                stream.close(promise: nil)
            }
        } catch {
            stream.close(promise: nil)
            finished()
            throw await attemptFailure(error, false)
        }
        timings.requestSent = ContinuousClock.now - started
        if let body {
            // From here on the body may be partly consumed: a streamed body cannot go again.
            bodyUse.markStarted()
            Task {
                do {
                    for try await chunk in body {
                        try await writer.write(HTTP2Frame.FramePayload.data(.init(data: .byteBuffer(chunk), endStream: false)))
                    }
                    if let trailers = try await body.trailers(), !trailers.isEmpty {
                        try await writer.write(HTTP2Frame.FramePayload.headers(
                            .init(headers: HeaderConversion.headers(trailers), endStream: true)))
                    } else {
                        try await writer.write(HTTP2Frame.FramePayload.data(.init(data: .byteBuffer(ByteBuffer()), endStream: true)))
                    }
                    try await writer.drain()
                } catch {
                    // The upload failed (or the server stopped reading it): a response the server
                    // already sent whole stays readable; otherwise the stream is cancelled.
                    try? await writer.write(HTTP2Frame.FramePayload.rstStream(.cancel))
                }
            }
        }
        // The response head (informational 1xx heads are skipped).
        let headFrame: HTTP2Frame.FramePayload.Headers
        do {
            headFrame = try await withTaskCancellationHandler {
                while true {
                    guard let frame = try await reader.next() else {
                        throw HTTPError.connectionClosed("the stream closed before the response head")
                    }
                    guard case .headers(let headers) = frame else { continue }
                    if let status = headers.headers.first(name: ":status"), status.hasPrefix("1"), status != "101" {
                        continue
                    }
                    return headers
                }
            } onCancel: {
                stream.close(promise: nil)
            }
            try Task.checkCancellation()
        } catch {
            stream.close(promise: nil)
            finished()
            throw await attemptFailure(error, true)
        }
        timings.firstResponseByte = ContinuousClock.now - started
        let head: HTTPResponse
        do {
            guard HeaderConversion.listSize(headFrame.headers) <= options.maxResponseHeaderSize else {
                throw HTTPError.headerSectionTooLarge(limit: options.maxResponseHeaderSize)
            }
            head = try HeaderConversion.response(headFrame.headers)
        } catch {
            stream.close(promise: nil)
            finished()
            throw error
        }
        let length: Int64? = request.method == .head ? 0 : head.headerFields[.contentLength].flatMap { Int64($0) }
        let source = HTTP2BodySource(reader: reader, ended: headFrame.endStream, onEnd: finished,
                                     onCancel: { stream.close(promise: nil) })
        let metadata = HTTPResponseMetadata(protocolVersion: .http2, remoteAddress: info.remoteAddress,
                                            connectionReused: reused, earlyDataBytes: 0, timings: timings,
                                            connection: info)
        return HTTPClientResponse(head: head, body: HTTPBody(source: source, length: length), metadata: metadata)
    }

    private func begin() {
        state.withLockedValue { state in
            state.inFlight += 1
            state.idleTimer?.cancel()
            state.idleTimer = nil
        }
    }

    private func end() {
        permits.release()
        let idle = state.withLockedValue { state -> Bool in
            state.inFlight -= 1
            return state.inFlight == 0
        }
        if idle { armIdleTimer() }
    }

    private func armIdleTimer() {
        let timeout = TimeAmount(idleTimeout)
        let channel = self.channel, state = self.state
        let timer = channel.eventLoop.scheduleTask(in: timeout) {
            let close = state.withLockedValue { state -> Bool in
                guard state.inFlight == 0 else { return false }
                state.usable = false
                return true
            }
            if close { channel.close(promise: nil) }
        }
        state.withLockedValue { state in
            state.idleTimer?.cancel()
            state.idleTimer = timer
        }
    }

    func close() async {
        state.withLockedValue { $0.usable = false }
        try? await channel.close()
    }
}

/// Completes with the ALPN protocol once the TLS handshake is done, or with the error that
/// ended it.
final class HandshakeWaiter: ChannelInboundHandler, Sendable {
    typealias InboundIn = NIOAny
    private let resultBox = NIOLockedValueBox<Result<String?, any Error>?>(nil)
    private let waiters = NIOLockedValueBox<[CheckedContinuation<String?, any Error>]>([])

    /// The handshake's outcome.
    var result: Outcome { Outcome(waiter: self) }

    struct Outcome: Sendable {
        let waiter: HandshakeWaiter
        func get() async throws -> String? {
            try await withCheckedThrowingContinuation { continuation in
                let done = waiter.resultBox.withLockedValue { result -> Result<String?, any Error>? in
                    if result == nil { waiter.waiters.withLockedValue { $0.append(continuation) } }
                    return result
                }
                if let done { continuation.resume(with: done) }
            }
        }
    }

    /// Ends the wait with `error` unless the handshake already ended.
    func fail(_ error: any Error) {
        complete(.failure(error))
    }

    private func complete(_ result: Result<String?, any Error>) {
        let continuations = resultBox.withLockedValue { stored -> [CheckedContinuation<String?, any Error>] in
            guard stored == nil else { return [] }
            stored = result
            return waiters.withLockedValue { waiters in
                defer { waiters.removeAll() }
                return waiters
            }
        }
        for continuation in continuations { continuation.resume(with: result) }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case TLSUserEvent.handshakeCompleted(let negotiated)? = event as? TLSUserEvent {
            complete(.success(negotiated))
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        complete(.failure(error))
        context.fireErrorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        complete(.failure(HTTPError.connectionClosed("the server closed the connection during the TLS handshake")))
        context.fireChannelInactive()
    }
}

/// Watches the connection's own frames for GOAWAY, and the errors NIOHTTP2 reports: either
/// way the connection takes no new requests. It closes the connection when the server will not:
///
/// - a GOAWAY with an error code ends the connection (RFC 9113, section 5.4.1: its sender must
///   close it; requests it did not answer would otherwise wait for good);
/// - NIOHTTP2's `IOOnClosedConnection` means both sides are done (GOAWAY received, no stream
///   left), yet a NIOHTTP2 peer in that state treats any further frame (a WINDOW_UPDATE, a
///   SETTINGS ack) as a protocol error and stops reading without closing.
final class GoAwayObserver: ChannelInboundHandler, Sendable {
    typealias InboundIn = HTTP2Frame
    private let state: NIOLockedValueBox<HTTP2ClientConnection.State>
    private let logger: Logger
    private let onGoAway: @Sendable () -> Void

    init(state: NIOLockedValueBox<HTTP2ClientConnection.State>, logger: Logger, onGoAway: @escaping @Sendable () -> Void) {
        self.state = state
        self.logger = logger
        self.onGoAway = onGoAway
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        if case .goAway(let lastStreamID, let code, _) = frame.payload {
            logger.debug("GOAWAY received", metadata: ["last-stream-id": "\(lastStreamID)", "code": "\(code)"])
            state.withLockedValue { state in
                state.usable = false
                let last = Int(lastStreamID)
                state.goAwayLastStreamID = min(state.goAwayLastStreamID ?? last, last)
            }
            onGoAway()
            if code != .noError { closeSoon(context) }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // NIOHTTP2 reports stream errors here too: the connection stays, but takes no new requests.
        logger.debug("HTTP/2 error", metadata: ["error": "\(error)"])
        switch error {
        case is NIOHTTP2Errors.StreamClosed, is NIOHTTP2Errors.NoSuchStream, is NIOHTTP2Errors.ContentLengthViolated,
             is NIOHTTP2Errors.StreamError:
            return  // one stream's trouble, reported to that stream
        case is NIOHTTP2Errors.IOOnClosedConnection:
            state.withLockedValue { $0.usable = false }
            onGoAway()
            closeSoon(context)
        default:
            // Also a request created after GOAWAY: the streams in flight carry on.
            state.withLockedValue { $0.usable = false }
            onGoAway()
        }
    }

    /// Closes the connection once the frames of this event loop tick are handled.
    private func closeSoon(_ context: ChannelHandlerContext) {
        let channel = context.channel
        context.eventLoop.execute { channel.close(promise: nil) }
    }
}

/// A connect failure as an ``HTTPError``.
func mapConnectError(_ error: any Error, origin: HTTP2Origin) -> HTTPError {
    if let error = error as? HTTPError { return error }
    if case ChannelError.connectTimeout? = error as? ChannelError { return .connectTimeout }
    if let connection = error as? NIOConnectionError {
        if connection.dnsAAAAError != nil && connection.dnsAError != nil && connection.connectionErrors.isEmpty {
            return .unresolvableHost(origin.host)
        }
        if let first = connection.connectionErrors.first {
            if case ChannelError.connectTimeout? = first.error as? ChannelError { return .connectTimeout }
            return .connectionRefused("\(origin): \(first.error)")
        }
        return .unresolvableHost(origin.host)
    }
    return .connectionRefused("\(origin): \(error)")
}

/// A TLS handshake failure as an ``HTTPError``.
func mapHandshakeError(_ error: any Error) -> HTTPError {
    if let error = error as? HTTPError { return error }
    if let extra = error as? NIOSSLExtraError, extra == .failedToValidateHostname {
        return .certificateVerificationFailed("the certificate does not name the server (hostname mismatch)")
    }
    let text = "\(error)"
    if text.contains("CERTIFICATE_VERIFY_FAILED") {
        return .certificateVerificationFailed("the server's certificate is not trusted (CERTIFICATE_VERIFY_FAILED)")
    }
    if text.contains("certificate") { return .certificateVerificationFailed(text) }
    if text.contains("NO_APPLICATION_PROTOCOL") {
        return .tlsHandshakeFailed("the server does not speak HTTP/2 (no common ALPN protocol)")
    }
    return .tlsHandshakeFailed(text)
}
