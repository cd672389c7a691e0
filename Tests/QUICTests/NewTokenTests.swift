import Foundation
import NIOCore
import QUIC
import QUICTestSupport
import Testing

@Suite("NEW_TOKEN address validation")
struct NewTokenTests {
    static func waitForToken(_ cache: QUICSessionCache) async throws {
        for _ in 0..<1500 where cache.addressTokenCount == 0 {  // up to 30 s
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(cache.addressTokenCount == 1, "a NEW_TOKEN token arrived")
    }

    static func echo(_ text: String, port: Int, configuration: QUICConfiguration) async throws -> String {
        let connection = try await QUICClient.connect(host: "127.0.0.1", port: port, configuration: configuration)
        let reply = try await EarlyDataTests.echo(text, on: connection)
        await connection.close()
        return reply
    }

    /// Retry packets a client received, from its qlog.
    static func retriesReceived(_ qlogs: URL) throws -> Int {
        try Qlog(directory: qlogs, role: "client").events.filter { $0.name == "transport:packet_received" && $0.packetType == "retry" }.count
    }

    @Test("with Retry on, the first connection is retried; the second presents its NEW_TOKEN token and is not; a token is used once")
    func tokenSkipsRetry() async throws {
        let qlogs = try makeQlogDirectory()
        defer { try? FileManager.default.removeItem(at: qlogs) }
        let server = try await EchoServer(configuration: serverConfiguration { $0.requireAddressValidation = true })
        defer { Task { await server.close() } }
        let cache = QUICSessionCache()
        let configuration = clientConfiguration {
            $0.sessionCache = cache
            $0.qlogDirectory = qlogs.path
        }
        try await withTimeout(30) {
            #expect(try await NewTokenTests.echo("first", port: server.port, configuration: configuration) == "first")
            try await NewTokenTests.waitForToken(cache)
            // (A client Initial retransmitted before the Retry arrived gets a Retry of its own: the
            // server may count more than one; the client acts on one.)
            let first = try await server.listener.statistics()
            #expect(first.retriesSent >= 1)
            #expect(first.addressTokensIssued >= 1)
            let retriesReceived = try NewTokenTests.retriesReceived(qlogs)
            #expect(retriesReceived >= 1)

            #expect(try await NewTokenTests.echo("second", port: server.port, configuration: configuration) == "second")
            var stats = try await server.listener.statistics()
            #expect(stats.retriesSent == first.retriesSent, "the token spared the second connection the Retry")
            #expect(stats.addressTokensAccepted >= 1)
            #expect(stats.invalidTokens == 0)
            #expect(try NewTokenTests.retriesReceived(qlogs) == retriesReceived, "no Retry reached the second connection")

            // The token went with the second connection, which got a fresh one; a client
            // without tokens is retried again.
            try await NewTokenTests.waitForToken(cache)
            #expect(try await NewTokenTests.echo("third", port: server.port, configuration: clientConfiguration()) == "third")
            let before = stats.retriesSent
            stats = try await server.listener.statistics()
            #expect(stats.retriesSent > before)
        }
    }

    @Test("a token for another server (a different key) is ignored: the client is retried, not refused")
    func foreignTokenIsRetried() async throws {
        let first = try await EchoServer(configuration: serverConfiguration())
        let cache = QUICSessionCache()
        let configuration = clientConfiguration { $0.sessionCache = cache }
        try await withTimeout(30) {
            #expect(try await NewTokenTests.echo("one", port: first.port, configuration: configuration) == "one")
            try await NewTokenTests.waitForToken(cache)
        }
        let port = first.port
        await first.close()
        // Same port, new server, new key: the token does not validate.
        let second = try await EchoServer(configuration: serverConfiguration { $0.requireAddressValidation = true }, port: port)
        defer { Task { await second.close() } }
        try await withTimeout(30) {
            #expect(try await NewTokenTests.echo("two", port: port, configuration: configuration) == "two")
            let stats = try await second.listener.statistics()
            #expect(stats.retriesSent >= 1)
            #expect(stats.addressTokensAccepted == 0)
            #expect(stats.invalidTokens >= 1)
        }
    }

    @Test("tokens travel through the session file")
    func tokensInSessionFile() throws {
        let cache = QUICSessionCache()
        cache.storeAddressToken([0x36, 1, 2, 3], for: "example.org:443")
        cache.store(QUICSessionTicket(tlsSession: [9, 9], transportParameters: [7], received: Int(Date().timeIntervalSince1970)),
                    for: "example.org:443")
        let path = TestPKI.shared.directory.appendingPathComponent("sessions-\(UUID().uuidString)").path
        defer { unlink(path) }
        try cache.save(to: path)
        let loaded = try QUICSessionCache(contentsOf: path)
        #expect(loaded.ticket(for: "example.org:443")?.tlsSession == [9, 9])
        #expect(loaded.takeAddressToken(for: "example.org:443") == [0x36, 1, 2, 3])
        #expect(loaded.takeAddressToken(for: "example.org:443") == nil, "used once")
    }
}
