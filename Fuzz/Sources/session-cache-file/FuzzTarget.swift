import FuzzDriver
import FuzzEntryPoints

/// libFuzzer's per-input callback: `FuzzEntryPoints.sessionCacheFile` judges the input.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    fuzzInput(data, size, target: "session-cache-file", entry: FuzzEntryPoints.sessionCacheFile)
}

@main
enum FuzzerMain {
    static func main() { runLibFuzzer(fuzzOneInput) }
}
