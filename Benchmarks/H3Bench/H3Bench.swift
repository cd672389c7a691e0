// h3-bench: our QUIC + HTTP/3 stack against ngtcp2's example peers (gtlsserver/gtlsclient) on
// loopback, both measured in the same run. See Benchmarks/README.md.
//
//   swift run -c release h3-bench [--quick] [--scenario N]... [--runs N]
import Foundation
#if canImport(Glibc)
import Glibc
#endif

@main
struct H3Bench {
    static let usage = """
        usage: h3-bench [--quick] [--scenario N]... [--runs N]
               h3-bench fallback [--runs N]   the delay racing adds when UDP is blocked (one process)
          --quick        smaller sizes and fewer runs (a smoke test, not for RESULTS.md)
          --scenario N   run only scenario N (1 bulk + 5 CPU, 2 requests, 3 handshakes, 4 memory, 6 metrics on vs off,
                         7 proxy); repeatable
          --runs N       runs of scenarios 1 and 6 (default 5; the median is reported)
        """

    static func main() async {
        let arguments = CommandLine.arguments
        do {
            switch arguments.dropFirst().first {
            case "serve": try await OurServer.run(Arguments(arguments.dropFirst(2)))
            case "fetch": try await OurClient.fetch(Arguments(arguments.dropFirst(2)))
            case "idle": try await OurClient.idle(Arguments(arguments.dropFirst(2)))
            case "fallback": try await FallbackBench.run(Arguments(arguments.dropFirst(2)))
            case "--help", "-h", "help": print(usage)
            default: try drive(Arguments(arguments.dropFirst()))
            }
        } catch {
            FileHandle.standardError.write(Data("h3-bench: \(error)\n".utf8))
            exit(1)
        }
        exit(0)
    }

    static func drive(_ arguments: Arguments) throws {
        var sizes = arguments.flags.contains("quick") ? Sizes.quick : Sizes()
        if let runs = arguments.optional("runs") {
            guard let value = Int(runs), value >= 1 else { throw BenchFailure("--runs needs a positive number") }
            sizes.bulkRuns = value
        }
        let selected = Set((arguments.optional("scenario") ?? "1,2,3,4,5,6,7").split(separator: ",").compactMap { Int($0) })
        guard !selected.isEmpty, selected.isSubset(of: 1...7) else { throw BenchFailure("--scenario takes 1 to 7") }
        let bench = try Bench(sizes: sizes)
        defer { bench.cleanUp() }
        let started = now()
        bench.report.emit("h3-bench \(arguments.flags.contains("quick") ? "--quick " : "")on \(machineNotes())")
        bench.report.emit("Pinned on both sides: AES-128-GCM only, CUBIC, max UDP payload 1452 bytes, loopback 127.0.0.1.")
        if !selected.isDisjoint(with: [1, 5]) { try bench.bulk() }
        if selected.contains(2) { try bench.requests() }
        if selected.contains(3) { try bench.handshakes() }
        if selected.contains(4) { try bench.memory() }
        if selected.contains(6) { try bench.metricsCost() }
        if selected.contains(7) { try bench.proxy() }
        bench.report.note("Total time \(fmt(now() - started)) s; load average after: \(machineNotes().components(separatedBy: "load average ").last ?? "?")")
    }
}
