import Foundation
import NIOCore
import QUIC
import QUICTestSupport
import Testing

@Suite("Key update")
struct KeyUpdateTests {
    /// Calls `initiateKeyUpdate` every few milliseconds until cancelled; counts the accepted ones.
    /// ngtcp2 accepts a new update only after the previous one completed (the peer answered in
    /// the new key phase), so several accepted updates mean several full rotations.
    static func keepUpdating(_ connection: QUICConnection) async -> Int {
        var accepted = 0
        while !Task.isCancelled {
            do {
                try await connection.initiateKeyUpdate()
                accepted += 1
            } catch QUICError.invalidArgument {
                // Not confirmed yet, or the previous update is still in progress.
            } catch {
                break
            }
            try? await Task.sleep(for: .milliseconds(15))
        }
        return accepted
    }

    @Test("a 50 MB echo survives repeated key updates started by both sides")
    func bothSidesUpdate() async throws {
        let listener = try await QUICListener.bind(host: "127.0.0.1", port: 0, configuration: serverConfiguration())
        let port = listener.localAddress.port ?? 0
        let serverUpdates = Task { () -> Int in
            for await connection in listener.connections {
                let updater = Task { await KeyUpdateTests.keepUpdating(connection) }
                await EchoServer.serve(connection)
                updater.cancel()
                return await updater.value
            }
            return 0
        }
        try await withHeavyTimeout(120) {
            let connection = try await QUICClient.connect(host: "127.0.0.1", port: port, configuration: clientConfiguration())
            // Before the handshake is confirmed an update is refused, not fatal.
            let clientUpdates = Task { await KeyUpdateTests.keepUpdating(connection) }
            let stream = try await connection.openStream()
            let total = 50 << 20
            let echo = try await echoPattern(on: stream, total: total, seed: 9)
            #expect(echo.received == total)
            #expect(echo.sentHash == echo.receivedHash)
            clientUpdates.cancel()
            let clientCount = await clientUpdates.value
            await connection.close()
            let serverCount = await serverUpdates.value
            #expect(clientCount >= 2, "client-initiated updates: \(clientCount)")
            #expect(serverCount >= 2, "server-initiated updates: \(serverCount)")
        }
        await listener.close()
    }
}
