import FuzzDriver
import FuzzEntryPoints

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
    fuzzInput(data, size, target: "endpoint-datagram") { endpoint.send($0) }
}

@main
enum FuzzerMain {
    static func main() { runLibFuzzer(fuzzOneInput) }
}
