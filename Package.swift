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
        .library(name: "HTTP3", targets: ["HTTP3"]),
        .library(name: "HTTP2", targets: ["HTTP2"]),
        .library(name: "HTTPServer", targets: ["HTTPServer"]),
        .library(name: "ChoosingClient", targets: ["ChoosingClient"]),
        .executable(name: "h3", targets: ["h3"]),
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
        // The QUIC transport: ngtcp2 + GnuTLS.
        .target(
            name: "QUIC",
            dependencies: [
                "CNgtcp2", "CNgtcp2CryptoGnuTLS", "CGnuTLS", "QUICSocket",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
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
        // The h3 command line tool (a curl-like client and `h3 serve`), as a library so that
        // tests can reach its parsers; the executable only calls into it.
        .target(
            name: "H3Tool",
            dependencies: [
                "QUIC", "QUICSocket", "HTTP3", "HTTP2", "HTTPServer", "HTTPAPI", "ChoosingClient",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
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
                "QUIC", "QUICSocket", "CNgtcp2", "CGnuTLS", "QUICTestSupport", "NetSim",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "HTTP3Tests",
            dependencies: [
                "HTTP3", "HTTP2", "HTTPServer", "HTTPAPI", "QUIC", "QUICSocket", "CGnuTLS", "QUICTestSupport", "NetSim",
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
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
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "H3ToolTests",
            dependencies: [
                "H3Tool", "h3", "QUIC", "QUICTestSupport", "HTTP3", "HTTP2", "HTTPServer", "HTTPAPI", "NetSim",
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),
        // The userspace network simulator: a dependency-free UDP relay that impairs traffic.
        // Optimized even in debug builds: tests push tens of megabytes through it.
        .target(
            name: "NetSim",
            swiftSettings: strictSettings + [.unsafeFlags(["-O"])]
        ),
        .executableTarget(
            name: "h3-netsim",
            dependencies: ["NetSim"],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "NetSimTests",
            dependencies: ["NetSim"],
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
            dependencies: ["QUIC", "HTTP3", "HTTP2", "HTTPAPI", "ChoosingClient",
                           .product(name: "HTTPTypes", package: "swift-http-types"),
                           .product(name: "NIOCore", package: "swift-nio")],
            path: "Benchmarks/H3Bench",
            swiftSettings: strictSettings
        ),
    ]
)
