import Foundation
import NIOCore
import QUIC
import QUICTestSupport
import Testing

@Suite("Session resumption")
struct ResumptionTests {
    /// Waits until the cache holds a ticket (the server sends it after the handshake).
    static func waitForTicket(_ cache: QUICSessionCache) async throws {
        for _ in 0..<1500 where cache.count == 0 {  // up to 30 s
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(cache.count == 1, "a session ticket arrived")
    }

    @Test("the second connection to our server resumes the TLS session")
    func resumesWithOurServer() async throws {
        let server = try await EchoServer(configuration: serverConfiguration())
        defer { Task { await server.close() } }
        let cache = QUICSessionCache()
        var configuration = clientConfiguration()
        configuration.sessionCache = cache
        let settings = configuration
        try await withTimeout(30) {
            let first = try await QUICClient.connect(host: "127.0.0.1", port: server.port, configuration: settings)
            #expect(try await first.isSessionResumed == false)
            let stream = try await first.openStream()
            try await stream.write(Array("ping".utf8))
            try await stream.finish()
            _ = try await stream.readAll(limit: 100)
            try await ResumptionTests.waitForTicket(cache)
            await first.close()

            let second = try await QUICClient.connect(host: "127.0.0.1", port: server.port, configuration: settings)
            #expect(try await second.isSessionResumed, "the TLS layer reports a resumed session")
            let echo = try await second.openStream()
            try await echo.write(Array("again".utf8))
            try await echo.finish()
            #expect(String(buffer: try await echo.readAll(limit: 100)) == "again")
            await second.close()
        }
    }

    @Test("a damaged ticket falls back to a full handshake")
    func damagedTicket() async throws {
        let server = try await EchoServer(configuration: serverConfiguration())
        defer { Task { await server.close() } }
        let cache = QUICSessionCache()
        cache.store(QUICSessionTicket(tlsSession: Array(repeating: 7, count: 300), transportParameters: [1, 2, 3],
                                      received: Int(Date().timeIntervalSince1970)), for: "localhost:\(server.port)")
        var configuration = clientConfiguration()
        configuration.sessionCache = cache
        let settings = configuration
        try await withTimeout(30) {
            let connection = try await QUICClient.connect(host: "127.0.0.1", port: server.port, configuration: settings)
            #expect(try await connection.isSessionResumed == false)
            await connection.close()
        }
    }

    @Test("the cache survives a round trip through its file; damaged files are refused")
    func cacheFile() throws {
        let path = TestPKI.shared.directory.appendingPathComponent("sessions-\(UUID().uuidString)").path
        let cache = QUICSessionCache(capacity: 2)
        let now = Int(Date().timeIntervalSince1970)
        cache.store(QUICSessionTicket(tlsSession: [1, 2, 3], transportParameters: [4, 5], received: now), for: "a:443")
        cache.store(QUICSessionTicket(tlsSession: [6], transportParameters: [7], received: now), for: "b b:443")
        cache.store(QUICSessionTicket(tlsSession: [8], transportParameters: [9], received: now), for: "c:443")
        #expect(cache.count == 2 && cache.ticket(for: "a:443") == nil, "bounded: the oldest went")
        try cache.save(to: path)
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        #expect(attributes[.posixPermissions] as? Int == 0o600)
        let loaded = try QUICSessionCache(contentsOf: path)
        #expect(loaded.ticket(for: "b b:443")?.tlsSession == [6])
        #expect(loaded.ticket(for: "c:443")?.transportParameters == [9])
        let stale = QUICSessionCache(lifetime: .seconds(10))
        stale.store(QUICSessionTicket(tlsSession: [1], transportParameters: [1], received: now - 60), for: "a:1")
        #expect(stale.ticket(for: "a:1") == nil, "expired tickets are not used")
        // A ticket whose bytes changed fails its checksum, so GnuTLS never sees it (a damaged
        // session once made gnutls_session_set_data allocate 51 GB and crash: Fuzz/Regressions).
        let saved = try String(contentsOfFile: path, encoding: .utf8)
        let damaged = saved.replacingOccurrences(of: " Bg== ", with: " Bw== ")  // the session [6] -> [7]
        #expect(damaged != saved)
        try damaged.write(toFile: path, atomically: true, encoding: .utf8)
        #expect(throws: QUICError.self) { _ = try QUICSessionCache(contentsOf: path) }
        // Lines from before the checksum are skipped, not refused; empty parameters survive.
        let empty = QUICSessionCache()
        empty.store(QUICSessionTicket(tlsSession: [1], transportParameters: [], received: now), for: "e:443")
        try empty.save(to: path)
        #expect(try QUICSessionCache(contentsOf: path).ticket(for: "e:443")?.transportParameters == [])
        try "old:443 \(now) AQ== Ag==\n".write(toFile: path, atomically: true, encoding: .utf8)
        #expect(try QUICSessionCache(contentsOf: path).count == 0)
        try "garbage line\n".write(toFile: path, atomically: true, encoding: .utf8)
        #expect(throws: QUICError.self) { _ = try QUICSessionCache(contentsOf: path) }
    }

    @Test("the second connection to ngtcp2's gtlsserver resumes")
    func resumesWithGtlsserver() async throws {
        guard let gtlsserver = findExecutable("gtlsserver") else {
            if runningInCI { Issue.record("gtlsserver is not installed") }
            return
        }
        let pki = TestPKI.shared
        let port = try freeUDPPort()
        let server = try PeerProcess(gtlsserver, ["-q", "127.0.0.1", "\(port)", pki.keyFile, pki.certFile], directory: pki.directory)
        defer { server.stop() }
        let cache = QUICSessionCache()
        var configuration = clientConfiguration(alpn: ["h3"])
        configuration.sessionCache = cache
        let settings = configuration
        try await withTimeout(30) {
            var first: QUICConnection?
            for _ in 0..<50 where first == nil {
                do {
                    first = try await QUICClient.connect(host: "127.0.0.1", port: port, configuration: settings)
                } catch QUICError.connectionRefused {
                    try await Task.sleep(for: .milliseconds(100))  // still starting
                }
            }
            let connection = try #require(first)
            #expect(try await connection.isSessionResumed == false)
            try await ResumptionTests.waitForTicket(cache)
            await connection.close()
            let second = try await QUICClient.connect(host: "127.0.0.1", port: port, configuration: settings)
            #expect(try await second.isSessionResumed, "gtlsserver resumed the session")
            await second.close()
        }
    }
}
