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
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    if case .invariantViolated(let problem) = endpoint.send(bytes) {
        fatalError("endpoint-datagram: \(problem)")
    }
    return 0
}
