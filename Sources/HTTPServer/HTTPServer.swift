import HTTP2
import HTTP3
import HTTPAPI
import HTTPTypes
import Logging
import NIOCore
import NIOPosix
import QUIC
import QUICSocket

/// Settings of a server that answers HTTP/3 over UDP and HTTP/2 (or HTTP/1.1) over TCP on the
/// same port, and advertises HTTP/3 to TCP clients with `Alt-Svc`.
public struct HTTPServerConfiguration: Sendable {
    /// The address to bind (both sockets).
    public var host: String
    /// The port to bind, TCP and UDP alike (0 picks one that is free for both).
    public var port: Int
    /// TLS settings for both transports (each sets its own ALPN list).
    public var tls: QUICTLSConfiguration
    /// The HTTP/3 side's settings; `host`, `port` and `tls` above replace its own.
    public var http3: HTTP3ServerConfiguration
    /// The HTTP/2 side's settings; `host`, `port` and `tls` above replace its own.
    public var http2: HTTP2ServerConfiguration
    /// The UDP port advertised in `Alt-Svc` when clients reach HTTP/3 on another port than the
    /// one bound (a server behind a port-mapping proxy or load balancer); `nil`: the bound port.
    public var advertisedPort: Int?
    /// How long clients may remember the advertisement (`ma`, seconds).
    public var altSvcMaxAge: Int
    /// Whether TCP responses carry `Alt-Svc` at all.
    public var advertiseHTTP3: Bool
    /// What both sides report through swift-metrics; replaces their own settings.
    public var metrics = QUICMetricsConfiguration()

    /// Creates settings for a certificate chain and key (in `tls`).
    public init(host: String = "::", port: Int = 443, tls: QUICTLSConfiguration, advertisedPort: Int? = nil,
                altSvcMaxAge: Int = 86400, advertiseHTTP3: Bool = true) {
        self.host = host
        self.port = port
        self.tls = tls
        self.http3 = HTTP3ServerConfiguration(host: host, port: port, tls: tls)
        self.http2 = HTTP2ServerConfiguration(host: host, port: port, tls: tls)
        self.advertisedPort = advertisedPort
        self.altSvcMaxAge = altSvcMaxAge
        self.advertiseHTTP3 = advertiseHTTP3
    }

    /// The `Alt-Svc` field value advertising HTTP/3 on `port` (RFC 7838): `h3=":PORT"; ma=SECONDS`.
    public static func altSvcValue(port: Int, maxAge: Int) -> String {
        "h3=\":\(port)\"; ma=\(maxAge)"
    }
}

/// One handler served over HTTP/3 (UDP) and HTTP/2 + HTTP/1.1 (TCP + TLS) on one port, the way
/// browsers discover HTTP/3: every TCP response carries `Alt-Svc: h3=":PORT"; ma=86400`.
///
/// ```swift
/// let server = try await HTTPServer.bind(configuration: .init(port: 443, tls: tls), handler: handler)
/// ...
/// await server.shutdown()   // both sides: GOAWAY, requests in flight finish, then close
/// ```
public final class HTTPServer: Sendable {
    /// The HTTP/3 (UDP) side.
    public let http3: HTTP3Server
    /// The HTTP/2 and HTTP/1.1 (TCP) side.
    public let http2: HTTP2Server
    /// The port both sides listen on.
    public let port: Int
    /// The `Alt-Svc` value TCP responses carry (`nil` when advertising is off).
    public let altSvc: String?

    private init(http3: HTTP3Server, http2: HTTP2Server, port: Int, altSvc: String?) {
        self.http3 = http3
        self.http2 = http2
        self.port = port
        self.altSvc = altSvc
    }

    /// Binds UDP and TCP on the same port and starts serving `handler` on both.
    ///
    /// - Throws: ``HTTP2ConfigurationError`` for unusable settings, or the bind error of either socket.
    public static func bind(configuration: HTTPServerConfiguration, handler: some HTTPHandler,
                            socketOptions: UDPSocketOptions = .init(),
                            eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
                            logger: Logger = Logger(label: "swift-h3.server")) async throws -> HTTPServer {
        guard (0...65535).contains(configuration.port) else {
            throw HTTP2ConfigurationError("port \(configuration.port) is out of range")
        }
        if let advertised = configuration.advertisedPort, !(1...65535).contains(advertised) {
            throw HTTP2ConfigurationError("advertised port \(advertised) is out of range")
        }
        guard configuration.altSvcMaxAge >= 0 else { throw HTTP2ConfigurationError("Alt-Svc max-age must not be negative") }
        // With port 0 the UDP side picks a port; TCP may find it taken and the pair is tried again.
        let attempts = configuration.port == 0 ? 10 : 1
        var lastError: (any Error)?
        for _ in 0..<attempts {
            var http3Configuration = configuration.http3
            http3Configuration.host = configuration.host
            http3Configuration.port = configuration.port
            var quicTLS = configuration.tls
            quicTLS.applicationProtocols = ["h3"]
            http3Configuration.quic.quic.tls = quicTLS
            http3Configuration.quic.metrics = configuration.metrics
            let http3 = try await HTTP3Server.bind(configuration: http3Configuration, handler: handler,
                                                   socketOptions: socketOptions, eventLoopGroup: eventLoopGroup,
                                                   logger: logger)
            let port = http3.localAddress.port ?? configuration.port
            var http2Configuration = configuration.http2
            http2Configuration.host = configuration.host
            http2Configuration.port = port
            http2Configuration.tls = configuration.tls
            http2Configuration.metrics = configuration.metrics
            var altSvc: String?
            if configuration.advertiseHTTP3 {
                let value = HTTPServerConfiguration.altSvcValue(port: configuration.advertisedPort ?? port,
                                                                maxAge: configuration.altSvcMaxAge)
                http2Configuration.responseHeaders[.altSvc] = value
                altSvc = value
            }
            do {
                let http2 = try await HTTP2Server.bind(configuration: http2Configuration, handler: handler,
                                                       eventLoopGroup: eventLoopGroup, logger: logger)
                return HTTPServer(http3: http3, http2: http2, port: port, altSvc: altSvc)
            } catch {
                lastError = error
                await http3.shutdown()
            }
        }
        throw lastError ?? HTTP2ConfigurationError("cannot bind TCP and UDP on one port")
    }

    /// Shuts both sides down gracefully, at the same time.
    public func shutdown() async {
        async let udp: Void = http3.shutdown()
        async let tcp: Void = http2.shutdown()
        _ = await (udp, tcp)
    }
}
