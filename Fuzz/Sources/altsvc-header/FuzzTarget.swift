import FuzzDriver
import FuzzEntryPoints

/// libFuzzer's per-input callback: `FuzzEntryPoints.altSvcHeader` judges the input.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    fuzzInput(data, size, target: "altsvc-header", entry: FuzzEntryPoints.altSvcHeader)
}

@main
enum FuzzerMain {
    static func main() { runLibFuzzer(fuzzOneInput) }
}
