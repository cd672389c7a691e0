import Foundation
import NIOCore
@testable import QUIC
import QUICLB
import QUICTestSupport
import Testing

/// A server with a QUIC-LB configuration hands out only routable connection IDs: its first
/// source ID, every NEW_CONNECTION_ID, a Retry's source ID and the preferred address's ID all
/// decode to its server ID.
@Suite("QUIC-LB connection IDs from the server")
struct QUICLBServerTests {
    static let key: [UInt8] = Array(100..<116)

    @Test("every ID the server issues (Retry, first SCID, preferred address, NEW_CONNECTION_ID) carries its server ID",
          arguments: [false, true])
    func issuedIDsDecodeToTheServerID(encrypted: Bool) async throws {
        let quicLB = try QUICLBConfiguration(configID: 2, serverIDLength: 2, nonceLength: 7, key: encrypted ? Self.key : nil)
        let preferredPort = try freeUDPPort()
        let server = try await DownloadServer(configuration: serverConfiguration {
            $0.quicLB = try? QUICLBServerConfiguration(configuration: quicLB, serverID: [0x2a, 0x17])
            $0.requireAddressValidation = true
            $0.preferredAddress = .init(host: "127.0.0.2", port: preferredPort)
        })
        try await withTimeout(60) {
            let connection = try await QUICClient.connect(host: "127.0.0.1", port: server.port, configuration: clientConfiguration())
            let result = try await download(connection, total: 1 << 20, seed: 5)
            #expect(result.received == 1 << 20)
            await connection.close()
        }
        let endpoint = server.listener.endpoint
        let (issued, count, retries) = try await endpoint.eventLoop.submit {
            (endpoint.connectionIDs.recentlyIssued, endpoint.connectionIDs.issuedCount, endpoint.currentStatistics.retriesSent)
        }.get()
        #expect(retries >= 1)
        // Retry + first SCID + preferred address + (active_connection_id_limit - 2) NEW_CONNECTION_IDs at least.
        #expect(count >= 4, "\(count) IDs issued")
        let decoder = try QUICLBDecoder([quicLB])
        for id in issued {
            #expect(id.bytes.count == 10)
            #expect(decoder.route(connectionID: id.bytes) == .server(id: [0x2a, 0x17], configID: 2), "\(id)")
        }
        #expect(Set(issued).count == issued.count)
        await server.close()
    }

    @Test("a server ID of the wrong length is refused; the endpoint parses short headers at the QUIC-LB ID length")
    func configurationChecksAndIDLength() async throws {
        let quicLB = try QUICLBConfiguration(configID: 0, serverIDLength: 1, nonceLength: 4)
        #expect(throws: QUICLBError.self) { try QUICLBServerConfiguration(configuration: quicLB, serverID: [1, 2]) }
        let server = try await DownloadServer(configuration: serverConfiguration {
            $0.quicLB = try? QUICLBServerConfiguration(configuration: quicLB, serverID: [9])
        })
        let endpoint = server.listener.endpoint
        #expect(try await endpoint.eventLoop.submit { endpoint.connectionIDs.length }.get() == 6)
        await server.close()
    }
}
