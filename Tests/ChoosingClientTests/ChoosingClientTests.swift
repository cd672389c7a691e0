import ChoosingClient
import HTTP2
import HTTP3
import HTTPAPI
import HTTPServer
import HTTPTypes
import NIOConcurrencyHelpers
import NIOCore
import QUICTestSupport
import Testing

@Suite("The choosing client: Alt-Svc discovery, racing, fallback, broken alternatives")
struct ChoosingClientTests {
    @Test("Alt-Svc discovery: the first request goes over HTTP/2, sees Alt-Svc, the next goes over HTTP/3 to the same server")
    func discovery() async throws {
        let server = try await startCombinedServer()
        let port = server.port
        // A generous race delay: QUIC on loopback decides the race, not the machine's load.
        let client = HTTPClient(configuration: .init(mode: .altSvcDiscovery, raceDelay: .seconds(20)),
                                http3: testHTTP3Transport(port: port), http2: testHTTP2Transport(port: port))
        let authority = "localhost:\(port)"
        do {
            try await withTimeout(30) {
                let first = try await get(client, authority, "/one")
                #expect(first.0 == .http2 && first.1 == "h2 /one", "\(first)")
                #expect(client.knownAlternatives(host: "localhost", port: port) == ["localhost:\(port)"])
                let second = try await get(client, authority, "/two")
                #expect(second.0 == .http3)
                #expect(second.1 == "h3 /two", "the server's HTTP/3 side handled it")
                let third = try await get(client, authority, "/three")
                #expect(third.0 == .http3 && third.1 == "h3 /three")
                #expect(server.http2.statistics.requests == 1, "HTTP/2 carried only the first request")
                let events = client.recordedEvents()
                let order = [events.firstIndex { $0.isResponse(.http2) }, events.firstIndex { if case .altSvcReceived = $0 { true } else { false } },
                             events.firstIndex { $0.isQUICStarted }, events.firstIndex { if case .quicConnected = $0 { true } else { false } },
                             events.firstIndex { $0.isResponse(.http3) }]
                #expect(order.allSatisfy { $0 != nil } && order.map { $0 ?? -1 } == order.map { $0 ?? -1 }.sorted(), "\(events)")
                #expect(events.filter(\.isQUICStarted).count == 1, "one QUIC connection served both HTTP/3 requests")
            }
        } catch {
            await client.shutdown(); await server.shutdown()
            throw error
        }
        await client.shutdown()
        await server.shutdown()
    }

    @Test("UDP blocked: the race completes over HTTP/2 before the QUIC handshake times out; HTTP/3 is then avoided")
    func udpBlocked() async throws {
        let (hole, server) = try await blackholedHTTP2Server()
        let port = hole.port
        let client = HTTPClient(configuration: .init(mode: .race, raceDelay: .milliseconds(250)),
                                // Ample time for TCP + TLS on a loaded machine; the QUIC attempt must still be going on
                                // (or have timed out later) when the response arrives.
                                http3: testHTTP3Transport(port: port, handshakeTimeout: .seconds(15)),
                                http2: testHTTP2Transport(port: port))
        let authority = "localhost:\(port)"
        do {
            try await withTimeout(80) {
                let first = try await get(client, authority, "/blocked")
                #expect(first.0 == .http2 && first.1 == "h2 /blocked")
                let atResponse = client.recordedEvents()
                #expect(!atResponse.contains { $0.isQUICFailed }, "the response came before QUIC gave up: \(atResponse)")
                #expect(atResponse.first?.isQUICStarted == true)
                #expect(atResponse.contains { if case .tcpStarted = $0 { true } else { false } })
                #expect(atResponse.contains { $0.isTCPConnected })
                // The QUIC attempt goes on in the background, times out, and marks HTTP/3 broken.
                try await waitForEvent(client, seconds: 40) { $0.isBrokenMark }
                let events = client.recordedEvents()
                let failed = try #require(events.firstIndex { $0.isQUICFailed })
                let connected = try #require(events.firstIndex { $0.isTCPConnected })
                let response = try #require(events.firstIndex { $0.isResponse(.http2) })
                #expect(connected < failed && response < failed, "\(events)")
                if case .quicFailed(_, let reason) = events[failed] {
                    #expect(reason == HTTPError.connectTimeout.description, "it was the handshake timeout: \(reason)")
                }
                // While broken, requests go straight to HTTP/2 without a QUIC attempt.
                for index in 0..<3 {
                    #expect(try await get(client, authority, "/again\(index)").0 == .http2)
                }
                #expect(client.recordedEvents().filter(\.isQUICStarted).count == 1)
                #expect(server.statistics.http2Connections == 1, "one TCP connection carried everything")
            }
        } catch {
            await client.shutdown(); await server.shutdown()
            throw error
        }
        await client.shutdown()
        await server.shutdown()
        _ = hole
    }

