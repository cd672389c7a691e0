import Foundation
import NIOCore
import QUIC
import QUICSocket
import QUICTestSupport
import Testing

@Suite("ECN")
struct ECNTests {
    /// The largest ECT(0) count in ACK frames one side received, from its qlog.
    static func largestECT0InReceivedACKs(_ directory: URL, role: String) throws -> Int {
        var largest = 0
        for name in try FileManager.default.contentsOfDirectory(atPath: directory.path) where name.hasSuffix("_\(role).sqlog") {
            let text = try String(contentsOf: directory.appendingPathComponent(name), encoding: .utf8)
            for line in text.split(separator: "\n") where line.contains("transport:packet_received") {
                var rest = Substring(line)
                while let range = rest.range(of: "\"ect0\":") {
                    let digits = rest[range.upperBound...].prefix { $0.isNumber }
                    largest = max(largest, Int(digits) ?? 0)
                    rest = rest[range.upperBound...]
                }
            }
        }
        return largest
    }

    /// Downloads `size` bytes from an echo server (client writes, server echoes), with qlogs.
    static func transfer(serverSocket: UDPSocketOptions, qlogs: URL, size: Int) async throws {
        let listener = try await QUICListener.bind(host: "127.0.0.1", port: 0,
                                                   configuration: serverConfiguration { $0.quic.qlogDirectory = qlogs.path },
                                                   socketOptions: serverSocket)
        let serving = Task { for await connection in listener.connections { await EchoServer.serve(connection) } }
        defer { serving.cancel() }
        let port = listener.localAddress.port ?? 0
        try await withTimeout(60) {
            let connection = try await QUICClient.connect(host: "127.0.0.1", port: port,
                                                          configuration: clientConfiguration { $0.qlogDirectory = qlogs.path })
            let stream = try await connection.openStream()
            let echo = try await echoPattern(on: stream, total: size, seed: 5, chunk: 64 << 10)
            #expect(echo.received == size && echo.sentHash == echo.receivedHash)
            await connection.close()
        }
        await listener.close()
    }

    @Test("packets are marked ECT(0) and the peer's ACK frames count them, both ways")
    func countsInAcks() async throws {
        let qlogs = TestPKI.shared.directory.appendingPathComponent("qlog-ecn-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: qlogs, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: qlogs) }
        try await ECNTests.transfer(serverSocket: .init(), qlogs: qlogs, size: 4 << 20)
        // ECN validation (RFC 9000, section 13.4.2) succeeded: marking went on past the first
        // ten packets, so the counts the peer reports grow far beyond ten.
        let countedByServer = try ECNTests.largestECT0InReceivedACKs(qlogs, role: "client")
        let countedByClient = try ECNTests.largestECT0InReceivedACKs(qlogs, role: "server")
        #expect(countedByServer > 100, "ECT(0) packets the server counted in its ACKs: \(countedByServer)")
        #expect(countedByClient > 10, "ECT(0) packets the client counted in its ACKs: \(countedByClient)")
    }

    @Test("a server socket that does not read ECN reports no counts")
    func noCountsWithoutECN() async throws {
        let qlogs = TestPKI.shared.directory.appendingPathComponent("qlog-noecn-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: qlogs, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: qlogs) }
        try await ECNTests.transfer(serverSocket: .init(explicitCongestionNotification: false), qlogs: qlogs, size: 1 << 20)
        #expect(try ECNTests.largestECT0InReceivedACKs(qlogs, role: "client") == 0)
    }
}
