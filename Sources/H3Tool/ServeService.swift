import ServiceLifecycle
import UnixSignals

/// `h3 serve`'s server as a `Service` in its `ServiceGroup`: says where it serves once the
/// group traps the signals, says when a graceful shutdown begins, and stops at once on a second
/// SIGINT or SIGTERM during that shutdown.
struct ServeService: Service {
    /// The server (HTTP3Server or HTTPServer).
    let server: any Service
    /// Closes the server without waiting for requests in flight.
    let closeNow: @Sendable () async -> Void
    /// The line printed once serving.
    let banner: String
    /// The line printed once stopped (connections and hand-offs per event loop).
    let summary: @Sendable () async -> String

    func run() async throws {
        Console.error(banner)
        let server = self.server, closeNow = self.closeNow
        let forced = try await withThrowingTaskGroup(of: Bool.self) { group in
            group.addTask {
                try await server.run()
                return false
            }
            group.addTask {
                // Throws CancellationError when the server finished first.
                try await gracefulShutdown()
                Console.error("h3 serve: shutting down gracefully (again to stop at once)")
                for await _ in await UnixSignalsSequence(trapping: .sigint, .sigterm) {
                    Console.error("h3 serve: stopping now")
                    await closeNow()
                    return true
                }
                return false
            }
            var forced = false
            do {
                forced = try await group.next() ?? false
            } catch is CancellationError {
                forced = false
            }
            group.cancelAll()
            while let result = try? await group.next() { forced = forced || result }
            return forced
        }
        Console.error(await summary())
        Console.error("h3 serve: stopped")
        if forced { throw ToolError(1, "stopped before requests in flight finished") }
    }
}
