import NIOCore
import ServiceLifecycle

/// Why a server's `Service.run()` stopped waiting, and so how it ends.
package enum ServiceStopReason: Sendable, Equatable {
    /// The service group asked for a graceful shutdown: stop accepting, send GOAWAY, drain.
    case gracefulShutdown
    /// The task was cancelled: close at once.
    case cancelled
    /// The server closed by itself (its `shutdown()`/`close()` was called): nothing left to do.
    case closed
}

/// Waits until a graceful shutdown is triggered (swift-service-lifecycle), the calling task is
/// cancelled, or `closed` completes, whichever comes first.
package func waitForServiceStop(closed: EventLoopFuture<Void>) async -> ServiceStopReason {
    if Task.isCancelled { return .cancelled }
    return await withTaskGroup(of: ServiceStopReason.self) { group in
        group.addTask {
            do {
                try await gracefulShutdown()
                return .gracefulShutdown
            } catch {
                return .cancelled
            }
        }
        group.addTask {
            // An AsyncStream ends when the future completes or when this task is cancelled.
            let (stream, continuation) = AsyncStream.makeStream(of: Void.self)
            closed.whenComplete { _ in continuation.finish() }
            for await _ in stream {}
            return Task.isCancelled ? .cancelled : .closed
        }
        let first = await group.next() ?? .cancelled
        group.cancelAll()
        // A cancelled parent wins over whatever the children saw.
        return Task.isCancelled ? .cancelled : first
    }
}

/// A server's `Service.run()`: waits as ``waitForServiceStop(closed:)`` does, then shuts down
/// gracefully (`gracefully`) or at once (`now`), or returns when the server closed by itself.
package func serveUntilStopped(closed: EventLoopFuture<Void>, gracefully: () async -> Void,
                               now: () async -> Void) async {
    switch await waitForServiceStop(closed: closed) {
    case .closed:
        return
    case .gracefulShutdown:
        await gracefully()
    case .cancelled:
        await now()
    }
}
