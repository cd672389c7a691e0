// swift-tools-version: 6.1
import PackageDescription

let strictSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "swift-h3",
    platforms: [.macOS(.v14)],
    products: [
        .library(name: "QUIC", targets: ["QUIC"]),
        .library(name: "HTTPAPI", targets: ["HTTPAPI"]),
        .library(name: "QUICLB", targets: ["QUICLB"]),
        .library(name: "HTTP3", targets: ["HTTP3"]),
        .library(name: "HTTP2", targets: ["HTTP2"]),
        .library(name: "HTTPServer", targets: ["HTTPServer"]),
        .library(name: "ChoosingClient", targets: ["ChoosingClient"]),
        .library(name: "HTTPProxy", targets: ["HTTPProxy"]),
        .executable(name: "h3", targets: ["h3"]),
        // Hummingbird 2 applications over HTTP/3 (and HTTP/2, HTTP/1.1) on one port. Only this
        // product and its example depend on hummingbird.
        .library(name: "HummingbirdH3", targets: ["HummingbirdH3"]),
        .executable(name: "hummingbird-h3-example", targets: ["HummingbirdH3Example"]),
        .executable(name: "h3-demo", targets: ["h3-demo"]),
        .library(name: "NetSim", targets: ["NetSim"]),
        .executable(name: "h3-netsim", targets: ["h3-netsim"]),
        .executable(name: "interop-endpoint", targets: ["InteropEndpoint"]),
        .executable(name: "h3-bench", targets: ["H3Bench"]),
        // The per-input functions of the fuzz targets in Fuzz/ (a separate package).
        .library(name: "FuzzEntryPoints", targets: ["FuzzEntryPoints"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-nio-http2.git", from: "1.46.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1", traits: []),
    ],
    targets: [
        // System libraries (Debian packages). Shims wrap the function-like macros
        // and globals that Swift cannot import.
        .systemLibrary(name: "CGnuTLS", pkgConfig: "gnutls",
                       providers: [.apt(["libgnutls28-dev"])]),
        .systemLibrary(name: "CNgtcp2", pkgConfig: "libngtcp2",
                       providers: [.apt(["libngtcp2-dev"])]),
        .systemLibrary(name: "CNgtcp2CryptoGnuTLS", pkgConfig: "libngtcp2_crypto_gnutls",
                       providers: [.apt(["libngtcp2-crypto-gnutls-dev"])]),
        .systemLibrary(name: "CNghttp3", pkgConfig: "libnghttp3",
                       providers: [.apt(["libnghttp3-dev"])]),

        // The UDP layer: NIO datagram channels, batched sends.
        .target(
            name: "QUICSocket",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),
        // QUIC-LB routable connection IDs (draft-ietf-quic-load-balancers): encoder and decoder,
        // I/O-free, AES from GnuTLS.
        .target(name: "QUICLB", dependencies: ["CGnuTLS"], swiftSettings: strictSettings),
        .testTarget(name: "QUICLBTests", dependencies: ["QUICLB"], swiftSettings: strictSettings),
        // The QUIC transport: ngtcp2 + GnuTLS.
        .target(
            name: "QUIC",
            dependencies: [
                "CNgtcp2", "CNgtcp2CryptoGnuTLS", "CGnuTLS", "QUICSocket", "QUICLB",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ],
            swiftSettings: strictSettings
        ),
        // The transport-neutral HTTP API: round trippers, handlers, bodies.
        .target(
            name: "HTTPAPI",
            dependencies: [
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),
        // HTTP/3 over nghttp3: the client transport and the server.
        .target(
            name: "HTTP3",
            dependencies: [
                "CNghttp3", "CNgtcp2", "QUIC", "QUICSocket", "HTTPAPI",
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        // HTTP/2 (and HTTP/1.1) over TCP + TLS with swift-nio-http2 and swift-nio-ssl: the
        // client transport and the server, behind the same HTTPAPI as HTTP/3.
        .target(
            name: "HTTP2",
            dependencies: [
                "HTTPAPI", "QUIC",
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOHPACK", package: "swift-nio-http2"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        // HTTP/3 and HTTP/2 on one port (UDP + TCP), with Alt-Svc advertising HTTP/3.
        .target(
            name: "HTTPServer",
            dependencies: [
                "HTTP2", "HTTP3", "HTTPAPI", "QUIC", "QUICSocket",
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        // A Hummingbird responder (a Router) as an HTTPHandler, served by HTTPServer.
        .target(
            name: "HummingbirdH3",
            dependencies: [
                "HTTPServer", "HTTP3", "HTTP2", "HTTPAPI", "QUIC", "QUICSocket",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "HummingbirdH3Example",
            dependencies: [
                "HummingbirdH3", "HTTPServer", "HTTPAPI", "QUIC",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            path: "Examples/HummingbirdH3Example",
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "HummingbirdH3Tests",
            dependencies: [
                "HummingbirdH3", "HummingbirdH3Example", "HTTPServer", "HTTP3", "HTTP2", "HTTPAPI", "QUIC", "QUICTestSupport",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        // The client that chooses between HTTP/3 and HTTP/2: Alt-Svc discovery, racing, fallback.
        .target(
            name: "ChoosingClient",
            dependencies: [
                "HTTP3", "HTTP2", "HTTPAPI", "QUIC",
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        // A reverse proxy handler (ProxyHandler) for any of our servers: HTTP/1.1 backends over
        // NIO's codec, HTTP/2 backends over HTTP2Transport.
        .target(
            name: "HTTPProxy",
            dependencies: [
                "HTTP2", "HTTPAPI", "QUIC",
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        // The h3 command line tool (a curl-like client and `h3 serve`), as a library so that
        // tests can reach its parsers; the executable only calls into it.
        .target(
            name: "H3Tool",
            dependencies: [
                "QUIC", "QUICLB", "QUICSocket", "HTTP3", "HTTP2", "HTTPServer", "HTTPAPI", "ChoosingClient", "HTTPProxy",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),
        .executableTarget(name: "h3", dependencies: ["H3Tool"], swiftSettings: strictSettings),
        // The quic-interop-runner endpoint (Interop/README.md).
        .executableTarget(
            name: "InteropEndpoint",
            dependencies: [
                "QUIC", "HTTP3", "HTTPAPI",
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            path: "Interop/Endpoint",
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "h3-demo",
            dependencies: ["QUIC", "HTTP3", "HTTPAPI",
                           .product(name: "HTTPTypes", package: "swift-http-types"),
                           .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: strictSettings
        ),
        // Shared by the test targets: run-time PKI, timeouts, hashing, peer processes.
        .target(
            name: "QUICTestSupport",
            dependencies: ["QUIC", "CGnuTLS", .product(name: "NIOCore", package: "swift-nio"),
                           .product(name: "NIOPosix", package: "swift-nio")],
            path: "Tests/QUICTestSupport",
            // Optimized even in debug builds: it generates and hashes hundreds of megabytes.
            swiftSettings: strictSettings + [.unsafeFlags(["-O"])]
        ),
        .testTarget(
            name: "QUICTests",
            dependencies: [
                "QUIC", "QUICLB", "QUICSocket", "CNgtcp2", "CGnuTLS", "QUICTestSupport", "NetSim",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "ServiceLifecycleTestKit", package: "swift-service-lifecycle"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ],
            swiftSettings: strictSettings
        ),
        // What the HTTP test targets share: the test handler, body hashing, generated bodies.
        .target(
            name: "HTTPTestSupport",
            dependencies: ["HTTPAPI", "QUICTestSupport",
                           .product(name: "HTTPTypes", package: "swift-http-types"),
                           .product(name: "NIOCore", package: "swift-nio"),
                           .product(name: "NIOPosix", package: "swift-nio")],
            path: "Tests/HTTPTestSupport",
            swiftSettings: strictSettings
        ),
        // HTTP/2 and HTTP/1.1 over TCP: the server, the client transport, frame handling.
        .testTarget(
            name: "HTTP2Tests",
            dependencies: [
                "HTTP2", "HTTPAPI", "QUICTestSupport", "HTTPTestSupport",
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "HTTP3Tests",
            dependencies: [
                "HTTP3", "HTTP2", "HTTPServer", "HTTPAPI", "QUIC", "QUICSocket", "CGnuTLS", "QUICTestSupport", "NetSim",
                "HTTPTestSupport", "HTTPProxy",
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "ServiceLifecycleTestKit", package: "swift-service-lifecycle"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "ChoosingClientTests",
            dependencies: [
                "ChoosingClient", "HTTP3", "HTTP2", "HTTPServer", "HTTPAPI", "QUIC", "QUICTestSupport",
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "HTTPAPITests",
            dependencies: [
                "HTTPAPI",
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "H3ToolTests",
            dependencies: [
                "H3Tool", "h3", "QUIC", "QUICLB", "QUICTestSupport", "HTTP3", "HTTP2", "HTTPServer", "HTTPAPI", "NetSim", "HTTPProxy",
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),
        // The userspace network simulator: a UDP relay that impairs traffic, and a stateless
        // QUIC-LB load balancer (its only dependency is QUICLB).
        // Optimized even in debug builds: tests push tens of megabytes through it.
        .target(
            name: "NetSim",
            dependencies: ["QUICLB"],
            swiftSettings: strictSettings + [.unsafeFlags(["-O"])]
        ),
        .executableTarget(
            name: "h3-netsim",
            dependencies: ["NetSim", "QUICLB"],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "NetSimTests",
            dependencies: ["NetSim", "QUICLB"],
            swiftSettings: strictSettings
        ),
        // What each libFuzzer target in Fuzz/ does with one input; the regression tests replay
        // Fuzz/Corpus and Fuzz/Regressions through the same functions.
        .target(
            name: "FuzzEntryPoints",
            dependencies: ["HTTPAPI", "QUIC", "H3Tool", "HTTP3",
                           .product(name: "NIOCore", package: "swift-nio"),
                           .product(name: "NIOPosix", package: "swift-nio")],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "FuzzRegressionTests",
            dependencies: ["FuzzEntryPoints"],
            swiftSettings: strictSettings
        ),
        // Benchmarks against ngtcp2's example peers (release builds): `swift run -c release h3-bench`.
        .executableTarget(
            name: "H3Bench",
            dependencies: ["QUIC", "HTTP3", "HTTP2", "HTTPAPI", "ChoosingClient", "HTTPProxy",
                           .product(name: "HTTPTypes", package: "swift-http-types"),
                           .product(name: "NIOCore", package: "swift-nio"),
                           .product(name: "Prometheus", package: "swift-prometheus"),
                           .product(name: "CoreMetrics", package: "swift-metrics")],
            path: "Benchmarks/H3Bench",
            swiftSettings: strictSettings
        ),
    ]
)
