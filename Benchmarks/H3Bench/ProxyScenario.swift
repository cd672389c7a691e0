// Scenario 6: the reverse proxy. Our HTTP/2 server (TCP + TLS) is the backend; our HTTP/3
// client fetches through `ProxyHandler` in an HTTP3Server (to the backend over HTTP/1.1 + TLS,
// and over HTTP/2), and our HTTP/2 client fetches from the backend directly.
import Foundation

extension Bench {
    func proxy() throws {
        let (backend, backendPort) = try startServer(.oursHTTP2)
        let url = "https://localhost:\(backendPort)"
        var proxies: [(Child, Int)] = []
        for http2 in [false, true] {
            let child = try Child(executable, ["serve", "--port", "0", "--cert", certFile, "--key", keyFile, "--proxy", url,
                                               "--ca", caFile] + (http2 ? ["--proxy-http2"] : []),
                                  name: http2 ? "our-proxy-h2" : "our-proxy-h1", logDirectory: logs)
            let ready = try child.waitForLine(prefix: "READY", timeout: 30)
            guard let port = ready.split(separator: " ").last.flatMap({ Int($0) }), port > 0 else {
                throw BenchFailure("our proxy printed no port: \(ready)")
            }
            proxies.append((child, port))
        }
        defer { backend.stop(); proxies.forEach { $0.0.stop() } }
        // Rows: direct over HTTP/2, through the proxy to HTTP/1.1, through the proxy to HTTP/2.
        let targets = [(backendPort, true), (proxies[0].1, false), (proxies[1].1, false)]
        var bulk = [[Double]](repeating: [], count: 3), rates = [[Double]](repeating: [], count: 3)
        var proxyCPU = [Double](repeating: 0, count: 3)
        let servers = [backend, proxies[0].0, proxies[1].0]
        for _ in 0..<sizes.bulkRuns {
            for (index, (port, http2)) in targets.enumerated() {
                let run = try ourClient(port: port, size: sizes.bulkBytes, http2: http2, timeout: 300)
                bulk[index].append(Double(sizes.bulkBytes) / 1e6 / (run.inProcess ?? run.wall))
            }
        }
        let inFlight = sizes.requestConcurrency
        for _ in 0..<sizes.requestRuns {
            for (index, (port, http2)) in targets.enumerated() {
                let before = servers[index].cpuSecondsSoFar
                let run = try ourClient(port: port, size: 1024, requests: sizes.requests, concurrency: inFlight,
                                        http2: http2, timeout: 600)
                proxyCPU[index] += servers[index].cpuSecondsSoFar - before
                rates[index].append(Double(sizes.requests) / (run.inProcess ?? run.wall))
            }
        }
        report.section("6. Reverse proxy: \(sizes.bulkBytes / 1_000_000) MB downloads (median of \(sizes.bulkRuns)) and "
                       + "\(sizes.requests) GETs of 1 KB, \(inFlight) in flight (median of \(sizes.requestRuns))",
                       header: ["path", "MB/s", "requests/s", "vs direct (MB/s, requests/s)"])
        let names = ["direct: HTTP/2 client → HTTP2Server backend",
                     "HTTP/3 client → h3 proxy → backend over HTTP/1.1 + TLS (a connection per request)",
                     "HTTP/3 client → h3 proxy → backend over HTTP/2"]
        for index in 0..<3 {
            report.row([names[index], fmt(median(bulk[index])), fmt(median(rates[index]), 0),
                        index == 0 ? "—" : "\(fmt(median(bulk[index]) / median(bulk[0]), 2))×, \(fmt(median(rates[index]) / median(rates[0]), 2))×"])
        }
        let count = Double(sizes.requests * sizes.requestRuns)
        report.note("CPU µs per request in the serving process (the backend for the direct row, the proxy for the others): "
                    + (0..<3).map { fmt(proxyCPU[$0] / count * 1e6, 1) }.joined(separator: " / ")
                    + ". Client, proxy and backend share the machine's cores.")
    }
}
