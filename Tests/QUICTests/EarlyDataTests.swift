import Foundation
import NetSim
import NIOCore
import QUIC
import QUICTestSupport
import Testing

@Suite("0-RTT")
struct EarlyDataTests {
    /// Sends `text` on a new stream and returns the echo.
    static func echo(_ text: String, on connection: QUICConnection) async throws -> String {
        let stream = try await connection.openStream()
        try await stream.write(Array(text.utf8))
        try await stream.finish()
        return String(buffer: try await stream.readAll(limit: 1 << 16))
    }

    /// Stream frames the server received in 0-RTT packets, from its qlog.
    static func earlyStreamFramesReceived(qlogDirectory: URL) throws -> Int {
        try Qlog(directory: qlogDirectory, role: "server").streamIDs("transport:packet_received", packetType: "0RTT").count
    }

    @Test("through a 2.2 s round trip, a resumed connection sends in 0-RTT and the server answers; refused early data is reported and resent")
    func earlyDataAcceptedThenRefused() async throws {
        let qlogs = TestPKI.shared.directory.appendingPathComponent("qlog-0rtt-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: qlogs, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: qlogs) }
        let port = try freeUDPPort()
        var server: EchoServer? = try await EchoServer(configuration: serverConfiguration { $0.quic.qlogDirectory = qlogs.path },
                                                       port: port)
        // A relay with 200 ms to the server and 2 s back: the request must leave within the
        // 2.2 s round trip after connect returns, which holds even when the test machine is
        // busy (with 20 ms, and once with 400 ms at a load of 11, it went out in 1-RTT).
        var relayConfiguration = NetworkSimulator.Configuration(listen: try NetworkAddress(host: "127.0.0.1", port: 0),
                                                                server: try NetworkAddress(host: "127.0.0.1", port: UInt16(port)))
        relayConfiguration.toServer.delay = .milliseconds(200)
        relayConfiguration.toClient.delay = .milliseconds(2000)
        let relay = try NetworkSimulator.start(relayConfiguration)
        defer { relay.stop() }
        let relayPort = Int(relay.listenAddress.port)
        let cache = QUICSessionCache()
        var plain = clientConfiguration()
        plain.sessionCache = cache
        var early = plain
        early.enableEarlyData = true
        let plainSettings = plain, earlySettings = early

        try await withTimeout(60) {
            // 1. A full handshake leaves a ticket.
            let first = try await QUICClient.connect(host: "127.0.0.1", port: relayPort, configuration: plainSettings)
            #expect(try await EarlyDataTests.echo("one", on: first) == "one")
            try await ResumptionTests.waitForTicket(cache)
            await first.close()
            #expect(try EarlyDataTests.earlyStreamFramesReceived(qlogDirectory: qlogs) == 0)

            // 2. Resumed with early data: the request goes in 0-RTT and is answered.
            let second = try await QUICClient.connect(host: "127.0.0.1", port: relayPort, configuration: earlySettings)
            #expect(try await EarlyDataTests.echo("early", on: second) == "early")
            #expect(try await second.isEarlyDataAccepted)
            #expect(try await second.isSessionResumed)
            await second.close()
            #expect(try EarlyDataTests.earlyStreamFramesReceived(qlogDirectory: qlogs) >= 1,
                    "the server's qlog shows a STREAM frame in a 0-RTT packet")
        }

        // 3. A restarted server (new ticket key) cannot resume: early data is refused. The
        //    stream sent early fails with earlyDataRejected and goes again after the handshake.
        await server?.close()
        server = nil
        let restarted = try await EchoServer(configuration: serverConfiguration(), port: port)
        defer { Task { await restarted.close() } }
        try await withTimeout(60) {
            let third = try await QUICClient.connect(host: "127.0.0.1", port: relayPort, configuration: earlySettings)
            var refused = false
            var reply = ""
            do {
                reply = try await EarlyDataTests.echo("again", on: third)
            } catch QUICError.earlyDataRejected {
                refused = true
                try await third.waitForHandshake()
                reply = try await EarlyDataTests.echo("again", on: third)
            }
            #expect(refused, "the early stream was reported as refused")
            #expect(reply == "again")
            #expect(try await third.isEarlyDataAccepted == false)
            #expect(try await third.isSessionResumed == false)
            await third.close()
        }
    }
}
