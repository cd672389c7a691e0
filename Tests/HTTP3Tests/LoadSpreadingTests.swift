import HTTP2
import HTTP3
import HTTPAPI
import HTTPTypes
import NIOCore
import QUIC
import QUICSocket
import QUICTestSupport
import Testing
import HTTPTestSupport

/// Sends `total` GETs of `path` with at most `concurrency` in flight; returns how many
/// answered 200 with `expected` as their body.
func sendMany(_ client: any HTTPRoundTripper, authority: String, path: String, expected: String, total: Int,
              concurrency: Int) async throws -> Int {
    try await withThrowingTaskGroup(of: Bool.self) { group in
        var started = 0, ok = 0
        func add() {
            let index = started
            started += 1
            group.addTask {
                let request = HTTPRequest(method: .get, scheme: "https", authority: authority, path: "\(path)?i=\(index)")
                let response = try await client.roundTrip(request)
                let text = String(buffer: try await response.body.collect(upTo: 1024))
                return response.head.status == .ok && text == expected
            }
        }
        while started < min(concurrency, total) { add() }
        while let success = try await group.next() {
            if success { ok += 1 }
            if started < total { add() }
        }
        return ok
    }
}

/// Counts requests per client address (one address per connection).
actor RequestsByPeer {
    var counts: [String: Int] = [:]
    func add(_ peer: String) { counts[peer, default: 0] += 1 }
}

@Suite("Load spreading over HTTP/3 and HTTP/2: GOAWAY chance and several connections per origin")
struct LoadSpreadingTests {
    @Test("GOAWAY chance 0.05: 2,000 requests at concurrency 50 all succeed and move over several connections")
    func goawayChance() async throws {
        let fixture = try await HTTP3Fixture.start { $0.goawayChance = 0.05 }
        try await fixture.runHeavy(180) {
            let ok = try await sendMany(fixture.client, authority: fixture.authority, path: "/hello", expected: "hello",
                                        total: 2000, concurrency: 50)
            #expect(ok == 2000, "every request succeeded despite the GOAWAYs")
            let client = await fixture.client.statistics()
            #expect(client.connectionsOpened > 1, "GOAWAY moved the client to new connections (\(client.connectionsOpened))")
            let server = try await fixture.server.statistics()
            let goaways = server.filter(\.goawaySent).count
            let served = server.map(\.requestStreamsOpened).reduce(0, +)
            #expect(goaways >= 1, "the server sent GOAWAY on \(goaways) connections")
            #expect(server.count == client.connectionsOpened, "the server saw every connection the client opened")
            #expect(served >= 2000, "requests reached the server \(served) times (retries included)")
            #expect(served / max(1, server.count) > 1, "connections carry more than one request on average")
        }
        await fixture.stop()
    }

