import Glibc
import NetSim
import QUICLB

/// `h3-netsim balance`: the stateless QUIC-LB load balancer in front of several servers.
struct BalanceOptions {
    var configuration: QUICLoadBalancer.Configuration
    var duration: Double?

    static let usage = """
    usage: h3-netsim balance --listen HOST:PORT --backend SERVER_ID=HOST:PORT... [options]

    A stateless QUIC load balancer: routes each client datagram to the backend whose server ID
    its destination connection ID carries (QUIC-LB), by a hash of the client's address and port
    when it carries none. Start the backends with the same QUIC-LB settings, e.g.
    h3 serve --server-id 01 --nonce-length 8 --quic-lb-key KEY.

      --listen HOST:PORT             where clients send to (port 0: any free port)
      --backend HEX=HOST:PORT        a backend and its server ID (repeat for each)
      --quic-lb-config-id N          config rotation codepoint, 0-6 (default 0)
      --nonce-length N               nonce length in bytes (default 8)
      --quic-lb-key HEX              the pool's 16-byte AES key (default: plaintext IDs)
      --routing quic-lb|4-tuple      how to route (default quic-lb; 4-tuple: a plain L4 balancer)
      --duration SECONDS             stop after this long (default: until SIGINT/SIGTERM)
    """

    static func parse(_ arguments: [String]) throws -> BalanceOptions {
        var listen: NetworkAddress?
        var backends: [QUICLoadBalancer.Backend] = []
        var configID = 0, nonceLength = 8
        var key: [UInt8]?
        var routing = QUICLoadBalancer.Routing.connectionID
        var duration: Double?
        var index = 0
        func value(_ flag: String) throws -> String {
            index += 1
            guard index < arguments.count else { throw UsageError(message: "\(flag) needs a value") }
            return arguments[index]
        }
        while index < arguments.count {
            let flag = arguments[index]
            switch flag {
            case "--help", "-h":
                throw UsageError(message: "")
            case "--listen":
                listen = try parseAddress(try value(flag), flag)
            case "--backend":
                let text = try value(flag)
                guard let equals = text.firstIndex(of: "="),
                      let id = [UInt8](quicLBHex: String(text[..<equals])), !id.isEmpty else {
                    throw UsageError(message: "--backend wants HEX_SERVER_ID=HOST:PORT, not '\(text)'")
                }
                backends.append(.init(serverID: id, address: try parseAddress(String(text[text.index(after: equals)...]), flag)))
            case "--quic-lb-config-id":
                configID = try integer(try value(flag), flag)
            case "--nonce-length":
                nonceLength = try integer(try value(flag), flag)
            case "--quic-lb-key":
                guard let bytes = [UInt8](quicLBHex: try value(flag)), bytes.count == 16 else {
                    throw UsageError(message: "--quic-lb-key must be 32 hexadecimal digits")
                }
                key = bytes
            case "--routing":
                switch try value(flag) {
                case "quic-lb": routing = .connectionID
                case "4-tuple": routing = .fourTuple
                case let other: throw UsageError(message: "--routing is quic-lb or 4-tuple, not '\(other)'")
                }
            case "--duration":
                guard let seconds = Double(try value(flag)), seconds > 0, seconds < 1e9 else {
                    throw UsageError(message: "--duration must be a positive number of seconds")
                }
                duration = seconds
            default:
                throw UsageError(message: "unknown option '\(flag)'")
            }
            index += 1
        }
        guard let listen else { throw UsageError(message: "--listen is required") }
        guard let first = backends.first else { throw UsageError(message: "at least one --backend is required") }
        guard backends.allSatisfy({ $0.serverID.count == first.serverID.count }) else {
            throw UsageError(message: "every backend's server ID must have the same length")
        }
        guard (0...6).contains(configID) else { throw UsageError(message: "--quic-lb-config-id must be 0 to 6") }
        let quicLB: QUICLBConfiguration
        do {
            quicLB = try QUICLBConfiguration(configID: UInt8(configID), serverIDLength: first.serverID.count,
                                             nonceLength: nonceLength, key: key)
        } catch {
            throw UsageError(message: error.description)
        }
        var configuration = QUICLoadBalancer.Configuration(listen: listen, backends: backends, quicLB: [quicLB])
        configuration.routing = routing
        return BalanceOptions(configuration: configuration, duration: duration)
    }

    private static func parseAddress(_ text: String, _ flag: String) throws -> NetworkAddress {
        do { return try NetworkAddress(parsing: text) } catch {
            throw UsageError(message: "\(flag): '\(text)' is not HOST:PORT")
        }
    }

    private static func integer(_ text: String, _ flag: String) throws -> Int {
        guard let number = Int(text) else { throw UsageError(message: "\(flag) wants a whole number, not '\(text)'") }
        return number
    }
}

/// Runs `h3-netsim balance …` and returns the exit status.
func runBalancer(_ arguments: [String]) -> Int32 {
    let options: BalanceOptions
    do {
        options = try BalanceOptions.parse(arguments)
    } catch let error as UsageError {
        if error.message.isEmpty { print(BalanceOptions.usage); return 0 }
        printError("h3-netsim balance: \(error.message)\nRun h3-netsim balance --help for the options.")
        return 2
    } catch {
        printError("h3-netsim balance: \(error)")
        return 2
    }
    var signals = sigset_t()
    sigemptyset(&signals)
    sigaddset(&signals, SIGINT)
    sigaddset(&signals, SIGTERM)
    pthread_sigmask(SIG_BLOCK, &signals, nil)
    let balancer: QUICLoadBalancer
    do {
        balancer = try QUICLoadBalancer.start(options.configuration)
    } catch {
        printError("h3-netsim balance: \(error)")
        return 1
    }
    let backends = options.configuration.backends.map { "\($0.serverID.map { String($0, radix: 16) }.joined())=\($0.address)" }
    print("h3-netsim balance: listening on \(balancer.listenAddress), backends \(backends.joined(separator: " ")), "
          + "routing \(options.configuration.routing == .connectionID ? "quic-lb" : "4-tuple")")
    fflush(nil)
    var waited = 0.0
    while options.duration.map({ waited < $0 }) ?? true {
        var timeout = timespec(tv_sec: 1, tv_nsec: 0)
        let received = sigtimedwait(&signals, nil, &timeout)
        if received == SIGINT || received == SIGTERM { break }
        waited += 1
    }
    balancer.stop()
    print(balancer.statistics)
    return 0
}
