import NetSim

/// A command-line usage error: printed with the usage, exit status 2.
struct UsageError: Error {
    var message: String
}

/// The parsed command line.
struct Options {
    var configuration: NetworkSimulator.Configuration
    var duration: Duration?

    static let usage = """
    usage: h3-netsim --listen HOST:PORT --server HOST:PORT [options]

    A UDP relay between one QUIC client and a server that impairs the traffic.
    IPv6 addresses go in brackets: --listen [::1]:0

      --listen HOST:PORT             where the client sends to (port 0: any free port)
      --server HOST:PORT             where the relay forwards to
      --outgoing-address HOST        local address of the server-facing socket
      --seed N                       seed of the random decisions (default 0)
      --pcap FILE                    write the forwarded datagrams to a pcap file
      --duration SECONDS             stop after this long (default: until SIGINT/SIGTERM)
      --max-held N                   datagrams each direction may hold back (default 4096)

    Impairments apply to both directions; prefix with to-server- or to-client- for one
    (e.g. --to-server-loss 0.1, --to-client-delay-ms 30):
      --delay-ms MS                  fixed one-way delay
      --jitter-ms MS                 uniform delay variation (+/- MS)
      --loss P                       drop probability (0...1)
      --corrupt P                    probability of flipping one payload byte
      --duplicate P                  probability of sending a datagram twice
      --reorder P                    probability of holding a datagram back
      --reorder-delay-ms MS          how long a reordered datagram is held (default 10)
      --rate BYTES_PER_SECOND        bottleneck rate (suffixes k, M: 1000, 1000000)
      --queue-bytes N                bottleneck queue size (default 262144)
      --blackhole START-END[,...]    periods in seconds since start when everything is dropped
    Drops by 1-based index within a direction's flow:
      --drop-to-server LIST          e.g. 2-7,10
      --drop-to-client LIST
    NAT rebinding of the server-facing socket:
      --rebind-port-after SECONDS
      --rebind-address-after SECONDS:ADDRESS    e.g. 2:127.0.0.2
      --rebind-port-after-datagrams N           after N client→server datagrams
    """

    static func parse(_ arguments: [String]) throws -> Options {
        var listen: NetworkAddress?
        var server: NetworkAddress?
        var duration: Duration?
        var outgoing: String?
        var seed: UInt64 = 0
        var pcap: String?
        var maxHeld = 4096
        var toServer = Impairments()
        var toClient = Impairments()
        var rebinds: [NetworkSimulator.ScheduledRebind] = []

        var index = 0
        func value(_ flag: String) throws -> String {
            index += 1
            guard index < arguments.count else { throw UsageError(message: "\(flag) needs a value") }
            return arguments[index]
        }
        while index < arguments.count {
            let argument = arguments[index]
            var flag = argument
            var value_: String?
            if let equals = argument.firstIndex(of: "="), argument.hasPrefix("--") {
                flag = String(argument[..<equals])
                value_ = String(argument[argument.index(after: equals)...])
            }
            func next() throws -> String {
                if let value_ { return value_ }
                return try value(flag)
            }
            switch flag {
            case "--help", "-h":
                throw UsageError(message: "")
            case "--listen":
                listen = try address(try next(), flag)
            case "--server":
                server = try address(try next(), flag)
            case "--outgoing-address":
                outgoing = try next()
            case "--seed":
                seed = try number(try next(), flag)
            case "--pcap":
                pcap = try next()
            case "--duration":
                duration = try seconds(try next(), flag)
            case "--max-held":
                maxHeld = try number(try next(), flag)
            case "--drop-to-server":
                toServer.dropIndices = try indexList(try next(), flag)
            case "--drop-to-client":
                toClient.dropIndices = try indexList(try next(), flag)
            case "--rebind-port-after":
                rebinds.append(.init(.port, .after(try seconds(try next(), flag))))
            case "--rebind-port-after-datagrams":
                rebinds.append(.init(.port, .afterDatagrams(try number(try next(), flag))))
            case "--rebind-address-after":
                let text = try next()
                guard let colon = text.firstIndex(of: ":") else {
                    throw UsageError(message: "\(flag) wants SECONDS:ADDRESS, not '\(text)'")
                }
                let when = try seconds(String(text[..<colon]), flag)
                let host = String(text[text.index(after: colon)...])
                rebinds.append(.init(.address(host), .after(when)))
            default:
                var name = flag
                var applyToServer = true
                var applyToClient = true
                if name.hasPrefix("--to-server-") {
                    name = "--" + name.dropFirst("--to-server-".count)
                    applyToClient = false
                } else if name.hasPrefix("--to-client-") {
                    name = "--" + name.dropFirst("--to-client-".count)
                    applyToServer = false
                }
                guard impairmentFlags.contains(name) else {
                    throw UsageError(message: "unknown option '\(argument)'")
                }
                let text = try next()
                if applyToServer { try apply(name, text, flag, to: &toServer) }
                if applyToClient { try apply(name, text, flag, to: &toClient) }
            }
            index += 1
        }
        guard let listen else { throw UsageError(message: "--listen is required") }
        guard let server else { throw UsageError(message: "--server is required") }
        var configuration = NetworkSimulator.Configuration(listen: listen, server: server)
        configuration.outgoingHost = outgoing
        configuration.seed = seed
        configuration.pcapPath = pcap
        configuration.maxHeldDatagrams = maxHeld
        configuration.toServer = toServer
        configuration.toClient = toClient
        configuration.scheduledRebinds = rebinds
        return Options(configuration: configuration, duration: duration)
    }

