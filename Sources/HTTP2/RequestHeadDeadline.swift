import NIOCore
import NIOHTTP1

/// Closes a TCP connection whose request head does not arrive in time (the slow-header attack:
/// a client that sends one header line every few seconds holds a connection forever).
///
/// The clock starts when the connection is accepted (the TLS handshake and the first request
/// head must both fit in the time) and, on an HTTP/1.1 connection kept alive, again when the
/// first bytes of each further request arrive (an idle connection is the idle timeout's
/// business, not this one's). It stops when a whole head has been read: on HTTP/1.1 when the
/// parser delivers it, on HTTP/2 when the first stream opens.
///
/// Loop-confined: every method runs on the connection's event loop.
final class RequestHeadDeadline: @unchecked Sendable {
    private let timeout: TimeAmount
    private let onExpiry: @Sendable () -> Void
    private var timer: Scheduled<Void>?
    /// Whether the connection is between requests, so that its next bytes start a head.
    private var awaitingHead = true
    private var finished = false

    /// - Parameter onExpiry: called (on the loop) just before the connection is closed.
    init(timeout: TimeAmount, onExpiry: @escaping @Sendable () -> Void) {
        self.timeout = timeout
        self.onExpiry = onExpiry
    }

    /// Starts the clock now, if it is not running.
    func start(on channel: any Channel) {
        guard !finished, timer == nil else { return }
        awaitingHead = true
        let onExpiry = self.onExpiry
        timer = channel.eventLoop.scheduleTask(in: timeout) { [weak self] in
            guard let self, !self.finished else { return }
            self.timer = nil
            onExpiry()
            channel.close(promise: nil)
        }
    }

    /// Bytes arrived (before HTTP/1.1 parsing): the start of a head if the connection was between requests.
    func bytesArrived(on channel: any Channel) {
        if awaitingHead { start(on: channel) }
    }

    /// A whole request head arrived: stops the clock.
    func headArrived() {
        awaitingHead = false
        timer?.cancel()
        timer = nil
    }

    /// An HTTP/1.1 request ended: the next bytes begin another head.
    func requestEnded() {
        awaitingHead = true
    }

    /// Stops for good (the connection closed, or HTTP/2 opened its first stream).
    func stop() {
        finished = true
        headArrived()
    }
}

/// Sees the plaintext bytes of an HTTP/1.1 connection before the parser: their arrival
/// between requests starts the head clock.
final class RequestHeadByteWatcher: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    private let deadline: RequestHeadDeadline

    init(deadline: RequestHeadDeadline) { self.deadline = deadline }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        deadline.bytesArrived(on: context.channel)
        context.fireChannelRead(data)
    }
}

/// Sees the parsed HTTP/1.1 request parts (placed right after the parser, before pipelining
/// holds any back): a head stops the clock, an end lets the next bytes start it again.
final class RequestHeadPartWatcher: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    private let deadline: RequestHeadDeadline

    init(deadline: RequestHeadDeadline) { self.deadline = deadline }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head: deadline.headArrived()
        case .end: deadline.requestEnded()
        case .body: break
        }
        context.fireChannelRead(data)
    }
}

@available(*, unavailable)
extension RequestHeadByteWatcher: Sendable {}
@available(*, unavailable)
extension RequestHeadPartWatcher: Sendable {}
