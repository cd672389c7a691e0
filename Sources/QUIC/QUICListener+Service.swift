import NIOCore
import ServiceLifecycle

extension QUICListener: Service {
    /// Serves until the task is cancelled or a graceful shutdown is triggered (for a
    /// `ServiceGroup` of swift-service-lifecycle), or until ``close()`` is called.
    ///
    /// On graceful shutdown the listener stops accepting new connections, waits up to
    /// ``QUICServerConfiguration/gracefulShutdownTimeout`` for the open ones to close, then closes
    /// the rest (application error 0) and the socket. On cancellation it closes at once.
    public func run() async throws {
        let endpoint = self.endpoint
        switch await waitForServiceStop(closed: endpoint.closeFuture) {
        case .closed:
            return
        case .cancelled:
            await close()
        case .gracefulShutdown:
            let grace = TimeAmount(endpoint.configuration.gracefulShutdownTimeout)
            let drained = try? await endpoint.eventLoop.submit { () -> EventLoopFuture<Void> in
                endpoint.stopAccepting()
                let promise = endpoint.eventLoop.makePromise(of: Void.self)
                endpoint.whenNoConnections().cascade(to: promise)
                endpoint.eventLoop.scheduleTask(in: grace) { promise.succeed(()) }
                return promise.futureResult
            }.get()
            _ = try? await drained?.get()
            await close()
        }
    }
}
