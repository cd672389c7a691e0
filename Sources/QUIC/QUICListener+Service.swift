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
        let endpoints = self.endpoints
        // Every loop's endpoint closes together (``close()``), so the first one's close stands
        // for all of them.
        switch await waitForServiceStop(closed: endpoints[0].closeFuture) {
        case .closed:
            return
        case .cancelled:
            await close()
        case .gracefulShutdown:
            var drains: [EventLoopFuture<Void>] = []
            for endpoint in endpoints {
                let grace = TimeAmount(endpoint.configuration.gracefulShutdownTimeout)
                if let drained = try? await endpoint.eventLoop.submit({ () -> EventLoopFuture<Void> in
                    endpoint.stopAccepting()
                    let promise = endpoint.eventLoop.makePromise(of: Void.self)
                    endpoint.whenNoConnections().cascade(to: promise)
                    endpoint.eventLoop.scheduleTask(in: grace) { promise.succeed(()) }
                    return promise.futureResult
                }).get() {
                    drains.append(drained)
                }
            }
            for drained in drains { _ = try? await drained.get() }
            await close()
        }
    }
}
