import Foundation
import QUIC
import QUICTestSupport
import Testing

/// `h3 serve --metrics PORT`: Prometheus text exposition of the server's metrics.
@Suite("h3 serve --metrics, end to end")
struct H3ServeMetricsTests {
    /// The metrics port `h3 serve` printed.
    static func metricsPort(_ log: String) -> Int? {
        guard let range = log.range(of: #"metrics on http://127\.0\.0\.1:[0-9]+/metrics"#, options: .regularExpression) else {
            return nil
        }
        return Int(log[range].dropFirst("metrics on http://127.0.0.1:".count).dropLast("/metrics".count))
    }

    /// Fetches the metrics page with curl.
    static func scrape(port: Int) async throws -> String {
        let curl = try #require(peerProgram("curl"))
        let process = try PeerProcess(curl, ["-sS", "http://127.0.0.1:\(port)/metrics"], directory: TestPKI.shared.directory,
                                      separateStandardOutput: true)
        let status = await process.waitForExit(seconds: 30)
        #expect(status == 0, "curl: \(process.output)")
        return String(decoding: process.standardOutput, as: UTF8.self)
    }

    @Test("h3 serve --tcp --metrics: after one HTTP/3 request the scrape shows the connection, the handshake and the 2xx request")
    func scrapeAfterRequest() async throws {
        guard peerProgram("curl") != nil else { return }
        let pki = TestPKI.shared
        let server = try await ServeProcess.start([ServedFiles.shared.root.path, "--cert", pki.certFile, "--key", pki.keyFile,
                                                   "--tcp", "--metrics", "0"])
        let port = try #require(Self.metricsPort(server.log), "\(server.log)")
        let before = try await Self.scrape(port: port)
        #expect(before.contains("swift_h3_quic_connections_opened_total 0"), "\(before)")
        let fetched = try await runH3(trust + ["-sS", "\(server.url)/small.txt"])
        #expect(fetched.text == "hello h3\n", "\(fetched)")
        // The counters move when the server's side of the exchange ends: scrape until they show it.
        var page = ""
        for _ in 0..<200 {
            page = try await Self.scrape(port: port)
            if page.contains(#"swift_h3_http_requests_total{protocol="h3",status="2xx"} 1"#) { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(page.contains(#"swift_h3_http_requests_total{protocol="h3",status="2xx"} 1"#), "\(page)")
        #expect(page.contains("swift_h3_quic_connections_opened_total 1"), "\(page)")
        #expect(page.contains(#"swift_h3_quic_handshakes_total{result="completed"} 1"#), "\(page)")
        #expect(page.contains("# TYPE swift_h3_quic_handshake_duration_seconds histogram"), "\(page)")
        #expect(page.contains("swift_h3_quic_handshake_duration_seconds_count 1"), "\(page)")
        #expect(page.contains("# TYPE swift_h3_quic_connections_open gauge"), "\(page)")
        #expect(page.contains(#"swift_h3_http_requests_total{protocol="h2",status="2xx"} 0"#), "the TCP side reports too: \(page)")
        server.process.stop()
    }
}
