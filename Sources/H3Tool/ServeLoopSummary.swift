import HTTP3

extension Serve {
    /// One line for the log at shutdown: connections accepted and datagrams handed to another
    /// loop, per event loop (`--threads`).
    static func loopSummary(_ server: HTTP3Server) async -> String {
        guard let loops = try? await server.loopStatistics() else { return "h3 serve: no loop statistics" }
        return "h3 serve: \(loops.count) loop(s); connections per loop \(loops.map(\.statistics.connectionsAccepted)), "
            + "datagrams handed to another loop \(loops.map(\.handedOff))"
    }
}
