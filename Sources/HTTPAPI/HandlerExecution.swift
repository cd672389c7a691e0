import NIOCore

/// Where a server runs its ``HTTPHandler`` for each request.
public enum HTTPHandlerExecution: Sendable, Hashable {
    /// In a new task on Swift's global concurrent executor (the default). The connection's
    /// event loop hands each request to a pool thread and takes the response back, so a
    /// handler that computes for a long time, or blocks, delays nobody else.
    case globalExecutor
    /// In a new task that prefers the connection's event loop (a task executor preference).
    /// Requests and responses then cross no threads, which raises the request rate of small
    /// requests; but a handler that computes for long, or blocks, stalls every connection on
    /// that event loop, as a blocking call in a SwiftNIO channel handler would. Work the handler
    /// moves elsewhere (an actor, `Task.detached`, a thread pool) is unaffected.
    case eventLoop
}

/// A task executor that runs jobs on one SwiftNIO event loop.
package final class EventLoopTaskExecutor: TaskExecutor, Sendable {
    package let eventLoop: any EventLoop

    package init(_ eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    package func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        eventLoop.execute { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}

extension HTTPHandlerExecution {
    /// Starts a request's handler task where this placement says, given the connection's event
    /// loop's executor (built once per loop by the caller).
    package func startTask(on executor: @autoclosure () -> EventLoopTaskExecutor,
                           _ operation: sending @escaping @isolated(any) () async -> Void) {
        switch self {
        case .globalExecutor: Task(operation: operation)
        case .eventLoop: Task(executorPreference: executor(), operation: operation)
        }
    }
}
