import Foundation
import NIOCore
import NIOPosix
@testable import QUIC
import QUICTestSupport
import Testing

/// A listener with two event loops and two `SO_REUSEPORT` sockets on one port: the kernel
/// spreads clients over the loops, a client whose new 4-tuple hashes to the other loop's socket
/// is handed back to the loop that owns its connection, and the connection limit is shared.
@Suite("Multi-loop QUIC listener", .serialized)
struct MultiLoopListenerTests {
    /// A two-loop download server on its own event loop group; `stop()` ends both.
    final class Server: Sendable {
        let group: MultiThreadedEventLoopGroup
        let listener: QUICListener
        private let task: Task<Void, Never>
        var port: Int { listener.localAddress.port ?? 0 }

        init(_ adjust: (inout QUICServerConfiguration) -> Void = { _ in }) async throws {
            group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
            listener = try await QUICListener.bind(host: "127.0.0.1", port: 0, configuration: serverConfiguration(adjust),
                                                   loops: 2, eventLoopGroup: group)
            let listener = self.listener
            task = Task {
                await withDiscardingTaskGroup { tasks in
                    for await connection in listener.connections {
                        tasks.addTask { await DownloadServer.serve(connection) }
                    }
                }
            }
        }

        func stop() async {
            await listener.close()
            await task.value
            try? await group.shutdownGracefully()
        }
    }

    @Test("connections spread over both loops (per-loop counters); the second loop's socket shares the port")
    func connectionsSpreadAcrossLoops() async throws {
        let server = try await Server()
        try await withTimeout(120) {
            for index in 0..<16 {
                let connection = try await QUICClient.connect(host: "127.0.0.1", port: server.port, configuration: clientConfiguration())
                let result = try await download(connection, total: 64 << 10, seed: UInt64(index))
                #expect(result.received == 64 << 10)
                await connection.close()
            }
        }
        let loops = try await server.listener.loopStatistics()
        let accepted = loops.map(\.statistics.connectionsAccepted)
        print("multi-loop listener: connections accepted per loop \(accepted)")
        #expect(loops.count == 2)
        #expect(accepted.reduce(0, +) == 16)
        #expect(accepted.allSatisfy { $0 > 0 }, "all 16 connections on one loop: \(accepted)")
        #expect(server.listener.endpoints.map(\.socket.localAddress?.port) == [server.port, server.port])
        #expect(server.listener.endpoints[0].eventLoop !== server.listener.endpoints[1].eventLoop)
        await server.stop()
    }

    @Test("a client that moves to the other loop's socket keeps its connection: 20 MiB byte-exact")
    func migrationAcrossLoops() async throws {
        let server = try await Server()
        let total = 20 << 20
        try await withHeavyTimeout(180) {
            let expected = await PatternGenerator.hash(seed: 77, total: total)
            let connection = try await QUICClient.connect(host: "127.0.0.1", port: server.port, configuration: clientConfiguration())
            var nextMove = 1 << 20
            var moves = 0
            let listener = server.listener
            let result = try await download(connection, total: total, seed: 77) { received in
                // Move to new local ports until the kernel has sent the client to the other loop's socket.
                guard received >= nextMove, moves < 12 else { return }
                nextMove = received + (1 << 20)
                let handedOff = try await listener.loopStatistics().map(\.handedOff).reduce(0, +)
                if handedOff == 0 {
                    try await connection.migrate()
                    moves += 1
                }
            }
            #expect(result.received == total)
            #expect(result.hash == expected, "the download is not byte-exact")
            let loops = try await listener.loopStatistics()
            print("multi-loop migration: \(moves) moves, handed off per loop \(loops.map(\.handedOff)), "
                  + "accepted per loop \(loops.map(\.statistics.connectionsAccepted))")
            #expect(loops.map(\.handedOff).reduce(0, +) > 0, "the client never reached the other loop's socket in \(moves) moves")
            #expect(loops.map(\.statistics.connectionsAccepted).reduce(0, +) == 1)
            await connection.close()
        }
        await server.stop()
    }

    @Test("the connection limit counts the connections of every loop")
    func sharedConnectionLimit() async throws {
        let server = try await Server { $0.maxConnections = 2 }
        try await withTimeout(120) {
            var open: [QUICConnection] = []
            // Keep connecting until two are open (each loop alone would take two more).
            for _ in 0..<2 {
                open.append(try await QUICClient.connect(host: "127.0.0.1", port: server.port, configuration: clientConfiguration()))
            }
            var refused = 0
            for _ in 0..<4 {
                do {
                    let extra = try await QUICClient.connect(host: "127.0.0.1", port: server.port, configuration: clientConfiguration())
                    _ = try await download(extra, total: 1024, seed: 1)
                    await extra.close()
                } catch {
                    refused += 1
                }
            }
            #expect(refused == 4)
            let loops = try await server.listener.loopStatistics()
            #expect(loops.map(\.statistics.refusedConnections).reduce(0, +) >= 4)
            for connection in open { await connection.close() }
        }
        await server.stop()
    }

    @Test("a session ticket from one loop resumes on either loop: the ticket key is shared")
    func ticketsWorkOnEveryLoop() async throws {
        let server = try await Server()
        let cache = QUICSessionCache()
        var configuration = clientConfiguration()
        configuration.sessionCache = cache
        let settings = configuration
        try await withTimeout(120) {
            let first = try await QUICClient.connect(host: "127.0.0.1", port: server.port, configuration: settings)
            _ = try await download(first, total: 1024, seed: 3)
            try await ResumptionTests.waitForTicket(cache)
            await first.close()
            // New sockets: the kernel puts these connections on both loops; each resumes.
            var resumed = 0
            for index in 0..<12 {
                let again = try await QUICClient.connect(host: "127.0.0.1", port: server.port, configuration: settings)
                if try await again.isSessionResumed { resumed += 1 }
                _ = try await download(again, total: 1024, seed: UInt64(index))
                await again.close()
            }
            #expect(resumed == 12)
        }
        let accepted = try await server.listener.loopStatistics().map(\.statistics.connectionsAccepted)
        print("multi-loop resumption: connections per loop \(accepted)")
        #expect(accepted.allSatisfy { $0 > 0 }, "13 connections all on one loop: \(accepted)")
        await server.stop()
    }
}
