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
        .executable(name: "quic-demo", targets: ["quic-demo"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
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
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "quic-demo",
            dependencies: ["QUIC", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "QUICTests",
            dependencies: [
                "QUIC", "QUICSocket", "CNgtcp2", "CGnuTLS",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
    ]
)
