import FuzzEntryPoints

/// libFuzzer's per-input callback: feeds the input to `FuzzEntryPoints.sessionCacheFile` and turns a broken
/// invariant into a crash (a refused input is the expected outcome, not a finding).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    if case .invariantViolated(let problem) = FuzzEntryPoints.sessionCacheFile(bytes) {
        fatalError("session-cache-file: \(problem)")
    }
    return 0
}
