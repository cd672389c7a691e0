import CFuzzerDriver
import FuzzEntryPoints
#if canImport(Glibc)
import Glibc
#endif

/// libFuzzer's per-input callback: feeds the input to `FuzzEntryPoints.h3Arguments` and turns a broken
/// invariant into a crash (a refused input is the expected outcome, not a finding).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    if case .invariantViolated(let problem) = FuzzEntryPoints.h3Arguments(bytes) {
        fatalError("h3-arguments: \(problem)")
    }
    return 0
}

/// The entry point. SwiftPM names an executable's entry point `<module>_main` and links `main`
/// to it, so libFuzzer's own `main` is never used: this hands the command line to libFuzzer's
/// driver instead (all of libFuzzer's flags work).
@main
enum FuzzerMain {
    static func main() {
        var argc = CommandLine.argc
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
        exit(LLVMFuzzerRunDriver(&argc, &argv, fuzzOneInput))
    }
}