    @Test("up to 4 connections per origin: 64 concurrent requests reach the server over 4 connections, each serving")
    func fourConnections() async throws {
        let observations = Observations()
        let server = try await HTTP3Server.bind(
            configuration: HTTP3ServerConfiguration(host: "127.0.0.1", port: 0, tls: TestPKI.shared.serverTLS(alpn: ["h3"])),
            handler: TestHandler(observations: observations))
        let client = HTTP3Transport(configuration: .init(tls: TestPKI.shared.clientTLS(alpn: ["h3"]), maxConnectionsPerOrigin: 4))
        let authority = "localhost:\(server.localAddress.port ?? 0)"
        do {
            try await withTimeout(60) {
                let ok = try await sendMany(client, authority: authority, path: "/slow", expected: "slow done",
                                            total: 64, concurrency: 64)
                #expect(ok == 64)
                let sessions = try await server.statistics()
                #expect(sessions.count == 4, "the server saw \(sessions.count) connections")
                #expect(sessions.allSatisfy { $0.requestStreamsOpened > 0 },
                        "each connection served requests: \(sessions.map(\.requestStreamsOpened))")
                #expect(sessions.map(\.requestStreamsOpened).reduce(0, +) == 64)
                let loads = await client.connectionLoads()
                #expect(loads.values.first?.count == 4, "the client pools 4 connections: \(loads)")
                #expect(await client.statistics().connectionsOpened == 4)
            }
        } catch {
            await client.shutdown()
            await server.shutdown()
            throw error
        }
        await client.shutdown()
        await server.shutdown()
    }

    @Test("three instances share one UDP port (SO_REUSEPORT); with GOAWAY chance a long-lived client spreads over them")
    func reusePortInstances() async throws {
        let observations = Observations()
        var configuration = HTTP3ServerConfiguration(host: "127.0.0.1", port: 0, tls: TestPKI.shared.serverTLS(alpn: ["h3"]),
                                                     goawayChance: 0.02)
        let options = UDPSocketOptions(reusePort: true)
        var servers = [try await HTTP3Server.bind(configuration: configuration, handler: TestHandler(observations: observations),
                                                  socketOptions: options)]
        let port = servers[0].localAddress.port ?? 0
        configuration.port = port
        for _ in 0..<2 {
            servers.append(try await HTTP3Server.bind(configuration: configuration, handler: TestHandler(observations: observations),
                                                      socketOptions: options))
        }
        let client = HTTP3Transport(configuration: .init(tls: TestPKI.shared.clientTLS(alpn: ["h3"])))
        let instances = servers
        do {
            try await withHeavyTimeout(180) {
                let ok = try await sendMany(client, authority: "localhost:\(port)", path: "/hello", expected: "hello",
                                            total: 1500, concurrency: 20)
                #expect(ok == 1500, "every request succeeded")
                var perInstance: [Int] = []
                var perConnection: [Int] = []
                var goaways = 0
                for server in instances {
                    let sessions = try await server.statistics()
                    perInstance.append(sessions.map(\.requestStreamsOpened).reduce(0, +))
                    perConnection += sessions.map(\.requestStreamsOpened)
                    goaways += sessions.filter(\.goawaySent).count
                }
                #expect(goaways > 0, "the servers sent GOAWAY")
                #expect(perInstance.filter { $0 > 0 }.count > 1, "requests spread over instances: \(perInstance)")
                // Every connection but possibly one opened for the very last request carried several.
                #expect(perConnection.filter { $0 <= 1 }.count <= 1, "requests per connection: \(perConnection)")
                #expect(perConnection.count == (await client.statistics()).connectionsOpened)
            }
        } catch {
            await client.shutdown()
            for server in servers { await server.shutdown() }
            throw error
        }
        await client.shutdown()
        for server in servers { await server.shutdown() }
    }

    @Test("HTTP/2 GOAWAY chance 0.05: 2,000 requests at concurrency 50 all succeed and move over several connections")
    func http2GoawayChance() async throws {
        var configuration = HTTP2ServerConfiguration(host: "127.0.0.1", port: 0, tls: TestPKI.shared.serverTLS(alpn: ["h2"]))
        configuration.goawayChance = 0.05
        let server = try await HTTP2Server.bind(configuration: configuration, handler: TestHandler(observations: Observations()))
        let client = HTTP2Transport(configuration: .init(tls: TestPKI.shared.clientTLS(alpn: ["h2"])))
        let authority = "localhost:\(server.localAddress.port ?? 0)"
        do {
            try await withHeavyTimeout(180) {
                let ok = try await sendMany(client, authority: authority, path: "/hello", expected: "hello", total: 2000,
                                            concurrency: 50)
                #expect(ok == 2000, "every request succeeded despite the GOAWAYs")
                let opened = await client.statistics().connectionsOpened
                let stats = server.statistics
                #expect(opened > 1, "GOAWAY moved the client to new connections (\(opened))")
                #expect(stats.goawayChanceConnections >= 1)
                #expect(stats.http2Connections == opened, "the server saw every connection the client opened")
                #expect(stats.requests >= 2000)
                #expect(stats.requests / max(1, opened) > 1, "connections carry more than one request on average")
            }
        } catch {
            await client.shutdown(); await server.shutdown()
            throw error
        }
        await client.shutdown()
        await server.shutdown()
    }

    @Test("HTTP/2 with up to 4 connections per origin: 64 concurrent requests reach the server over 4 connections, each serving")
    func http2FourConnections() async throws {
        let peers = RequestsByPeer()
        let server = try await HTTP2Server.bind(
            configuration: HTTP2ServerConfiguration(host: "127.0.0.1", port: 0, tls: TestPKI.shared.serverTLS(alpn: ["h2"])),
            handler: ClosureHTTPHandler { _, _, context, response in
                await peers.add(context.remoteAddress ?? "?")
                try await Task.sleep(for: .milliseconds(200))
                try await response.respond(HTTPResponse(status: .ok), body: ByteBuffer(string: "slow done"))
            })
        var configuration = HTTP2Transport.Configuration(tls: TestPKI.shared.clientTLS(alpn: ["h2"]))
        configuration.maxConnectionsPerOrigin = 4
        let client = HTTP2Transport(configuration: configuration)
        let authority = "localhost:\(server.localAddress.port ?? 0)"
        do {
            try await withTimeout(60) {
                let ok = try await sendMany(client, authority: authority, path: "/slow", expected: "slow done", total: 64,
                                            concurrency: 64)
                #expect(ok == 64)
                let counts = await peers.counts
                #expect(counts.count == 4, "the server saw \(counts.count) connections: \(counts)")
                #expect(counts.values.allSatisfy { $0 > 0 } && counts.values.reduce(0, +) == 64)
                #expect(server.statistics.http2Connections == 4)
                #expect(await client.statistics().connectionsOpened == 4)
            }
        } catch {
            await client.shutdown(); await server.shutdown()
            throw error
        }
        await client.shutdown()
        await server.shutdown()
    }
}
