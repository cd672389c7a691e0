import CoreMetrics
import Foundation
import Prometheus
import QUIC

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
        let runs = max(sizes.bulkRuns, 3)  // --runs N
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
        // A small request on the server: about 2 datagrams in and 2 out (socket hooks), one
        // request counter, one streams-open increment and decrement.
        let hooks = MetricsHookCost.measure()
        let perRequest = 4 * hooks.socketHook + hooks.counter + hooks.meterPair
        report.note("Hook cost into a Prometheus registry, in process: \(fmt(hooks.socketHook, 1)) ns per UDP message hook, "
                    + "\(fmt(hooks.counter, 1)) ns per counter increment, \(fmt(hooks.meterPair, 1)) ns per gauge up+down; "
                    + "about \(fmt(perRequest / 1000, 2)) µs per small request, "
                    + "\(fmt(perRequest / 1000 / max(serverCPU[0] / count * 1e6, 1e-9) * 100, 1)) % of the server's CPU per request without metrics.")
    }
}

/// The cost of the hooks themselves, measured in this process (immune to the load of a shared
/// machine that makes the requests/s rows noisy): nanoseconds per call into a Prometheus
/// registry, for the calls a small request makes on the server.
enum MetricsHookCost {
    static func measure(calls: Int = 2_000_000) -> (socketHook: Double, counter: Double, meterPair: Double) {
        let configuration = QUICMetricsConfiguration(factory: PrometheusMetricsFactory(registry: PrometheusCollectorRegistry()))
        guard let metrics = QUICServerMetrics(configuration) else { return (0, 0, 0) }
        let counter = configuration.counter("bench_requests_total", [("protocol", "h3"), ("status", "2xx")])
        let meter = configuration.meter("bench_streams_open", [("protocol", "h3")])
        func time(_ body: () -> Void) -> Double {
            let start = DispatchTime.now().uptimeNanoseconds
            body()
            return Double(DispatchTime.now().uptimeNanoseconds - start) / Double(calls)
        }
        let socketHook = time { for _ in 0..<calls { metrics.socketSent(bytes: 1100, segments: 1) } }
        let counterCost = time { for _ in 0..<calls { counter.increment() } }
        let meterPair = time { for _ in 0..<calls { meter.increment(); meter.decrement() } }
        return (socketHook, counterCost, meterPair)
    }
}
