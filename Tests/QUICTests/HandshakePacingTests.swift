import Foundation
import NIOCore
import QUIC
import QUICTestSupport
import Testing

@Suite("No pacing delay in the handshake")
struct HandshakePacingTests {
    /// ngtcp2 0.12 computes the pacing interval from the smoothed RTT, which before the first
    /// sample is its 333 ms default. Pacing the first flight held the client's Finished, and
    /// with it the first request, back ~20 ms on every new connection (an ACK-only Handshake
    /// packet left at once, the Finished only when the pacing time came). The check reads the
    /// client's own packet record, so it needs no clock: the first Handshake packet the client
    /// sends must carry its CRYPTO (the Finished), and its first 1-RTT packet must follow in
    /// the same burst, before anything more arrives from the server.
    @Test("the client's first Handshake packet carries its Finished; 1-RTT data follows before the server speaks again")
    func finishedLeavesAtOnce() async throws {
        let qlogs = try makeQlogDirectory()
        defer { try? FileManager.default.removeItem(at: qlogs) }
        let server = try await EchoServer(configuration: serverConfiguration())
        defer { Task { await server.close() } }
        try await withTimeout(30) {
            for _ in 0..<3 {
                let connection = try await QUICClient.connect(host: "127.0.0.1", port: server.port,
                                                              configuration: clientConfiguration { $0.qlogDirectory = qlogs.path })
                let stream = try await connection.openStream()
                try await stream.write(Array("ping".utf8))
                try await stream.finish()
                #expect(String(buffer: try await stream.readAll(limit: 100)) == "ping")
                await connection.close()
            }
        }
        let names = try FileManager.default.contentsOfDirectory(atPath: qlogs.path).filter { $0.hasSuffix("_client.sqlog") }
        #expect(names.count == 3)
        for name in names {
            let qlog = try Qlog(directory: qlogs, fileSuffix: name)
            let sent = qlog.events.filter { $0.name == "transport:packet_sent" }
            let firstHandshake = try #require(sent.first { $0.packetType == "handshake" }, "\(name): no Handshake packet sent")
            #expect(firstHandshake.frameTypes.contains("crypto"),
                    "\(name): the first Handshake packet carried \(firstHandshake.frameTypes), not the Finished")
            // Between the server's first flight and our first 1-RTT packet nothing else arrives.
            guard let handshakeIndex = qlog.events.firstIndex(where: { $0.name == "transport:packet_sent" && $0.packetType == "handshake" }),
                  let oneRTTIndex = qlog.events.firstIndex(where: { $0.name == "transport:packet_sent" && $0.packetType == "1RTT" })
            else {
                Issue.record("\(name): no 1-RTT packet sent")
                continue
            }
            let between = qlog.events[min(handshakeIndex, oneRTTIndex)...max(handshakeIndex, oneRTTIndex)]
            #expect(!between.contains { $0.name == "transport:packet_received" },
                    "\(name): the client waited for the server between its Finished and its first 1-RTT packet")
        }
    }
}
