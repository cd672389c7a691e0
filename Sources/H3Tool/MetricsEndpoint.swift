import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus
import QUIC
import ServiceLifecycle

/// `h3 serve --metrics PORT`: the server's metrics in Prometheus' text format on a plain HTTP
/// port (`GET /metrics`), as a second service in `h3 serve`'s service group.
final class MetricsEndpoint: Service, Sendable {
    /// Where the metrics go; the endpoint serves what is in it.
    let registry: PrometheusCollectorRegistry
    private let channel: any Channel
    /// The bound address.
    var localAddress: SocketAddress? { channel.localAddress }

    private init(registry: PrometheusCollectorRegistry, channel: any Channel) {
        self.registry = registry
        self.channel = channel
    }

    /// The metrics configuration that reports into this endpoint's registry.
    var metricsConfiguration: QUICMetricsConfiguration {
        QUICMetricsConfiguration(factory: PrometheusMetricsFactory(registry: registry))
    }

    /// Binds the HTTP port.
    static func bind(host: String, port: Int) async throws -> MetricsEndpoint {
        let registry = PrometheusCollectorRegistry()
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.pipeline.configureHTTPServerPipeline().flatMap {
                    channel.pipeline.addHandler(MetricsHTTPHandler(registry: registry))
                }
            }
            .bind(host: host, port: port).get()
        return MetricsEndpoint(registry: registry, channel: channel)
    }

    /// Serves until a graceful shutdown or cancellation, then closes the port.
    func run() async throws {
        _ = await waitForServiceStop(closed: channel.closeFuture)
        try? await channel.close()
    }
}

/// Answers `GET /metrics` with the registry's text exposition; anything else with 404.
private final class MetricsHTTPHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let registry: PrometheusCollectorRegistry
    private var head: HTTPRequestHead?

    init(registry: PrometheusCollectorRegistry) {
        self.registry = registry
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
        case .body:
            break
        case .end:
            guard let head else { return }
            self.head = nil
            let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
            let found = path == "/metrics" && (head.method == .GET || head.method == .HEAD)
            let body = found ? registry.emitToBuffer() : Array("not found\n".utf8)
            var fields = HTTPHeaders()
            fields.add(name: "content-type", value: found ? "text/plain; version=0.0.4; charset=utf-8" : "text/plain")
            fields.add(name: "content-length", value: "\(body.count)")
            fields.add(name: "connection", value: "close")
            let response = HTTPResponseHead(version: head.version, status: found ? .ok : .notFound, headers: fields)
            context.write(wrapOutboundOut(.head(response)), promise: nil)
            if head.method != .HEAD {
                context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: body)))), promise: nil)
            }
            context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        }
    }
}
