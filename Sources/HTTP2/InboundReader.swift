import NIOConcurrencyHelpers
import NIOCore

/// Hands a channel's inbound messages to one async reader, reading from the network only as
/// the reader consumes: the channel runs with auto-read off, and this handler asks for more
/// (`read()`) while fewer than `lowWatermark` messages are buffered. On an HTTP/2 stream
/// channel that is what holds back WINDOW_UPDATE; on a TCP channel it stops reading the socket.
///
/// Loop-confined: ``next()`` hops to the channel's event loop.
final class InboundReader<Message: Sendable>: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = Message

    let eventLoop: any EventLoop
    private let lowWatermark: Int
    fileprivate var buffered = CircularBuffer<Message>()
    private var end: Result<Void, any Error>?
    private var waiter: EventLoopPromise<Message?>?
    private var context: ChannelHandlerContext?
    /// The first error the channel reported (an HTTP/2 stream: the peer's RST_STREAM), readable from any thread.
    let closeReason = NIOLockedValueBox<(any Error)?>(nil)

    init(eventLoop: any EventLoop, lowWatermark: Int = 4) {
        self.eventLoop = eventLoop
        self.lowWatermark = lowWatermark
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { context.read() }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        finish(.failure(ChannelError.ioOnClosedChannel))
    }

    func channelActive(context: ChannelHandlerContext) {
        context.read()
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let message = unwrapInboundIn(data)
        if let waiter {
            self.waiter = nil
            waiter.succeed(message)
        } else {
            buffered.append(message)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        readIfNeeded()
        context.fireChannelReadComplete()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        closeReason.withLockedValue { if $0 == nil { $0 = error } }
        finish(.failure(error))
    }

    func channelInactive(context: ChannelHandlerContext) {
        finish(.success(()))
        context.fireChannelInactive()
    }

    private func finish(_ result: Result<Void, any Error>) {
        guard end == nil else { return }
        end = result
        if let waiter {
            self.waiter = nil
            switch result {
            case .success: waiter.succeed(nil)
            case .failure(let error): waiter.fail(error)
            }
        }
    }

    fileprivate func readIfNeeded() {
        guard end == nil, buffered.count < lowWatermark, let context else { return }
        context.read()
    }

    /// The next message, `nil` once the channel closed cleanly; fails with the channel's error.
    /// One caller at a time.
    func nextOnLoop() -> EventLoopFuture<Message?> {
        eventLoop.preconditionInEventLoop()
        if let message = buffered.popFirst() {
            readIfNeeded()
            return eventLoop.makeSucceededFuture(message)
        }
        switch end {
        case .success: return eventLoop.makeSucceededFuture(nil)
        case .failure(let error): return eventLoop.makeFailedFuture(error)
        case nil: break
        }
        let promise = eventLoop.makePromise(of: Message?.self)
        waiter = promise
        readIfNeeded()
        return promise.futureResult
    }
}

extension InboundReader {
    /// The next message, `nil` once the channel closed cleanly.
    func next() async throws -> Message? {
        try await eventLoop.flatSubmit { self.nextOnLoop() }.get()
    }

    /// Every message buffered now, in one hop to the event loop (waiting for one if none is);
    /// empty once the channel closed cleanly.
    func nextBatch() async throws -> [Message] {
        try await eventLoop.flatSubmit { () -> EventLoopFuture<[Message]> in
            if !self.buffered.isEmpty {
                let all = Array(self.buffered)
                self.buffered.removeAll(keepingCapacity: true)
                self.readIfNeeded()
                return self.eventLoop.makeSucceededFuture(all)
            }
            return self.nextOnLoop().map { $0.map { [$0] } ?? [] }
        }.get()
    }
}

/// Writes to a channel with a bounded number of writes in flight: each write returns once
/// fewer than `limit` earlier writes are still unwritten, so a slow peer (flow control, a full
/// socket) suspends the writer instead of growing a buffer.
///
/// `@unchecked Sendable`: used by one writing task at a time (the stream's or connection's
/// response writer), which alone touches `pending`.
final class BoundedWriter: @unchecked Sendable {
    private let channel: any Channel
    private let limit: Int
    private var pending: [EventLoopFuture<Void>] = []

    init(channel: any Channel, limit: Int = 4) {
        self.channel = channel
        self.limit = limit
    }

    /// Writes and flushes `message`, waiting first while `limit` writes are outstanding.
    func write(_ message: some Sendable) async throws {
        try await waitForRoom()
        pending.append(channel.writeAndFlush(message))
    }

    /// Writes `messages` in order and flushes once, in one hand-off to the event loop, waiting
    /// first while `limit` writes are outstanding.
    func write<Message: Sendable>(all messages: [Message]) async throws {
        try await waitForRoom()
        let channel = self.channel
        pending.append(channel.eventLoop.flatSubmit {
            let writes = messages.map { channel.write($0) }
            channel.flush()
            return EventLoopFuture.andAllSucceed(writes, on: channel.eventLoop)
        })
    }

    /// Waits while `limit` writes are outstanding.
    private func waitForRoom() async throws {
        while pending.count >= limit {
            let oldest = pending.removeFirst()
            try await oldest.get()
        }
    }

    /// Waits until every write so far reached the channel's parent (for HTTP/2) or socket.
    func drain() async throws {
        let all = pending
        pending.removeAll()
        for future in all { try await future.get() }
    }
}
