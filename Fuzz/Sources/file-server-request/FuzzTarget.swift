import FuzzDriver
import FuzzEntryPoints

/// libFuzzer's per-input callback: `FuzzEntryPoints.fileServerRequest` judges the input.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    fuzzInput(data, size, target: "file-server-request", entry: FuzzEntryPoints.fileServerRequest)
}

@main
enum FuzzerMain {
    static func main() { runLibFuzzer(fuzzOneInput) }
}
