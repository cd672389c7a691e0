/// Runs `body`, failing with ``HTTPError/requestTimeout`` after `timeout` (the per-request
/// timeout of both transports).
package func withRequestDeadline<T: Sendable>(_ timeout: Duration,
                                              _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: timeout)
            throw HTTPError.requestTimeout
        }
        defer { group.cancelAll() }
        guard let result = try await group.next() else { throw HTTPError.requestTimeout }
        return result
    }
}
