import FuzzDriver
import FuzzEntryPoints

/// libFuzzer's per-input callback: `FuzzEntryPoints.h3Arguments` judges the input.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    fuzzInput(data, size, target: "h3-arguments", entry: FuzzEntryPoints.h3Arguments)
}

@main
enum FuzzerMain {
    static func main() { runLibFuzzer(fuzzOneInput) }
}
