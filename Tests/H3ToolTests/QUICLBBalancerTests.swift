import Foundation
import NIOCore
import NetSim
import QUICLB
import QUICTestSupport
import Testing

/// Three `h3 serve` instances with QUIC-LB connection IDs behind the simulator's stateless
/// balancer: clients whose address changes mid-download (their own migration, a NAT
/// rebinding) stay on the instance that owns their connection; with plain 4-tuple hashing the
/// same rebinding lands on another instance and the download fails.
@Suite("QUIC-LB: h3 serve instances behind a stateless balancer", .serialized)
struct QUICLBBalancerTests {
    static let keyHex = "8f95f09245765f80256934e50c66207f"

    /// A 20 MiB file in a directory of its own.
    static let bigFile: (directory: URL, data: Data) = {
        do {
            let directory = try scratchDirectory()
            var generator = PatternGenerator(seed: 0x1b)
            var data = Data()
            for _ in 0..<80 { data.append(contentsOf: generator.next(256 << 10).readableBytesView) }
            try data.write(to: directory.appendingPathComponent("big.bin"))
            return (directory, data)
        } catch {
            preconditionFailure("cannot write the test file: \(error)")
        }
    }()

    /// The instances (server IDs 01, 02, 03) and the balancer in front of them.
    struct Pool {
        let servers: [ServeProcess]
        let balancer: QUICLoadBalancer

        static func start(routing: QUICLoadBalancer.Routing) async throws -> Pool {
            let pki = TestPKI.shared
            var servers: [ServeProcess] = []
            for id in 1...3 {
                servers.append(try await ServeProcess.start([bigFile.directory.path, "--cert", pki.certFile, "--key", pki.keyFile,
                                                             "-q", "--server-id", "0\(id)", "--nonce-length", "8",
                                                             "--quic-lb-key", keyHex]))
            }
            let quicLB = try QUICLBConfiguration(configID: 0, serverIDLength: 1, nonceLength: 8, key: [UInt8](quicLBHex: keyHex))
            var configuration = QUICLoadBalancer.Configuration(
                listen: try NetworkAddress(host: "127.0.0.1", port: 0),
                backends: try servers.enumerated().map {
                    .init(serverID: [UInt8($0.offset + 1)], address: try NetworkAddress(host: "127.0.0.1", port: UInt16($0.element.port)))
                },
                quicLB: [quicLB])
            configuration.routing = routing
            return Pool(servers: servers, balancer: try QUICLoadBalancer.start(configuration))
        }

        func stop() {
            balancer.stop()
            for server in servers { server.process.stop() }
        }
    }