    @Test("a broken HTTP/3 endpoint is not retried while marked broken, then retried with a doubled back-off")
    func brokenBackOff() async throws {
        let server = try await startHTTP2Server(port: 0)
        let port = server.localAddress.port ?? 0  // nothing listens on this UDP port: QUIC is refused at once
        let clock = ManualClock()
        let client = HTTPClient(configuration: .init(mode: .race, raceDelay: .seconds(20), brokenInitialDelay: .seconds(300),
                                                     now: { clock.now }),
                                http3: testHTTP3Transport(port: port), http2: testHTTP2Transport(port: port))
        let authority = "localhost:\(port)"
        do {
            try await withTimeout(30) {
                // QUIC refused: TCP starts without waiting out the 20 s race delay.
                #expect(try await get(client, authority, "/a").0 == .http2)
                var events = client.recordedEvents()
                #expect(events.contains(.alternativeMarkedBroken(endpoint: "localhost:\(port)", seconds: 300)), "\(events)")
                clock.advance(299)
                for path in ["/b", "/c"] { #expect(try await get(client, authority, path).0 == .http2) }
                #expect(client.recordedEvents().filter(\.isQUICStarted).count == 1, "no QUIC attempt while broken")
                clock.advance(2)
                // The period is over: QUIC is tried again (beside HTTP/2, which carries the request), fails
                // again, and is now avoided twice as long.
                #expect(try await get(client, authority, "/d").0 == .http2)
                try await waitForEvent(client, seconds: 10) { $0 == .alternativeMarkedBroken(endpoint: "localhost:\(port)", seconds: 600) }
                events = client.recordedEvents()
                #expect(events.filter(\.isQUICStarted).count == 2)
                clock.advance(599)
                #expect(try await get(client, authority, "/e").0 == .http2)
                #expect(client.recordedEvents().filter(\.isQUICStarted).count == 2)
            }
        } catch {
            await client.shutdown(); await server.shutdown()
            throw error
        }
        await client.shutdown()
        await server.shutdown()
    }

    @Test("HTTP/3 that worked and then fails falls back to HTTP/2 for the same request, and is marked broken")
    func fallbackAfterFailure() async throws {
        let server = try await startCombinedServer()
        let port = server.port
        let http3 = testHTTP3Transport(port: port)
        let client = HTTPClient(configuration: .init(mode: .altSvcDiscovery, raceDelay: .seconds(20)), http3: http3,
                                http2: testHTTP2Transport(port: port))
        let authority = "localhost:\(port)"
        do {
            try await withTimeout(30) {
                #expect(try await get(client, authority, "/1").0 == .http2)
                #expect(try await get(client, authority, "/2").0 == .http3)
                // The server's UDP side goes away (its connection closes; its port refuses).
                await server.http3.shutdown()
                // The client's HTTP/3 connection sees the server's GOAWAY and close (bounded wait).
                for _ in 0..<600 where !(await http3.connectionLoads().isEmpty) {  // up to 30 s
                    try await Task.sleep(for: .milliseconds(50))
                }
                #expect(await http3.connectionLoads().isEmpty, "the closed HTTP/3 connection left the pool")
                let third = try await get(client, authority, "/3")
                #expect(third.0 == .http2 && third.1 == "h2 /3", "the request itself was answered over HTTP/2")
                let events = client.recordedEvents()
                #expect(events.contains { $0.isFallback }, "\(events)")
                #expect(events.contains { $0.isBrokenMark })
                let attempts = events.filter(\.isQUICStarted).count
                #expect(try await get(client, authority, "/4").0 == .http2)
                #expect(client.recordedEvents().filter(\.isQUICStarted).count == attempts, "not retried while broken")
            }
        } catch {
            await client.shutdown(); await server.shutdown()
            throw error
        }
        await client.shutdown()
        await server.http2.shutdown()
    }

    @Test("malformed Alt-Svc is ignored with an event; HTTP/2-only ignores Alt-Svc")
    func altSvcHandling() async throws {
        let bad = StandInHTTP2Transport(altSvc: #"h3=":443"; ma="#)
        let client = HTTPClient(configuration: .init(mode: .altSvcDiscovery), http3: testHTTP3Transport(port: 1), http2: bad)
        #expect(try await get(client, "example.test", "/").0 == .http2)
        #expect(client.recordedEvents().contains { if case .altSvcIgnored = $0 { true } else { false } })
        #expect(client.knownAlternatives(host: "example.test", port: 443).isEmpty)
        await client.shutdown()

        let server = try await startCombinedServer()
        let only2 = HTTPClient(configuration: .init(mode: .http2Only), http3: testHTTP3Transport(port: server.port),
                               http2: testHTTP2Transport(port: server.port))
        do {
            for path in ["/x", "/y"] { #expect(try await get(only2, "localhost:\(server.port)", path).0 == .http2) }
            #expect(only2.knownAlternatives(host: "localhost", port: server.port).isEmpty)
            #expect(!only2.recordedEvents().contains { $0.isQUICStarted })
        } catch {
            await only2.shutdown(); await server.shutdown()
            throw error
        }
        await only2.shutdown()
        await server.shutdown()
    }

    @Test("race mode with a working server: concurrent first requests share one QUIC attempt and HTTP/3 wins")
    func raceWins() async throws {
        let server = try await startCombinedServer()
        let port = server.port
        let client = HTTPClient(configuration: .init(mode: .race, raceDelay: .seconds(20)),
                                http3: testHTTP3Transport(port: port), http2: testHTTP2Transport(port: port))
        do {
            try await withTimeout(30) {
                let versions = try await withThrowingTaskGroup(of: HTTPProtocolVersion.self) { group in
                    for index in 0..<8 { group.addTask { try await get(client, "localhost:\(port)", "/r\(index)").0 } }
                    var all: [HTTPProtocolVersion] = []
                    for try await version in group { all.append(version) }
                    return all
                }
                #expect(versions == Array(repeating: .http3, count: 8))
                #expect(client.recordedEvents().filter(\.isQUICStarted).count == 1, "\(client.recordedEvents())")
                #expect(server.http2.statistics.requests == 0)
            }
        } catch {
            await client.shutdown(); await server.shutdown()
            throw error
        }
        await client.shutdown()
        await server.shutdown()
    }
}
