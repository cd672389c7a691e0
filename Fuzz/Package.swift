// swift-tools-version: 6.1
// libFuzzer targets for swift-h3, one executable per input surface. Not buildable without the
// fuzzer sanitizer (libFuzzer provides `main`): use `Fuzz/run`, or
//   swift build -c debug -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library --package-path Fuzz
// Each target's LLVMFuzzerTestOneInput calls a function of the main package's FuzzEntryPoints
// library, which Tests/FuzzRegressionTests also calls to replay Fuzz/Corpus and Fuzz/Regressions.
import PackageDescription

let targets = ["altsvc-header", "altsvc-cache-file", "session-cache-file", "h3-arguments", "h3-values", "endpoint-datagram",
               "file-server-request"]

let package = Package(
    name: "swift-h3-fuzz",
    platforms: [.macOS(.v14)],
    dependencies: [
        // Through a symbolic link named swift-h3 (to ..): a checkout folder named like this one
        // (fuzz) would otherwise give both packages the same identity.
        .package(path: "Dependencies/swift-h3"),
    ],
    targets: [
        // Declares libFuzzer's LLVMFuzzerRunDriver, which each target's entry point calls.
        .target(name: "CFuzzerDriver"),
        // What every target's entry point shares: the input check and the hand-over to libFuzzer.
        .target(name: "FuzzDriver", dependencies: ["CFuzzerDriver", .product(name: "FuzzEntryPoints", package: "swift-h3")]),
    ] + targets.map { name in
        .executableTarget(
            name: name,
            dependencies: ["FuzzDriver", .product(name: "FuzzEntryPoints", package: "swift-h3")],
            path: "Sources/\(name)"
        )
    }
)
