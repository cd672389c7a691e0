import HTTPAPI
import NIOCore
import QUIC
import ServiceLifecycle

extension HTTP3Server: Service {
    /// Serves until the task is cancelled or a graceful shutdown is triggered (for a
    /// `ServiceGroup` of swift-service-lifecycle), or until ``shutdown()`` is called.
    ///
    /// A graceful shutdown is ``shutdown()``: GOAWAY on every connection, requests in flight
    /// finish (up to ``HTTP3ServerConfiguration/gracefulShutdownTimeout``), then every connection
    /// closes. Cancellation closes every connection at once (requests in flight are cut off).
    public func run() async throws {
        // Every loop's endpoint closes together, so the first one's close stands for all.
        await serveUntilStopped(closed: loops[0].endpoint.closeFuture, gracefully: shutdown, now: closeNow)
    }

    /// Closes every connection at once (CONNECTION_CLOSE with H3_NO_ERROR) and then the socket.
    public func closeNow() async {
        for (endpoint, _) in loops {
            endpoint.eventLoop.execute {
                endpoint.stopAccepting()
                endpoint.close(applicationError: HTTP3ErrorCode.noError)
            }
        }
        for (endpoint, _) in loops { try? await endpoint.closeFuture.get() }
    }
}
