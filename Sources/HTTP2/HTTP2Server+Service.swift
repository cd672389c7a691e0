import NIOCore
import QUIC
import ServiceLifecycle

extension HTTP2Server: Service {
    /// Serves until the task is cancelled or a graceful shutdown is triggered (for a
    /// `ServiceGroup` of swift-service-lifecycle), or until ``shutdown()`` is called.
    ///
    /// A graceful shutdown is ``shutdown()``: the listening socket closes, every HTTP/2
    /// connection gets GOAWAY, requests in flight finish (up to
    /// ``HTTP2ServerConfiguration/gracefulShutdownTimeout``), then the connections close.
    /// Cancellation closes every connection at once.
    public func run() async throws {
        await serveUntilStopped(closed: serverChannel.closeFuture, gracefully: shutdown, now: closeNow)
    }

    /// Closes the listening socket and every connection at once.
    public func closeNow() async {
        try? await serverChannel.close()
        await state.closeAllNow()
    }
}

extension HTTP2Server {
    /// Whether the listening socket is still open (false once a shutdown began).
    package var isListening: Bool { serverChannel.isActive }
}
