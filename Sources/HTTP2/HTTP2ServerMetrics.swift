import CoreMetrics
import HTTPAPI
import QUIC

/// An HTTP/2 (and HTTP/1.1) server's request metrics (swift-metrics), made once from its
/// ``HTTP2ServerConfiguration/metrics``; the same names as the HTTP/3 server's, told apart by
/// the `protocol` label (`h2`, `http/1.1`).
final class HTTP2ServerMetrics: Sendable {
    private struct PerProtocol: Sendable {
        let requests: [Counter]  // by status class 1xx...5xx; index 0: no response
        let streamsOpen: Meter
    }
    private let http2: PerProtocol
    private let http1: PerProtocol

    /// Creates the metrics; `nil` when the configuration disables them.
    init?(_ configuration: QUICMetricsConfiguration) {
        guard configuration.isEnabled else { return nil }
        func make(_ name: String) -> PerProtocol {
            let proto = ("protocol", name)
            return PerProtocol(
                requests: ["none", "1xx", "2xx", "3xx", "4xx", "5xx"].map {
                    configuration.counter("http_requests_total", [proto, ("status", $0)])
                },
                streamsOpen: configuration.meter("http_streams_open", [proto]))
        }
        http2 = make("h2")
        http1 = make("http/1.1")
    }

    private func metrics(_ version: HTTPProtocolVersion) -> PerProtocol {
        version == .http2 ? http2 : http1
    }

    /// A request reached the handler.
    func requestStarted(_ version: HTTPProtocolVersion) {
        metrics(version).streamsOpen.increment()
    }

    /// The handler finished; `status` is the final response's status (`nil`: none was sent).
    func requestFinished(_ version: HTTPProtocolVersion, status: Int?) {
        let metrics = self.metrics(version)
        metrics.streamsOpen.decrement()
        let index = status.map { (100...599).contains($0) ? $0 / 100 : 0 } ?? 0
        metrics.requests[index].increment()
    }
}
