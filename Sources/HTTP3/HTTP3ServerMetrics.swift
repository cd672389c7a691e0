import CoreMetrics
import NIOCore
import QUIC

/// An HTTP/3 server's request metrics (swift-metrics), made once from the QUIC server's
/// ``QUICMetricsConfiguration``; the transport's own metrics live in the QUIC endpoint. Labels
/// are bounded: the protocol, the status class, the reason of a GOAWAY.
final class HTTP3ServerMetrics: Sendable {
    /// Why the server sent GOAWAY (the `cause` label).
    enum GoAwayCause: String, CaseIterable {
        /// The server is shutting down gracefully.
        case shutdown
        /// ``HTTP3ServerConfiguration/goawayChance`` picked this connection.
        case chance
        /// The operator moved clients to new connections (`goAway()`).
        case rebalance
    }

    private let requests: [Counter]  // by status class 1xx...5xx; index 0: no response
    private let streamsOpen: Meter
    private let goaways: [GoAwayCause: Counter]

    /// Creates the metrics; `nil` when the configuration disables them.
    init?(_ configuration: QUICMetricsConfiguration) {
        guard configuration.isEnabled else { return nil }
        let proto = ("protocol", "h3")
        requests = ["none", "1xx", "2xx", "3xx", "4xx", "5xx"].map {
            configuration.counter("http_requests_total", [proto, ("status", $0)])
        }
        streamsOpen = configuration.meter("http_streams_open", [proto])
        var goaways: [GoAwayCause: Counter] = [:]
        for cause in GoAwayCause.allCases {
            goaways[cause] = configuration.counter("http_goaways_sent_total", [proto, ("cause", cause.rawValue)])
        }
        self.goaways = goaways
    }

    /// A request reached the handler.
    func requestStarted() {
        streamsOpen.increment()
    }

    /// The handler finished; `status` is the final response's status (`nil`: none was sent).
    func requestFinished(status: Int?) {
        streamsOpen.decrement()
        let index = status.map { (100...599).contains($0) ? $0 / 100 : 0 } ?? 0
        requests[index].increment()
    }

    /// GOAWAY went out on one connection.
    func goAwaySent(_ cause: GoAwayCause) {
        goaways[cause]?.increment()
    }
}
