import HTTP3
import HTTPAPI
import HTTPTypes
import NIOCore
import QUIC
import QUICTestSupport
import Testing

/// `HTTP3ServerConfiguration.loops = 2`: two event loops, two `SO_REUSEPORT` sockets on one
/// port; connections spread over both loops, every request is answered, and a graceful
/// shutdown drains and closes both.
@Suite("HTTP/3 server on several event loops")
struct MultiLoopHTTP3ServerTests {
    @Test("2 loops: 600 requests over many connections (GOAWAY chance 0.1) all succeed, spread over both loops")
    func spreadsOverLoops() async throws {
        let fixture = try await HTTP3Fixture.start {
            $0.loops = 2
            $0.goawayChance = 0.1
        }
        try await fixture.runHeavy(180) {
            let ok = try await sendMany(fixture.client, authority: fixture.authority, path: "/hello", expected: "hello",
                                        total: 600, concurrency: 8)
            #expect(ok == 600)
            let loops = try await fixture.server.loopStatistics()
            let accepted = loops.map(\.statistics.connectionsAccepted)
            print("HTTP/3 server, 2 loops: connections accepted per loop \(accepted)")
            #expect(accepted.count == 2)
            #expect(accepted.allSatisfy { $0 > 0 }, "connections per loop \(accepted)")
            let sessions = try await fixture.server.statistics()
            #expect(sessions.count == accepted.reduce(0, +))
        }
        await fixture.stop()
    }
}
