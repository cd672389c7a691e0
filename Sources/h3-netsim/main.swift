import Glibc
import NetSim

func printError(_ text: String) {
    var text = text
    if !text.hasSuffix("\n") { text += "\n" }
    let bytes = Array(text.utf8)
    _ = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
}

if CommandLine.arguments.dropFirst().first == "balance" {
    exit(runBalancer(Array(CommandLine.arguments.dropFirst(2))))
}

let options: Options
do {
    options = try Options.parse(Array(CommandLine.arguments.dropFirst()))
} catch let error as UsageError {
    if error.message.isEmpty {
        print(Options.usage)
        exit(0)
    }
    printError("h3-netsim: \(error.message)\nRun h3-netsim --help for the options.")
    exit(2)
} catch {
    printError("h3-netsim: \(error)")
    exit(2)
}

// Block SIGINT and SIGTERM before the relay thread starts (it inherits the mask), then wait
// for them here with a timeout.
var signals = sigset_t()
sigemptyset(&signals)
sigaddset(&signals, SIGINT)
sigaddset(&signals, SIGTERM)
pthread_sigmask(SIG_BLOCK, &signals, nil)

let simulator: NetworkSimulator
do {
    simulator = try NetworkSimulator.start(options.configuration)
} catch let error as NetSimError {
    printError("h3-netsim: \(error)")
    exit(error.kind == .invalidAddress || error.kind == .invalidConfiguration ? 2 : 1)
} catch {
    printError("h3-netsim: \(error)")
    exit(1)
}

print("h3-netsim: listening on \(simulator.listenAddress), forwarding to "
      + "\(options.configuration.serverAddress) from \(simulator.outgoingAddress?.description ?? "?")")
fflush(nil)

var start = timespec()
clock_gettime(CLOCK_MONOTONIC, &start)
let limit = options.duration.map { Double($0.components.seconds) + Double($0.components.attoseconds) / 1e18 }
while true {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    let elapsed = Double(now.tv_sec - start.tv_sec) + Double(now.tv_nsec - start.tv_nsec) / 1e9
    var wait = 1.0
    if let limit {
        if elapsed >= limit { break }
        wait = min(wait, limit - elapsed)
    }
    var timeout = timespec(tv_sec: Int(wait), tv_nsec: Int((wait - Double(Int(wait))) * 1e9))
    let received = sigtimedwait(&signals, nil, &timeout)
    if received == SIGINT || received == SIGTERM { break }
}

simulator.stop()
print(simulator.statistics)
