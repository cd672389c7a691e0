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
        .executable(name: "h3", targets: ["h3"]),
        .executable(name: "h3-demo", targets: ["h3-demo"]),
        .library(name: "NetSim", targets: ["NetSim"]),
        .executable(name: "h3-netsim", targets: ["h3-netsim"]),
        .executable(name: "interop-endpoint", targets: ["InteropEndpoint"]),
        .executable(name: "h3-bench", targets: ["H3Bench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
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
        // The h3 command line tool (a curl-like client and `h3 serve`), as a library so that
        // tests can reach its parsers; the executable only calls into it.
        .target(
            name: "H3Tool",
            dependencies: [
                "QUIC", "QUICSocket", "HTTP3", "HTTPAPI",
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
                "HTTP3", "HTTPAPI", "QUIC", "QUICSocket", "CGnuTLS", "QUICTestSupport", "NetSim",
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "H3ToolTests",
            dependencies: [
                "H3Tool", "h3", "QUIC", "QUICTestSupport", "NetSim",
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
        // Benchmarks against ngtcp2's example peers (release builds): `swift run -c release h3-bench`.
        .executableTarget(
            name: "H3Bench",
            dependencies: ["QUIC", "HTTP3", "HTTPAPI",
                           .product(name: "HTTPTypes", package: "swift-http-types"),
                           .product(name: "NIOCore", package: "swift-nio")],
            path: "Benchmarks/H3Bench",
            swiftSettings: strictSettings
        ),
    ]
)
