import CFuzzerDriver
import FuzzEntryPoints
#if canImport(Glibc)
import Glibc
#endif

/// The endpoint every input goes to, bound once per fuzzing process.
let endpoint: EndpointDatagramTarget = {
    do {
        return try EndpointDatagramTarget.start()
    } catch {
        fatalError("endpoint-datagram: \(error)")  // the harness cannot run; not a finding
    }
}()

/// libFuzzer's per-input callback: hands the input to a QUIC server endpoint on 127.0.0.1 as
/// one datagram and waits until it has been handled; the process must survive.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    if case .invariantViolated(let problem) = endpoint.send(bytes) {
        fatalError("endpoint-datagram: \(problem)")
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
