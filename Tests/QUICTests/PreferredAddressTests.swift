import Foundation
import NIOCore
@testable import QUIC
import QUICTestSupport
import Testing

/// The server's preferred address (RFC 9000, section 9.6): the server binds a second socket on
/// another loopback address and advertises it; a client that follows it validates the new path
/// right after the handshake and carries on there.
@Suite("Server preferred address")
struct PreferredAddressTests {
    static func serverConfiguration(qlogs: URL, preferredPort: Int) -> QUICServerConfiguration {
        QUICTestSupport.serverConfiguration {
            $0.quic.qlogDirectory = qlogs.path
            $0.preferredAddress = .init(host: "127.0.0.2", port: preferredPort)
        }
    }

    @Test("a 20 MB download starts on the address dialled and finishes via the preferred address, byte-exact")
    func followsPreferredAddress() async throws {
        let qlogs = try makeQlogDirectory()
        defer { try? FileManager.default.removeItem(at: qlogs) }
        let preferredPort = try freeUDPPort()
        let server = try await DownloadServer(configuration: Self.serverConfiguration(qlogs: qlogs, preferredPort: preferredPort))
        let total = MigrationTests.total
        try await withHeavyTimeout(120) {
            let expected = await PatternGenerator.hash(seed: 31, total: total)
            let connection = try await QUICClient.connect(host: "127.0.0.1", port: server.port,
                                                          configuration: clientConfiguration { $0.qlogDirectory = qlogs.path })
            let dialled = try #require(try await connection.sendingPathRemoteAddress())
            #expect(dialled.ipAddress == "127.0.0.1" && dialled.port == server.port)
            var movedAt: Int?
            var nextCheck = 0
            let result = try await download(connection, total: total, seed: 31) { received in
                guard movedAt == nil, received >= nextCheck else { return }
                nextCheck = received + (256 << 10)
                if let now = try await connection.sendingPathRemoteAddress(), now.ipAddress == "127.0.0.2" { movedAt = received }
            }
            #expect(result.received == total)
            #expect(result.hash == expected, "the download is not byte-exact")
            let at = try #require(movedAt, "the client never moved to the preferred address")
            #expect(at < total)
            let now = try #require(try await connection.sendingPathRemoteAddress())
            #expect(now.ipAddress == "127.0.0.2" && now.port == preferredPort, "the connection ended on \(now)")

            // Evidence from both sides' qlogs: the client probed the new path and got an answer;
            // the server validated the client on it.
            let client = try Qlog(directory: qlogs, role: "client")
            #expect(client.pathChallengesSent >= 1 && client.pathResponsesReceived >= 1)
            let serverLog = try Qlog(directory: qlogs, role: "server")
            #expect(serverLog.count("transport:packet_received", withFrame: "path_challenge") >= 1,
                    "the server received the client's PATH_CHALLENGE")
            await connection.close()
        }
        await server.close()
    }

    @Test("a client told not to follow (followPreferredAddress = false) stays on the address it dialled")
    func clientDeclines() async throws {
        let qlogs = try makeQlogDirectory()
        defer { try? FileManager.default.removeItem(at: qlogs) }
        let preferredPort = try freeUDPPort()
        let server = try await DownloadServer(configuration: Self.serverConfiguration(qlogs: qlogs, preferredPort: preferredPort))
        try await withTimeout(60) {
            let connection = try await QUICClient.connect(host: "127.0.0.1", port: server.port,
                                                          configuration: clientConfiguration {
                                                              $0.qlogDirectory = qlogs.path
                                                              $0.followPreferredAddress = false
                                                          })
            let result = try await download(connection, total: 2 << 20, seed: 32)
            #expect(result.hash == (await PatternGenerator.hash(seed: 32, total: 2 << 20)))
            let now = try #require(try await connection.sendingPathRemoteAddress())
            #expect(now.ipAddress == "127.0.0.1" && now.port == server.port)
            #expect(try Qlog(directory: qlogs, role: "client").pathChallengesSent == 0)
            await connection.close()
        }
        await server.close()
    }

    @Test("the preferred address is followed even when the server disables active migration")
    func followsDespiteDisabledMigration() async throws {
        let qlogs = try makeQlogDirectory()
        defer { try? FileManager.default.removeItem(at: qlogs) }
        let preferredPort = try freeUDPPort()
        var configuration = Self.serverConfiguration(qlogs: qlogs, preferredPort: preferredPort)
        configuration.quic.allowActiveMigration = false
        let server = try await DownloadServer(configuration: configuration)
        try await withTimeout(60) {
            let connection = try await QUICClient.connect(host: "127.0.0.1", port: server.port, configuration: clientConfiguration())
            let result = try await download(connection, total: 4 << 20, seed: 33)
            #expect(result.hash == (await PatternGenerator.hash(seed: 33, total: 4 << 20)))
            let now = try #require(try await connection.sendingPathRemoteAddress())
            #expect(now.ipAddress == "127.0.0.2" && now.port == preferredPort)
            // Active migration stays refused (disable_active_migration is honoured).
            await #expect(throws: QUICError.self) { try await connection.migrate() }
            await connection.close()
        }
        await server.close()
    }
}
