import Foundation

/// A test case this endpoint cannot run (exit code 127, as the runner expects).
struct UnsupportedTestCase: Error, CustomStringConvertible {
    let name: String
    var description: String { "test case '\(name)' is not supported" }
}

/// A failure with a message for the log.
struct EndpointError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// The runner's contract, read from the environment.
struct EndpointSettings: Sendable {
    enum Role: String, Sendable { case client, server }

    /// How the test case is served or fetched.
    enum Mode: Sendable {
        /// HTTP/0.9 over QUIC, ALPN hq-interop.
        case hq
        /// HTTP/3, ALPN h3.
        case h3
    }

    let role: Role
    let testCase: String
    let mode: Mode
    let requests: [URL]
    let www: String
    let downloads: String
    let certificates: String
    let port: Int
    let bindAddress: String
    let qlogDirectory: String?
    /// Server: require address validation (Retry) for every new connection.
    let retry: Bool
    /// Offer only ChaCha20-Poly1305.
    let chacha20Only: Bool
    /// Client: start a key update once the handshake is confirmed.
    let keyUpdate: Bool
    /// Client: fetch the first URL, close, then the rest on a resumed second connection.
    let resumption: Bool
    /// Client: like resumption, with the second connection's requests sent in 0-RTT.
    let zeroRTT: Bool
    /// Client: one connection per URL, one after another (handshakeloss, handshakecorruption).
    let connectionPerRequest: Bool
    /// Server (connectionmigration): the preferred address to advertise, and where to bind
    /// its socket (a local extension of the contract: `PREFERRED_ADDRESS=host:port`, and
    /// `PREFERRED_BIND=host:port` when a relay sits in front of it). Clients follow it anyway.
    let preferredAddress: (host: String, port: Int, bindHost: String?, bindPort: Int?)?

    /// Test cases that need nothing beyond a correct transfer (the network does the rest).
    static let transferCases: Set<String> = [
        "handshake", "transfer", "multiplexing", "longrtt", "goodput", "crosstraffic", "blackhole",
        "handshakeloss", "transferloss", "handshakecorruption", "transfercorruption", "ecn",
        "amplificationlimit", "ipv6", "rebind-port", "rebind-addr",
    ]
    /// Cases run with a special setting.
    static let specialCases: Set<String> = ["retry", "chacha20", "keyupdate", "http3", "resumption", "zerortt",
                                            "multiconnect", "connectionmigration"]

    /// `host:port` or `[v6]:port`.
    static func hostPort(_ text: String) -> (host: String, port: Int)? {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
              (1...65535).contains(port) else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return host.isEmpty ? nil : (host, port)
    }

    init(_ environment: [String: String]) throws {
        guard let roleText = environment["ROLE"], let role = Role(rawValue: roleText) else {
            throw EndpointError("ROLE must be client or server")
        }
        self.role = role
        testCase = environment["TESTCASE"] ?? ""
        // v2 needs QUIC v2, which this build lacks: the runner expects 127 for it.
        guard EndpointSettings.transferCases.contains(testCase) || EndpointSettings.specialCases.contains(testCase) else {
            throw UnsupportedTestCase(name: testCase)
        }
        // ALPN=h3 (a local extension of the contract) runs any case over h3, for pairing with
        // peers that speak only h3 (ngtcp2's example programs).
        let h3Requested = environment["ALPN"] == "h3"
        mode = testCase == "http3" || h3Requested ? .h3 : .hq
        retry = testCase == "retry"
        chacha20Only = testCase == "chacha20"
        keyUpdate = testCase == "keyupdate"
        resumption = testCase == "resumption" || testCase == "zerortt"
        zeroRTT = testCase == "zerortt"
        connectionPerRequest = testCase == "multiconnect"
        if testCase == "connectionmigration" && role == .server {
            guard let advertised = environment["PREFERRED_ADDRESS"].flatMap(Self.hostPort) else {
                throw EndpointError("connectionmigration: PREFERRED_ADDRESS=host:port is not set")
            }
            let bind = environment["PREFERRED_BIND"].flatMap(Self.hostPort)
            preferredAddress = (advertised.host, advertised.port, bind?.host, bind?.port)
        } else {
            preferredAddress = nil
        }
        www = environment["WWW"] ?? "/www"
        downloads = environment["DOWNLOADS"] ?? "/downloads"
        certificates = environment["CERTS"] ?? "/certs"
        port = environment["PORT"].flatMap(Int.init) ?? 443
        bindAddress = environment["BIND_ADDRESS"] ?? "::"
        qlogDirectory = environment["QLOGDIR"].flatMap { $0.isEmpty ? nil : $0 }
        var requests: [URL] = []
        for text in (environment["REQUESTS"] ?? "").split(separator: " ") {
            guard let url = URL(string: String(text)), url.host != nil else {
                throw EndpointError("bad URL in REQUESTS: \(text)")
            }
            requests.append(url)
        }
        if role == .client && requests.isEmpty { throw EndpointError("REQUESTS is empty") }
        self.requests = requests
        if let qlogDirectory {
            try FileManager.default.createDirectory(atPath: qlogDirectory, withIntermediateDirectories: true)
        }
    }
}
