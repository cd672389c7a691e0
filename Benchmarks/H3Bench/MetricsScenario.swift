import Foundation

extension Bench {
    // MARK: 6. The cost of metrics

    /// Requests per second and server CPU per request of our HTTP/3 server with metrics off and
    /// with metrics into a Prometheus registry (the backend `h3 serve --metrics` uses), the two
    /// servers measured in alternation so that a changing machine load hits both alike.
    func metricsCost() throws {
        let (offServer, offPort) = try startServer(.ours, metrics: "off")
        let (onServer, onPort) = try startServer(.ours, metrics: "prometheus")
        defer { offServer.stop(); onServer.stop() }
        var rates: [[Double]] = [[], []]
        var serverCPU = [0.0, 0.0]
        let servers = [offServer, onServer]
        let runs = max(sizes.requestRuns, 3)
        for run in 0..<runs {
            // Alternate which side goes first.
            let order = run % 2 == 0 ? [(offPort, 0), (onPort, 1)] : [(onPort, 1), (offPort, 0)]
            for (port, side) in order {
                let before = servers[side].cpuSecondsSoFar
                let result = try ourClient(port: port, size: 1024, requests: sizes.requests, concurrency: sizes.requestConcurrency,
                                           timeout: 300)
                serverCPU[side] += servers[side].cpuSecondsSoFar - before
                rates[side].append(Double(sizes.requests) / (result.inProcess ?? result.wall))
            }
        }
        report.section("6. Metrics on vs off: \(sizes.requests) GETs of 1 KB on one connection, \(sizes.requestConcurrency) in flight (median of \(runs), alternating)",
                       header: ["our server", "requests/s", "runs", "server CPU µs/request", "ratio", "target", "met"])
        let count = Double(sizes.requests * runs)
        let ratio = median(rates[1]) / median(rates[0])
        report.row(["metrics off (QUICMetricsConfiguration.disabled)", fmt(median(rates[0]), 0),
                    rates[0].map { fmt($0, 0) }.joined(separator: ", "), fmt(serverCPU[0] / count * 1e6, 1), "1.00", "—", "—"])
        report.row(["metrics into a Prometheus registry", fmt(median(rates[1]), 0),
                    rates[1].map { fmt($0, 0) }.joined(separator: ", "), fmt(serverCPU[1] / count * 1e6, 1),
                    fmt(ratio, 3) + "×", "≥ 0.95×", ratio >= 0.95 ? "yes" : "**no**"])
        report.note("Server CPU per request with metrics / without: \(fmt(serverCPU[1] / max(serverCPU[0], 1e-9), 3))×.")
    }
}
