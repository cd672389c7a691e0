import HTTP2
import HTTP3
import ServiceLifecycle

extension HTTPServer: Service {
    /// Serves both sides until the task is cancelled or a graceful shutdown is triggered (for
    /// a `ServiceGroup` of swift-service-lifecycle), or until ``shutdown()`` is called.
    ///
    /// A graceful shutdown drains both sides at once (GOAWAY, requests in flight finish within
    /// each side's `gracefulShutdownTimeout`); cancellation closes both at once.
    public func run() async throws {
        let http3 = self.http3, http2 = self.http2
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await http3.run() }
            group.addTask { try await http2.run() }
            try await group.waitForAll()
        }
    }

    /// Closes both sides at once, without waiting for requests in flight.
    public func closeNow() async {
        async let udp: Void = http3.closeNow()
        async let tcp: Void = http2.closeNow()
        _ = await (udp, tcp)
    }
}