    /// Waits until `path` holds at least `bytes` bytes (bounded).
    static func waitForDownload(_ path: String, atLeast bytes: Int, client: PeerProcess) async throws {
        for _ in 0..<3000 {
            let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
            if size >= bytes || !client.process.isRunning { return }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    /// A download through a NAT-rebinding relay in front of the balancer. Once bytes flow, the
    /// relay is rebound (new source port) until the 4-tuple hash points at another instance
    /// than the one that accepted the connection. Returns the client's exit status and output.
    static func downloadWithRebinding(_ pool: Pool, out: String, maxTime: Int = 90) async throws
        -> (status: Int32?, log: String, rebinds: Int) {
        let relay = try NetworkSimulator.start(.init(listen: try NetworkAddress(host: "127.0.0.1", port: 0),
                                                     server: pool.balancer.listenAddress))
        defer { relay.stop() }
        guard let first = relay.outgoingAddress else { throw NetSimError(.socketFailure, "the relay has no outgoing address") }
        let owner = pool.balancer.fourTupleBackend(for: first)
        let client = try PeerProcess(h3Binary, trust + ["-sS", "-m", "\(maxTime)", "--limit-rate", "8M", "-o", out,
                                                        "https://127.0.0.1:\(relay.listenAddress.port)/big.bin"],
                                     directory: TestPKI.shared.directory)
        try await waitForDownload(out, atLeast: 2 << 20, client: client)
        var rebinds = 0
        for _ in 0..<32 {
            let moved = try relay.rebind(.port)
            rebinds += 1
            if pool.balancer.fourTupleBackend(for: moved) != owner { break }
        }
        let status = await client.waitForExit(seconds: 120)
        return (status, client.output, rebinds)
    }

    @Test("a NAT-rebound client keeps its connection: byte-exact 20 MB, nothing misrouted")
    func rebindingWithQUICLB() async throws {
        try await HeavyTestGate.shared.run {
            let pool = try await Pool.start(routing: .connectionID)
            defer { pool.stop() }
            let out = try scratchDirectory().appendingPathComponent("rebound.bin").path
            let (status, log, rebinds) = try await Self.downloadWithRebinding(pool, out: out)
            #expect(status == 0, "client: \(log)")
            #expect(sameBytes(FileManager.default.contents(atPath: out), Self.bigFile.data))
            let statistics = pool.balancer.statistics
            #expect(statistics.misrouted == 0, "\(statistics)")
            #expect(statistics.routedByConnectionID > 100, "\(statistics)")
            print("QUIC-LB, NAT rebinding (\(rebinds) rebinds): \(statistics)")
            // The relay's new addresses reached the balancer (the last one hashes to another
            // instance), yet every datagram went to the one instance that owns the connection.
            #expect(statistics.flows >= 2, "\(statistics)")
            #expect(statistics.perBackend.filter { $0 > 0 }.count == 1, "\(statistics)")
        }
    }

    @Test("a migrating client (h3 --migrate-after) keeps its connection: byte-exact 20 MB, nothing misrouted")
    func migrationWithQUICLB() async throws {
        try await HeavyTestGate.shared.run {
            let pool = try await Pool.start(routing: .connectionID)
            defer { pool.stop() }
            let out = try scratchDirectory().appendingPathComponent("migrated.bin").path
            // Two clients at once, each moving to a new local port half a second into its download.
            let clients = try (0..<2).map { index in
                try PeerProcess(h3Binary, trust + ["-sS", "-m", "90", "--limit-rate", "8M", "--migrate-after", "0.5",
                                                   "-o", out + "\(index)", "https://127.0.0.1:\(pool.balancer.listenAddress.port)/big.bin"],
                                directory: TestPKI.shared.directory)
            }
            for (index, client) in clients.enumerated() {
                let status = await client.waitForExit(seconds: 120)
                #expect(status == 0, "client \(index): \(client.output)")
                #expect(sameBytes(FileManager.default.contents(atPath: out + "\(index)"), Self.bigFile.data))
            }
            let statistics = pool.balancer.statistics
            #expect(statistics.misrouted == 0, "\(statistics)")
            #expect(statistics.flows >= 4, "each client came from two addresses: \(statistics)")
            print("QUIC-LB, two migrating clients: \(statistics)")
        }
    }

    @Test("with 4-tuple hashing the rebound client lands on another instance and fails")
    func rebindingWithFourTupleHashing() async throws {
        try await HeavyTestGate.shared.run {
            let pool = try await Pool.start(routing: .fourTuple)
            defer { pool.stop() }
            let out = try scratchDirectory().appendingPathComponent("lost.bin").path
            // The client's packets now reach an instance that cannot even reset the connection
            // (its stateless reset tokens are not the owner's): the transfer stalls until -m.
            let (status, log, rebinds) = try await Self.downloadWithRebinding(pool, out: out, maxTime: 15)
            #expect(status != 0, "the download should have failed: \(log)")
            #expect(FileManager.default.contents(atPath: out) != Self.bigFile.data)
            let statistics = pool.balancer.statistics
            #expect(statistics.misrouted > 0, "\(statistics)")
            print("4-tuple hashing, NAT rebinding (\(rebinds) rebinds): client exit \(status.map(String.init) ?? "none"), "
                  + "\(log.split(separator: "\n").last ?? ""); \(statistics)")
        }
    }

    @Test("h3 serve refuses bad QUIC-LB options with a usage error")
    func badOptions() async throws {
        let cases: [[String]] = [
            ["--server-id", "zz"],
            ["--server-id", "0102", "--server-id-length", "1"],
            ["--server-id", "01", "--nonce-length", "3"],
            ["--server-id", "01", "--nonce-length", "19"],
            ["--server-id", "01", "--quic-lb-key", "0011"],
            ["--server-id", "01", "--quic-lb-config-id", "7"],
            ["--quic-lb-key", Self.keyHex],
        ]
        for arguments in cases {
            let run = try await runH3(["serve", "--port", "0"] + arguments, timeout: 30)
            #expect(run.status == 2, "h3 serve \(arguments): \(run)")
        }
    }
}
