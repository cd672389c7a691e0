import FuzzDriver
import FuzzEntryPoints

/// libFuzzer's per-input callback: `FuzzEntryPoints.altSvcCacheFile` judges the input.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    fuzzInput(data, size, target: "altsvc-cache-file", entry: FuzzEntryPoints.altSvcCacheFile)
}

@main
enum FuzzerMain {
    static func main() { runLibFuzzer(fuzzOneInput) }
}
