import Foundation
import QUIC
import QUICTestSupport
import Testing

/// 0-RTT through `--session-file` on loopback, where the server answers within a millisecond:
/// the request must be queued before the server's handshake reply is read, or it goes in 1-RTT.
@Suite("h3 --session-file --tls-earlydata: 0-RTT on loopback")
struct SessionFileEarlyDataTests {
    let files = ServedFiles.shared

    @Test("every resumed run sends its GET in 0-RTT, against gtlsserver and against h3 serve")
    func earlyDataThroughSessionFile() async throws {
        let server = try await ServeProcess.files()
        var targets = [server.url]
        var gtls: PeerProcess?
        if let gtlsserver = peerProgram("gtlsserver") {
            let port = try freeUDPPort()
            gtls = try PeerProcess(gtlsserver, ["-q", "--htdocs=\(files.root.path)", "127.0.0.1", "\(port)",
                                               TestPKI.shared.keyFile, TestPKI.shared.certFile], directory: TestPKI.shared.directory)
            targets.append("https://127.0.0.1:\(port)")
        }
        defer { gtls?.stop() }
        for target in targets {
            let directory = try scratchDirectory()
            defer { try? FileManager.default.removeItem(at: directory) }
            let file = directory.appendingPathComponent("sessions").path
            var first = try await runH3(trust + ["-sS", "--session-file", file, "\(target)/small.txt"])
            for _ in 0..<200 where first.status == 7 {  // gtlsserver may still be starting (up to 20 s)
                try await Task.sleep(for: .milliseconds(100))
                first = try await runH3(trust + ["-sS", "--session-file", file, "\(target)/small.txt"])
            }
            #expect(first.status == 0 && first.text == "hello h3\n", "\(target): \(first)")
            // Before the fix about half of these went in 1-RTT on loopback: five in a row in
            // 0-RTT does not happen by chance.
            for run in 0..<5 {
                let resumed = try await runH3(trust + ["-sS", "-v", "--session-file", file, "--tls-earlydata",
                                                       "-w", "\n%{tls_earlydata}", "\(target)/small.txt"])
                #expect(resumed.status == 0, "\(target) run \(run): \(resumed)")
                #expect(resumed.stderr.contains("session resumed"), "\(target) run \(run): \(resumed.stderr)")
                let earlyBytes = Int(resumed.text.split(separator: "\n").last ?? "") ?? 0
                #expect(resumed.text.hasPrefix("hello h3\n") && earlyBytes > 0,
                        "\(target) run \(run): the GET went in 0-RTT (tls_earlydata \(earlyBytes)): \(resumed.text)")
            }
        }
    }
}
