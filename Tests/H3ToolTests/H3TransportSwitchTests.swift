import Foundation
import NetSim
import NIOCore
import QUIC
import QUICTestSupport
import Testing

/// The built `h3` binary's transport switches: 0-RTT with `--session-file --tls-earlydata`
/// (and `-w %{tls_earlydata}`), `--key-update-after` and `--migrate-after`, with evidence from
/// the server's own records (its qlog, or gtlsserver's log).
@Suite("h3 command line: 0-RTT, key update and migration switches")
struct H3TransportSwitchTests {
    /// A directory holding one 20 MB file (`big.bin`) and its bytes.
    static func bigFile() throws -> (directory: URL, bytes: Data) {
        let directory = try scratchDirectory()
        var generator = PatternGenerator(seed: 0xb16)
        var bytes = Data()
        for _ in 0..<80 { bytes.append(contentsOf: generator.next(256 << 10).readableBytesView) }
        try bytes.write(to: directory.appendingPathComponent("big.bin"))
        return (directory, bytes)
    }

    @Test("--session-file --tls-earlydata: through a 1.2 s round trip the second run's GET goes in 0-RTT; -w %{tls_earlydata} prints its bytes")
    func earlyData() async throws {
        let qlogs = try makeQlogDirectory()
        defer { try? FileManager.default.removeItem(at: qlogs) }
        let pki = TestPKI.shared
        let server = try await ServeProcess.start([ServedFiles.shared.root.path, "--cert", pki.certFile, "--key", pki.keyFile,
                                                   "--qlog-dir", qlogs.path])
        var relayConfiguration = NetworkSimulator.Configuration(listen: try NetworkAddress(host: "127.0.0.1", port: 0),
                                                                server: try NetworkAddress(host: "127.0.0.1", port: UInt16(server.port)))
        relayConfiguration.toServer.delay = .milliseconds(200)
        relayConfiguration.toClient.delay = .milliseconds(1000)
        let relay = try NetworkSimulator.start(relayConfiguration)
        defer { relay.stop() }
        let url = "https://127.0.0.1:\(relay.listenAddress.port)/small.txt"
        let sessions = try scratchDirectory().appendingPathComponent("sessions").path
        let arguments = trust + ["-sS", "--session-file", sessions, "--tls-earlydata", "-w", "%{tls_earlydata}", url]
        let earlyFrames = {
            try Qlog(directory: qlogs, role: "server").streamIDs("transport:packet_received", packetType: "0RTT")
                .filter { $0 & 0x3 == 0 }.count
        }

        let first = try await runH3(arguments)
        #expect(first.status == 0 && first.text == "hello h3\n0", "\(first)")
        #expect(try earlyFrames() == 0)
        let second = try await runH3(arguments)
        #expect(second.status == 0, "\(second)")
        #expect(second.text.hasPrefix("hello h3\n"), "\(second)")
        let earlyBytes = Int(second.text.dropFirst("hello h3\n".count)) ?? 0
        #expect(earlyBytes > 0, "tls_earlydata: \(second.text)")
        #expect(try earlyFrames() >= 1, "h3 serve's qlog shows the request stream in a 0-RTT packet")
        // Without --tls-earlydata the same ticket resumes, but nothing goes early.
        let third = try await runH3(trust + ["-sS", "--session-file", sessions, "-w", "%{tls_earlydata}", url])
        #expect(third.status == 0 && third.text == "hello h3\n0", "\(third)")
    }

    @Test("--migrate-after: a 20 MB download moves to a new local port mid-transfer, byte-exact; h3 serve validates the new path")
    func migrateAfter() async throws {
        try await HeavyTestGate.shared.run { try await Self.migrateAfterBody() }
    }

    static func migrateAfterBody() async throws {
        let (directory, bytes) = try bigFile()
        let qlogs = try makeQlogDirectory()
        defer {
            try? FileManager.default.removeItem(at: directory)
            try? FileManager.default.removeItem(at: qlogs)
        }
        let pki = TestPKI.shared
        let server = try await ServeProcess.start([directory.path, "--cert", pki.certFile, "--key", pki.keyFile,
                                                   "--qlog-dir", qlogs.path])
        let output = directory.appendingPathComponent("out.bin")
        let run = try await runH3(trust + ["-sS", "-v", "--migrate-after", "0.1", "-o", output.path, "\(server.url)/big.bin"],
                                  timeout: 120)
        #expect(run.status == 0, "\(run)")
        #expect(run.stderr.contains("* Migrated the connection to a new local port"), "\(run.stderr.suffix(2000))")
        #expect(sameBytes(FileManager.default.contents(atPath: output.path), bytes))
        let qlog = try Qlog(directory: qlogs, role: "server")
        #expect(qlog.pathChallengesSent >= 1, "the server sent PATH_CHALLENGE on the new path")
    }

    @Test("--key-update-after: a 20 MB download with a key update every 2 MB is byte-exact, from h3 serve and from gtlsserver (whose log shows the rotations)")
    func keyUpdateAfter() async throws {
        try await HeavyTestGate.shared.run { try await Self.keyUpdateAfterBody() }
    }

    static func keyUpdateAfterBody() async throws {
        let (directory, bytes) = try bigFile()
        defer { try? FileManager.default.removeItem(at: directory) }
        let pki = TestPKI.shared
        let server = try await ServeProcess.start([directory.path, "--cert", pki.certFile, "--key", pki.keyFile])
        let output = directory.appendingPathComponent("out.bin")
        // ngtcp2 allows a new key update only three PTOs after the last was confirmed; at
        // loopback speed 20 MB leaves room for two. --limit-rate makes the transfer last ~2 s.
        let run = try await runH3(trust + ["-sS", "-v", "--limit-rate", "10M", "--key-update-after", "2000000",
                                           "-o", output.path, "\(server.url)/big.bin"],
                                  timeout: 120)
        #expect(run.status == 0, "\(run)")
        #expect(sameBytes(FileManager.default.contents(atPath: output.path), bytes))
        let started = run.stderr.components(separatedBy: "* Key update started").count - 1
        #expect(started >= 3, "key updates started: \(started)")

        guard let gtlsserver = peerProgram("gtlsserver") else { return }
        let port = try freeUDPPort()
        // Not quiet: ngtcp2's log records each key rotation ("con rotate keys").
        let peer = try PeerProcess(gtlsserver, ["--no-quic-dump", "--no-http-dump", "--htdocs=\(directory.path)", "127.0.0.1",
                                                "\(port)", pki.keyFile, pki.certFile], directory: pki.directory)
        defer { peer.stop() }
        let fromPeer = directory.appendingPathComponent("peer.bin")
        let peerArguments = trust + ["-sS", "--limit-rate", "10M", "--key-update-after", "2000000", "-o", fromPeer.path,
                                     "https://127.0.0.1:\(port)/big.bin"]
        var peerRun = try await runH3(peerArguments, timeout: 120)
        for _ in 0..<200 where peerRun.status == 7 {  // gtlsserver may still be starting (up to 20 s)
            try await Task.sleep(for: .milliseconds(100))
            peerRun = try await runH3(peerArguments, timeout: 120)
        }
        #expect(peerRun.status == 0, "\(peerRun)")
        #expect(sameBytes(FileManager.default.contents(atPath: fromPeer.path), bytes))
        peer.stop()
        let rotations = peer.output.components(separatedBy: "con rotate keys").count - 1
        #expect(rotations >= 3, "gtlsserver rotated keys \(rotations) times")
    }
}
