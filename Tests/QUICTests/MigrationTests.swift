import Foundation
import NetSim
import NIOCore
import QUIC
import QUICTestSupport
import Testing

/// Connection migration (RFC 9000, section 9): the client moves on purpose (`migrate`), or a NAT
/// rebinds its flow without telling it. Either way a 20 MB download over one stream must arrive
/// byte-exact, and the server must validate the new path (PATH_CHALLENGE in its qlog).
@Suite("Connection migration and NAT rebinding")
struct MigrationTests {
    static let total = 20 << 20

    enum Move: String, CaseIterable, CustomTestStringConvertible, Sendable {
        case newPort, newAddress
        var testDescription: String { rawValue }
    }

    @Test("a 20 MB download survives the client migrating mid-transfer; the server validates the new path",
          arguments: Move.allCases)
    func activeMigration(_ move: Move) async throws {
        let qlogs = try makeQlogDirectory()
        defer { try? FileManager.default.removeItem(at: qlogs) }
        let server = try await DownloadServer(configuration: serverConfiguration { $0.quic.qlogDirectory = qlogs.path })
        let seed: UInt64 = move == .newPort ? 21 : 22
        let total = Self.total
        try await withHeavyTimeout(120) {
            let expected = await PatternGenerator.hash(seed: seed, total: total)
            let connection = try await QUICClient.connect(host: "127.0.0.1", port: server.port,
                                                          configuration: clientConfiguration())
            let serverSide = try await server.firstConnection()
            let before = try await connection.localAddress
            var migratedAt: Int?
            var challengesBeforeMigration = -1
            let result = try await download(connection, total: total, seed: seed) { received in
                guard migratedAt == nil, received >= 4 << 20 else { return }
                challengesBeforeMigration = try Qlog(directory: qlogs, role: "server").pathChallengesSent
                switch move {
                case .newPort: try await connection.migrate()
                case .newAddress: try await connection.migrate(localHost: "127.0.0.2")
                }
                migratedAt = received
            }
            #expect(result.received == total)
            #expect(result.hash == expected, "the download is not byte-exact")
            let at = try #require(migratedAt, "the client never migrated")
            #expect(at < total, "the migration happened mid-transfer (at \(at) bytes)")

            let after = try await connection.localAddress
            switch move {
            case .newPort:
                #expect(after.port != before.port)
                #expect(after.ipAddress == "127.0.0.1")
            case .newAddress:
                #expect(after.ipAddress == "127.0.0.2")
            }
            // The server now sends to the client's new address (ngtcp2's current path).
            let serverSees = try #require(try await serverSide.sendingPathRemoteAddress())
            #expect(serverSees.ipAddress == after.ipAddress && serverSees.port == after.port,
                    "server's peer \(serverSees), client's local \(after)")

            let qlog = try Qlog(directory: qlogs, role: "server")
            #expect(challengesBeforeMigration == 0, "no path validation before the migration")
            #expect(qlog.pathChallengesSent >= 1, "the server sent no PATH_CHALLENGE after the migration")
            #expect(qlog.pathResponsesReceived >= 1, "the client never answered a PATH_CHALLENGE")
            await connection.close()
        }
        await server.close()
    }

    @Test("NAT rebinding: a 20 MB download through a relay that changes its port, then its address; the server follows")
    func natRebinding() async throws {
        let qlogs = try makeQlogDirectory()
        defer { try? FileManager.default.removeItem(at: qlogs) }
        let server = try await DownloadServer(configuration: serverConfiguration { $0.quic.qlogDirectory = qlogs.path })
        let relay = try NetworkSimulator.start(.init(listen: try NetworkAddress(host: "127.0.0.1", port: 0),
                                                     server: try NetworkAddress(host: "127.0.0.1", port: UInt16(server.port))))
        defer { relay.stop() }
        let total = Self.total
        try await withHeavyTimeout(120) {
            let expected = await PatternGenerator.hash(seed: 23, total: total)
            let connection = try await QUICClient.connect(host: "127.0.0.1", port: Int(relay.listenAddress.port),
                                                          configuration: clientConfiguration())
            let serverSide = try await server.firstConnection()
            let clientLocal = try await connection.localAddress
            let initialOutgoing = try #require(relay.outgoingAddress)
            let initialSeen = try await serverSide.currentRemoteAddress()
            #expect(initialSeen.port == Int(initialOutgoing.port), "the server sees the relay, not the client")

            // Each step: rebind once the download has gone far enough, then wait (while reading:
            // the flow must go on for the server to see the new address) until ngtcp2's current
            // path on the server leads to the new address and the server's qlog shows a new
            // PATH_CHALLENGE sent. The address rebinding waits for the server to follow the first.
            let challengesBeforeRebinding = try Qlog(directory: qlogs, role: "server").pathChallengesSent
            let steps: [(threshold: Int, rebind: NetworkSimulator.Rebind)] = [(3 << 20, .port), (8 << 20, .address("127.0.0.2"))]
            var step = 0
            var pending: (target: NetworkAddress, challengesBefore: Int, pathSwitched: Bool)?
            var followed: [(rebound: NetworkAddress, atBytes: Int, challengesSent: Int)] = []
            let result = try await download(connection, total: total, seed: 23) { received in
                if var waiting = pending {
                    if !waiting.pathSwitched, let path = try await serverSide.sendingPathRemoteAddress() {
                        waiting.pathSwitched = path.ipAddress == waiting.target.host && path.port == Int(waiting.target.port)
                    }
                    if waiting.pathSwitched {
                        // The challenge goes out in the server's next write after the switch.
                        let challenges = try Qlog(directory: qlogs, role: "server").pathChallengesSent
                        if challenges > waiting.challengesBefore {
                            followed.append((waiting.target, received, challenges))
                            pending = nil
                            return
                        }
                    }
                    pending = waiting
                } else if step < steps.count, received >= steps[step].threshold {
                    let rebind = steps[step].rebind
                    let before = try Qlog(directory: qlogs, role: "server").pathChallengesSent
                    let target = try await offCooperativePool { try relay.rebind(rebind) }
                    pending = (target, before, false)
                    step += 1
                }
            }
            #expect(result.received == total)
            #expect(result.hash == expected, "the download is not byte-exact")
            try #require(followed.count == 2, "the server followed \(followed.count) of 2 rebindings")
            #expect(followed[0].rebound.host == "127.0.0.1" && followed[0].rebound.port != initialOutgoing.port)
            #expect(followed[1].rebound.host == "127.0.0.2")
            #expect(followed[1].atBytes < total, "both rebindings happened mid-transfer")
            // Each rebinding was followed by a PATH_CHALLENGE (`followed` only counts a step once
            // a new one shows in the qlog); none were sent before the first.
            #expect(followed[0].challengesSent >= 1 && followed[1].challengesSent > followed[0].challengesSent)
            #expect(challengesBeforeRebinding == 0)
            let serverPath = try #require(try await serverSide.sendingPathRemoteAddress())
            #expect(serverPath.ipAddress == "127.0.0.2" && serverPath.port == Int(followed[1].rebound.port),
                    "the server sends to \(serverPath)")
            let qlog = try Qlog(directory: qlogs, role: "server")
            #expect(qlog.pathResponsesReceived >= 2, "PATH_RESPONSEs received: \(qlog.pathResponsesReceived)")
            // The client did not move: it never knew.
            let clientNow = try await connection.localAddress
            #expect(clientNow.port == clientLocal.port && clientNow.ipAddress == clientLocal.ipAddress)
            await connection.close()
        }
        relay.stop()
        await server.close()
    }

    @Test("a server with allowActiveMigration = false: the client's migrate is refused with a clear error, the connection carries on")
    func activeMigrationDisabled() async throws {
        let server = try await DownloadServer(configuration: serverConfiguration { $0.quic.allowActiveMigration = false })
        try await withTimeout(30) {
            let connection = try await QUICClient.connect(host: "127.0.0.1", port: server.port,
                                                          configuration: clientConfiguration())
            // Once the handshake is confirmed, so that only the peer's transport parameter can refuse.
            let warmUp = try await download(connection, total: 1000, seed: 1)
            #expect(warmUp.received == 1000)
            let before = try await connection.localAddress
            for host in [nil, "127.0.0.2"] as [String?] {
                await #expect {
                    try await connection.migrate(localHost: host)
                } throws: { error in
                    guard case QUICError.invalidArgument(let why) = error else { return false }
                    return why.contains("disabled active migration")
                }
            }
            let after = try await connection.localAddress
            #expect(after.port == before.port && after.ipAddress == before.ipAddress)
            let result = try await download(connection, total: 1 << 20, seed: 2)
            #expect(result.received == 1 << 20)
            #expect(result.hash == (await PatternGenerator.hash(seed: 2, total: 1 << 20)))
            await connection.close()
        }
        await server.close()
    }
}
