import NIOCore

/// A QUIC stream: an ordered, reliable byte stream inside a ``QUICConnection``.
///
/// Reads and writes are async and apply backpressure both ways: received bytes count against
/// the peer's flow-control window until ``read()`` returns them, and ``write(_:)`` suspends
/// while more than the configured limit of written bytes is unacknowledged.
///
/// One reader and one writer may use a stream concurrently (from different tasks).
public final class QUICStream: Sendable {
    /// The stream ID (RFC 9000, section 2.1).
    public let id: Int64
    let state: StreamState
    let application: StreamApplication
    /// Keeps the connection alive while a stream is in use.
    let connection: QUICConnection

    init(state: StreamState, application: StreamApplication, connection: QUICConnection) {
        self.id = state.id
        self.state = state
        self.application = application
        self.connection = connection
    }

    private var eventLoop: any EventLoop { application.core.eventLoop }

    /// Whether data flows both ways on this stream.
    public var isBidirectional: Bool { id & 0x2 == 0 }
    /// Whether this side opened the stream.
    public var isLocallyInitiated: Bool { (id & 0x1 == 1) == application.core.isServer }

    /// Reads the next chunk of bytes; `nil` once the peer finished the stream.
    ///
    /// - Throws: ``QUICError/streamReset(code:)`` if the peer reset the stream, or the
    ///   connection's error if it closed. `CancellationError` if the task is cancelled.
    public func read() async throws -> ByteBuffer? {
        try Task.checkCancellation()
        let state = self.state, application = self.application, loop = eventLoop
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                loop.execute { application.read(state, continuation: continuation) }
            }
        } onCancel: {
            loop.execute { application.cancelRead(state) }
        }
    }

    /// Reads until the peer finishes the stream.
    ///
    /// - Parameter limit: the most bytes accepted; more fails with ``QUICError/invalidArgument(_:)``.
    public func readAll(limit: Int) async throws -> ByteBuffer {
        var result = ByteBuffer()
        while var chunk = try await read() {
            guard result.readableBytes + chunk.readableBytes <= limit else {
                throw QUICError.invalidArgument("stream carries more than \(limit) bytes")
            }
            result.writeBuffer(&chunk)
        }
        return result
    }

    /// Writes bytes. Returns once they are buffered; suspends while the stream has more than
    /// its send-buffer limit of unacknowledged data.
    ///
    /// - Throws: ``QUICError/streamStopSending(code:)`` if the peer stopped reading,
    ///   ``QUICError/streamClosed`` after ``finish()`` or ``reset(applicationError:)``.
    public func write(_ bytes: ByteBuffer) async throws {
        var remaining = bytes
        let piece = 64 << 10
        repeat {
            try Task.checkCancellation()
            let chunk = remaining.readSlice(length: min(piece, remaining.readableBytes)) ?? ByteBuffer()
            let state = self.state, application = self.application
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                eventLoop.execute { application.write(state, chunk, continuation: continuation) }
            }
        } while remaining.readableBytes > 0
    }

    /// Writes bytes.
    public func write(_ bytes: some Sequence<UInt8>) async throws {
        try await write(ByteBuffer(bytes: bytes))
    }

    /// Ends the sending side cleanly (FIN) after the bytes already written.
    public func finish() async throws {
        let state = self.state, application = self.application
        try await eventLoop.submit { () throws -> Void in try application.finish(state) }.get()
    }

    /// Abruptly ends the sending side (RESET_STREAM) with an application error code.
    public func reset(applicationError code: UInt64) async {
        let state = self.state, application = self.application
        try? await eventLoop.submit { application.reset(state, code: code) }.get()
    }

    /// Tells the peer to stop sending (STOP_SENDING) with an application error code;
    /// unread bytes are discarded.
    public func stopSending(applicationError code: UInt64) async {
        let state = self.state, application = self.application
        try? await eventLoop.submit { application.stopSending(state, code: code) }.get()
    }

    /// Send progress: bytes acknowledged by the peer, handed to the network, and written by the
    /// application (for diagnostics and tests).
    package func sendProgress() async throws -> (acknowledged: UInt64, sent: UInt64, written: UInt64) {
        let state = self.state, application = self.application
        return try await eventLoop.submit {
            let p = application.sendProgress(state)
            return (p.acked, p.sent, p.queued)
        }.get()
    }

    /// Bytes received on this stream and not yet read.
    package func bufferedBytes() async throws -> Int {
        let state = self.state
        return try await eventLoop.submit { state.bufferedBytes }.get()
    }
}