    private static let impairmentFlags: Set<String> = [
        "--delay-ms", "--jitter-ms", "--loss", "--corrupt", "--duplicate", "--reorder",
        "--reorder-delay-ms", "--rate", "--queue-bytes", "--blackhole",
    ]

    private static func apply(_ name: String, _ text: String, _ flag: String,
                              to impairments: inout Impairments) throws {
        switch name {
        case "--delay-ms": impairments.delay = try milliseconds(text, flag)
        case "--jitter-ms": impairments.jitter = try milliseconds(text, flag)
        case "--loss": impairments.lossProbability = try probability(text, flag)
        case "--corrupt": impairments.corruptionProbability = try probability(text, flag)
        case "--duplicate": impairments.duplicationProbability = try probability(text, flag)
        case "--reorder": impairments.reorderProbability = try probability(text, flag)
        case "--reorder-delay-ms": impairments.reorderDelay = try milliseconds(text, flag)
        case "--rate": impairments.rateBytesPerSecond = try rate(text, flag)
        case "--queue-bytes": impairments.queueLimitBytes = try number(text, flag)
        case "--blackhole":
            impairments.blackholes = try text.split(separator: ",").map { part in
                let bounds = part.split(separator: "-", maxSplits: 1)
                guard bounds.count == 2 else {
                    throw UsageError(message: "\(flag) wants START-END in seconds, not '\(part)'")
                }
                let start = try seconds(String(bounds[0]), flag)
                let end = try seconds(String(bounds[1]), flag)
                guard start <= end else {
                    throw UsageError(message: "\(flag): '\(part)' ends before it starts")
                }
                return start..<end
            }
        default:
            throw UsageError(message: "unknown option '\(flag)'")
        }
    }

    private static func address(_ text: String, _ flag: String) throws -> NetworkAddress {
        do {
            return try NetworkAddress(parsing: text)
        } catch {
            throw UsageError(message: "\(flag): \(error)")
        }
    }

    private static func number<N: FixedWidthInteger>(_ text: String, _ flag: String) throws -> N {
        guard let value = N(text), value >= 0 else {
            throw UsageError(message: "\(flag) wants a non-negative integer, not '\(text)'")
        }
        return value
    }

    private static func decimal(_ text: String, _ flag: String) throws -> Double {
        guard let value = Double(text), value.isFinite, value >= 0 else {
            throw UsageError(message: "\(flag) wants a non-negative number, not '\(text)'")
        }
        return value
    }

    private static func probability(_ text: String, _ flag: String) throws -> Double {
        let value = try decimal(text, flag)
        guard value <= 1 else {
            throw UsageError(message: "\(flag) wants a probability between 0 and 1, not '\(text)'")
        }
        return value
    }

    private static func seconds(_ text: String, _ flag: String) throws -> Duration {
        let value = try decimal(text, flag)
        guard value <= 1_000_000 else { throw UsageError(message: "\(flag): '\(text)' is too long") }
        return .nanoseconds(Int64(value * 1e9))
    }

    private static func milliseconds(_ text: String, _ flag: String) throws -> Duration {
        let value = try decimal(text, flag)
        guard value <= 3_600_000 else { throw UsageError(message: "\(flag): '\(text)' is too long") }
        return .nanoseconds(Int64(value * 1e6))
    }

    private static func rate(_ text: String, _ flag: String) throws -> Int {
        var digits = Substring(text)
        var scale = 1.0
        if digits.hasSuffix("k") || digits.hasSuffix("K") {
            scale = 1e3
            digits = digits.dropLast()
        } else if digits.hasSuffix("M") {
            scale = 1e6
            digits = digits.dropLast()
        } else if digits.hasSuffix("G") {
            scale = 1e9
            digits = digits.dropLast()
        }
        let value = try decimal(String(digits), flag) * scale
        guard value >= 1, value < 1e12 else {
            throw UsageError(message: "\(flag) wants bytes per second (1 or more), not '\(text)'")
        }
        return Int(value)
    }

    private static func indexList(_ text: String, _ flag: String) throws -> [ClosedRange<Int>] {
        try text.split(separator: ",").map { part in
            let bounds = part.split(separator: "-", maxSplits: 1)
            guard let low = Int(bounds[0]), low >= 1,
                  let high = bounds.count == 2 ? Int(bounds[1]) : low, high >= low else {
                throw UsageError(message: "\(flag) wants 1-based indices like 2-7,10, not '\(part)'")
            }
            return low...high
        }
    }
}
