import CFuzzerDriver
import FuzzEntryPoints
#if canImport(Glibc)
import Glibc
#endif

/// libFuzzer's per-input callback, as a C function pointer.
public typealias FuzzerCallback = @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt

/// One input for a target's entry point: a refused input is the expected outcome; a broken
/// invariant becomes a crash, which is how libFuzzer records a finding.
public func fuzzInput(_ data: UnsafePointer<UInt8>?, _ size: Int, target: String,
                      entry: ([UInt8]) -> FuzzOutcome) -> CInt {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    if case .invariantViolated(let problem) = entry(bytes) {
        fatalError("\(target): \(problem)")  // the fuzzer's finding, by design
    }
    return 0
}

/// Hands the command line to libFuzzer's driver (all of libFuzzer's flags work) with the
/// target's callback. SwiftPM names an executable's entry point `<module>_main` and links
/// `main` to it, so libFuzzer's own `main` is never used; each target's `@main` calls this.
public func runLibFuzzer(_ callback: FuzzerCallback) -> Never {
    var argc = CommandLine.argc
    var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
    exit(LLVMFuzzerRunDriver(&argc, &argv, callback))
}
