import Foundation
import NIOCore
import NetSim
@testable import QUIC
import QUICLB
import QUICTestSupport
import Testing

/// A server behind two stateless QUIC-LB balancers (two VIPs with the same backends)
/// advertises the second VIP as its preferred address: the client's move there reaches the
/// same instance, routed by the preferred address's connection ID, and the download finishes
/// byte-exact with nothing misrouted.
@Suite("QUIC-LB: following a preferred address through a second balancer")
struct QUICLBPreferredAddressTests {
    @Test("a 20 MiB download moves to the preferred address (the second VIP) and finishes byte-exact")
    func preferredAddressThroughBalancer() async throws {
        let quicLB = try QUICLBConfiguration(configID: 0, serverIDLength: 1, nonceLength: 8, key: Array(1...16))
        let secondVIP = try freeUDPPort()
        let unusedBind = try freeUDPPort()
        let server = try await DownloadServer(configuration: serverConfiguration {
            $0.quicLB = try? QUICLBServerConfiguration(configuration: quicLB, serverID: [2])
            // Advertised: the second balancer. The server's own second socket (required by the
            // listener) is elsewhere and unused: the balancer forwards to the main socket.
            $0.preferredAddress = .init(host: "127.0.0.1", port: secondVIP, bindHost: "127.0.0.3", bindPort: unusedBind)
        })
        let backends: [QUICLoadBalancer.Backend] = [
            .init(serverID: [2], address: try NetworkAddress(host: "127.0.0.1", port: UInt16(server.port))),
        ]
        let first = try QUICLoadBalancer.start(.init(listen: try NetworkAddress(host: "127.0.0.1", port: 0),
                                                     backends: backends, quicLB: [quicLB]))
        let second = try QUICLoadBalancer.start(.init(listen: try NetworkAddress(host: "127.0.0.1", port: UInt16(secondVIP)),
                                                      backends: backends, quicLB: [quicLB]))
        defer { first.stop(); second.stop() }
        let total = 20 << 20
        try await withHeavyTimeout(180) {
            let expected = await PatternGenerator.hash(seed: 41, total: total)
            let connection = try await QUICClient.connect(host: "127.0.0.1", port: Int(first.listenAddress.port),
                                                          configuration: clientConfiguration())
            let result = try await download(connection, total: total, seed: 41)
            #expect(result.received == total)
            #expect(result.hash == expected, "the download is not byte-exact")
            let now = try #require(try await connection.sendingPathRemoteAddress())
            #expect(now.port == secondVIP, "the connection ended on \(now), not the preferred address")
            await connection.close()
        }
        let (a, b) = (first.statistics, second.statistics)
        print("preferred address through QUIC-LB: first VIP \(a); second VIP \(b)")
        #expect(b.routedByConnectionID > 0, "the second VIP routed the moved client by its connection ID: \(b)")
        #expect(b.routedByFourTuple == 0, "every datagram to the second VIP carried a routable ID: \(b)")
        #expect(a.misrouted == 0 && b.misrouted == 0)
        await server.close()
    }
}
