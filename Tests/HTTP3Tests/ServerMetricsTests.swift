import CoreMetrics
import Foundation
import HTTP2
import HTTP3
import HTTPServer
import HTTPAPI
import HTTPTypes
import MetricsTestKit
import NetSim
import NIOCore
import NIOPosix
import QUIC
import QUICSocket
import QUICTestSupport
import HTTPTestSupport
import Testing

/// Reads a `TestMetrics` backend by our metric names (prefix `t`).
struct MetricsReader {
    let backend: TestMetrics

    func counter(_ name: String, _ dimensions: [(String, String)] = []) -> Int64 {
        (try? backend.expectCounter("t_" + name, dimensions))?.totalValue ?? -1
    }

    func meter(_ name: String, _ dimensions: [(String, String)] = []) -> Double? {
        (try? backend.expectMeter("t_" + name, dimensions))?.lastValue
    }

    func timerCount(_ name: String) -> Int {
        (try? backend.expectTimer("t_" + name))?.values.count ?? -1
    }

    /// Waits (bounded) until the server has no open connection left, so that every per-connection
    /// metric is final.
    func waitUntilNoConnections(seconds: Double = 30) async throws {
        let deadline = ContinuousClock.now + .seconds(seconds)
        while (meter("quic_connections_open") ?? 0) != 0 || counter("quic_connections_opened_total") == 0 {
            guard ContinuousClock.now < deadline else { Issue.record("connections still open"); return }
            try await Task.sleep(for: .milliseconds(10))
        }
    }
}

/// An HTTP/3 server whose metrics go to a fresh `TestMetrics` backend.
func metricsServer(port: Int = 0, handler: some HTTPHandler = TestHandler(observations: Observations()),
                   _ adjust: (inout HTTP3ServerConfiguration) -> Void = { _ in }) async throws -> (HTTP3Server, MetricsReader) {
    let backend = TestMetrics()
    var configuration = HTTP3ServerConfiguration(host: "127.0.0.1", port: port, tls: TestPKI.shared.serverTLS(alpn: ["h3"]))
    configuration.quic.metrics = QUICMetricsConfiguration(prefix: "t", factory: backend)
    configuration.gracefulShutdownTimeout = .seconds(5)
    adjust(&configuration)
    let server = try await HTTP3Server.bind(configuration: configuration, handler: handler)
    return (server, MetricsReader(backend: backend))
}

@Suite("Server metrics (swift-metrics) after real traffic")
struct ServerMetricsTests {
    let pki = TestPKI.shared

    func client() -> HTTP3Transport {
        HTTP3Transport(configuration: .init(tls: pki.clientTLS(alpn: ["h3"])))
    }

    func request(_ server: HTTP3Server, _ path: String) -> HTTPRequest {
        HTTPRequest(method: .get, scheme: "https", authority: "localhost:\(server.localAddress.port ?? 0)", path: path)
    }

    @Test("one connection: handshake, requests by status class, bytes and datagrams, RTT, GOAWAY, close reason")
    func connectionLifecycle() async throws {
        let (server, metrics) = try await metricsServer()
        let transport = client()
        try await withTimeout(60) {
            for _ in 0..<3 {
                let response = try await transport.roundTrip(request(server, "/hello"))
                #expect(String(buffer: try await response.body.collect(upTo: 100)) == "hello")
            }
            let missing = try await transport.roundTrip(request(server, "/no-such-route"))
            _ = try await missing.body.collect(upTo: 1000)
            #expect(metrics.meter("quic_connections_open") == 1)
            #expect(metrics.meter("http_streams_open", [("protocol", "h3")]) == 0)
            // GOAWAY to move clients (rebalancing): the connection finishes and closes.
            await server.goAway()
            await transport.shutdown()
            try await metrics.waitUntilNoConnections()
        }
        #expect(metrics.counter("quic_connections_opened_total") == 1)
        #expect(metrics.meter("quic_connections_open") == 0)
        #expect(metrics.counter("quic_handshakes_total", [("result", "completed")]) == 1)
        #expect(metrics.counter("quic_handshakes_total", [("result", "failed")]) == 0)
        #expect(metrics.timerCount("quic_handshake_duration_seconds") == 1)
        #expect(metrics.timerCount("quic_smoothed_rtt_seconds") == 1)
        #expect(metrics.counter("quic_resumptions_total") == 0)
        #expect(metrics.counter("http_requests_total", [("protocol", "h3"), ("status", "2xx")]) == 3)
        #expect(metrics.counter("http_requests_total", [("protocol", "h3"), ("status", "4xx")]) == 1)
        #expect(metrics.counter("http_goaways_sent_total", [("protocol", "h3"), ("cause", "rebalance")]) == 1)
        #expect(metrics.counter("http_goaways_sent_total", [("protocol", "h3"), ("cause", "shutdown")]) == 0)
        let closed = QUICServerMetrics.CloseReason.allCases.map {
            metrics.counter("quic_connections_closed_total", [("reason", $0.rawValue)])
        }
        #expect(closed.reduce(0, +) == 1, "one close, with one reason: \(closed)")
        // The byte and datagram counters are exactly what the socket handed to and got from the kernel.
        let socket = try await server.socketStatistics()
        #expect(metrics.counter("quic_udp_datagrams_received_total") == Int64(socket.receivedDatagrams))
        #expect(metrics.counter("quic_udp_datagrams_sent_total") == Int64(socket.sentDatagrams))
        #expect(metrics.counter("quic_udp_bytes_received_total") > 1200, "at least the padded Initial")
        #expect(metrics.counter("quic_udp_bytes_sent_total") > 0)
        let gsoMessages = metrics.counter("quic_udp_gso_messages_total")
        #expect(gsoMessages >= 0 && Int64(socket.sentMessages) == Int64(socket.sentDatagrams)
                    - metrics.counter("quic_udp_gso_segments_total") + gsoMessages)
        await server.shutdown()
    }

    @Test("graceful shutdown with a connection open counts a shutdown GOAWAY")
    func shutdownGoAway() async throws {
        let (server, metrics) = try await metricsServer()
        let transport = client()
        try await withTimeout(60) {
            _ = try await transport.roundTrip(request(server, "/hello")).body.collect(upTo: 100)
            await server.shutdown()
            await transport.shutdown()
        }
        #expect(metrics.counter("http_goaways_sent_total", [("protocol", "h3"), ("cause", "shutdown")]) == 1)
        #expect(metrics.meter("quic_connections_open") == 0)
    }

    @Test("goaway-chance 1: every connection gets one GOAWAY, the client moves to a new connection")
    func goAwayChance() async throws {
        let (server, metrics) = try await metricsServer { $0.goawayChance = 1 }
        let transport = client()
        try await withTimeout(60) {
            for round in 1...2 {
                _ = try await transport.roundTrip(request(server, "/hello")).body.collect(upTo: 100)
                // The GOAWAY follows the response: wait for it before the next request.
                let deadline = ContinuousClock.now + .seconds(20)
                while metrics.counter("http_goaways_sent_total", [("protocol", "h3"), ("cause", "chance")]) < round
                        && ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(10))
                }
            }
            await transport.shutdown()
            try await metrics.waitUntilNoConnections()
        }
        #expect(metrics.counter("http_goaways_sent_total", [("protocol", "h3"), ("cause", "chance")]) == 2)
        #expect(metrics.counter("quic_connections_opened_total") == 2)
        await server.shutdown()
    }

    @Test("Retries, a version negotiation and a stateless reset are counted as sent")
    func endpointAnswers() async throws {
        let (server, metrics) = try await metricsServer { $0.quic.requireAddressValidation = true }
        let transport = client()
        let port = server.localAddress.port ?? 0
        try await withTimeout(60) {
            _ = try await transport.roundTrip(request(server, "/hello")).body.collect(upTo: 100)
            await transport.shutdown()
            // A long header with an unknown version, padded to 1200 bytes: version negotiation.
            var unknownVersion: [UInt8] = [0xc0, 0x1a, 0x2a, 0x3a, 0x4a, 8] + Array(repeating: 1, count: 8) + [8] + Array(repeating: 2, count: 8)
            unknownVersion += Array(repeating: 0, count: 1200 - unknownVersion.count)
            // A short header for a connection ID the server never issued: stateless reset.
            let unknownConnection: [UInt8] = [0x40] + Array(repeating: 0x5a, count: 60)
            try await sendDatagrams([unknownVersion, unknownConnection], to: port)
            let deadline = ContinuousClock.now + .seconds(20)
            while (metrics.counter("quic_version_negotiations_sent_total") == 0 || metrics.counter("quic_stateless_resets_sent_total") == 0)
                    && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(10))
            }
            try await metrics.waitUntilNoConnections()
        }
        let endpoint = try await server.endpointStatistics()
        // One Retry per token-less Initial: a client that resends its Initial before the Retry
        // arrives (a loaded machine) gets a second one. The counter matches the endpoint's own.
        #expect(endpoint.retriesSent >= 1)
        #expect(metrics.counter("quic_retries_sent_total") == Int64(endpoint.retriesSent))
        #expect(metrics.counter("quic_version_negotiations_sent_total") == 1)
        #expect(metrics.counter("quic_stateless_resets_sent_total") == 1)
        #expect(metrics.counter("quic_handshakes_total", [("result", "completed")]) == 1)
        await server.shutdown()
    }

    @Test("a client over the connection limit is refused and counted")
    func connectionLimit() async throws {
        let (server, metrics) = try await metricsServer { $0.quic.maxConnections = 1 }
        let first = client()
        var secondConfiguration = HTTP3Transport.Configuration(tls: pki.clientTLS(alpn: ["h3"]))
        secondConfiguration.quic.handshakeTimeout = .seconds(5)
        let second = HTTP3Transport(configuration: secondConfiguration)
        try await withTimeout(60) {
            _ = try await first.roundTrip(request(server, "/hello")).body.collect(upTo: 100)
            await #expect(throws: (any Error).self) {
                _ = try await second.roundTrip(request(server, "/hello"))
            }
            await first.shutdown()
            await second.shutdown()
            try await metrics.waitUntilNoConnections()
        }
        #expect(metrics.counter("quic_connections_refused_total", [("reason", "connection_limit")]) >= 1)
        #expect(metrics.counter("quic_connections_opened_total") == 1)
        await server.shutdown()
    }

    @Test("0-RTT: a resumed connection's early data is accepted; after a restart (new ticket key) it is refused")
    func zeroRTT() async throws {
        try await HeavyTestGate.shared.run { try await Self.zeroRTTBody() }
    }

    static func zeroRTTBody() async throws {
        let port = try freeUDPPort()
        let (server, metrics) = try await metricsServer(port: port)
        // Answers come back 300 ms late: the client's request is still in 0-RTT when it leaves,
        // however loaded the machine.
        var relayConfiguration = NetworkSimulator.Configuration(listen: try NetworkAddress(host: "127.0.0.1", port: 0),
                                                                server: try NetworkAddress(host: "127.0.0.1", port: UInt16(port)))
        relayConfiguration.toClient.delay = .milliseconds(300)
        let relay = try NetworkSimulator.start(relayConfiguration)
        defer { relay.stop() }
        let authority = "localhost:\(relay.listenAddress.port)"
        let cache = QUICSessionCache()
        @Sendable func makeTransport() -> HTTP3Transport {
            var configuration = HTTP3Transport.Configuration(tls: TestPKI.shared.clientTLS(alpn: ["h3"]),
                                                             resolve: [authority: "127.0.0.1"])
            configuration.quic.sessionCache = cache
            configuration.quic.enableEarlyData = true
            return HTTP3Transport(configuration: configuration)
        }
        let request = HTTPRequest(method: .get, scheme: "https", authority: authority, path: "/hello")
        try await withTimeout(90) {
            let first = makeTransport()
            _ = try await first.roundTrip(request).body.collect(upTo: 100)
            try await EarlyDataHTTP3Tests.waitForTicket(cache)
            await first.shutdown()
            let second = makeTransport()
            let early = try await second.roundTrip(request)
            _ = try await early.body.collect(upTo: 100)
            #expect(early.metadata.earlyDataBytes > 0)
            await second.shutdown()
            try await metrics.waitUntilNoConnections()
        }
        #expect(metrics.counter("quic_handshakes_total", [("result", "completed")]) == 2)
        #expect(metrics.counter("quic_resumptions_total") == 1)
        #expect(metrics.counter("quic_zero_rtt_total", [("result", "accepted")]) == 1)
        #expect(metrics.counter("quic_zero_rtt_total", [("result", "refused")]) == 0)
        await server.shutdown()

        // A restarted server has a new ticket key: it cannot resume, so it refuses the early data.
        let (restarted, restartedMetrics) = try await metricsServer(port: port)
        try await withTimeout(90) {
            let third = makeTransport()
            let resent = try await third.roundTrip(request)
            #expect(String(buffer: try await resent.body.collect(upTo: 100)) == "hello")
            #expect(resent.metadata.earlyDataBytes == 0)
            await third.shutdown()
            try await restartedMetrics.waitUntilNoConnections()
        }
        #expect(restartedMetrics.counter("quic_resumptions_total") == 0)
        #expect(restartedMetrics.counter("quic_zero_rtt_total", [("result", "accepted")]) == 0)
        #expect(restartedMetrics.counter("quic_zero_rtt_total", [("result", "refused")]) == 1)
        await restarted.shutdown()
    }

    @Test("disabled metrics create nothing in the backend")
    func disabled() async throws {
        let backend = TestMetrics()
        var configuration = HTTP3ServerConfiguration(host: "127.0.0.1", port: 0, tls: pki.serverTLS(alpn: ["h3"]))
        configuration.quic.metrics = QUICMetricsConfiguration(isEnabled: false, factory: backend)
        let server = try await HTTP3Server.bind(configuration: configuration, handler: TestHandler(observations: Observations()))
        let transport = client()
        try await withTimeout(60) {
            _ = try await transport.roundTrip(request(server, "/hello")).body.collect(upTo: 100)
            await transport.shutdown()
        }
        #expect(backend.counters.isEmpty && backend.meters.isEmpty && backend.timers.isEmpty)
        await server.shutdown()
    }

    @Test("the 0-RTT scan finds a 0-RTT packet behind a coalesced Initial, and stops at garbage")
    func longHeaderScan() {
        // Initial (v1): type 0, DCID 8, SCID 0, token length 0, length 3, then a 0-RTT packet.
        let initial: [UInt8] = [0xc0, 0, 0, 0, 1, 8] + Array(repeating: 7, count: 8) + [0, 0, 3, 1, 2, 3]
        let zeroRTT: [UInt8] = [0xd0, 0, 0, 0, 1, 8] + Array(repeating: 7, count: 8) + [0, 2, 9, 9]
        #expect(LongHeaderScan.containsZeroRTT(ByteBuffer(bytes: initial + zeroRTT)))
        #expect(!LongHeaderScan.containsZeroRTT(ByteBuffer(bytes: initial)))
        #expect(!LongHeaderScan.containsZeroRTT(ByteBuffer(bytes: [0xc0, 0, 0, 0, 1, 200])))
        #expect(!LongHeaderScan.containsZeroRTT(ByteBuffer(bytes: [0x40, 1, 2, 3])))
        // Version 2: 0-RTT is type 2.
        #expect(LongHeaderScan.containsZeroRTT(ByteBuffer(bytes: [0xe0, 0x6b, 0x33, 0x43, 0xcf, 0, 0, 0])))
    }
}

/// Sends raw datagrams to 127.0.0.1:`port` from a fresh socket.
func sendDatagrams(_ datagrams: [[UInt8]], to port: Int) async throws {
    let channel = try await DatagramBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .bind(host: "127.0.0.1", port: 0).get()
    let destination = try SocketAddress(ipAddress: "127.0.0.1", port: port)
    for bytes in datagrams {
        try await channel.writeAndFlush(AddressedEnvelope(remoteAddress: destination, data: ByteBuffer(bytes: bytes)))
    }
    try await channel.close()
}

@Suite("HTTP/3 and HTTP/2 on one port: request metrics by protocol")
struct CombinedServerMetricsTests {
    @Test("requests over HTTP/3 and HTTP/2 are counted by protocol and status class")
    func byProtocol() async throws {
        let pki = TestPKI.shared
        let backend = TestMetrics()
        var configuration = HTTPServerConfiguration(host: "127.0.0.1", port: 0, tls: pki.serverTLS())
        configuration.metrics = QUICMetricsConfiguration(prefix: "t", factory: backend)
        configuration.http2.gracefulShutdownTimeout = .seconds(5)
        configuration.http3.gracefulShutdownTimeout = .seconds(5)
        let server = try await HTTPServer.bind(configuration: configuration, handler: TestHandler(observations: Observations()))
        let metrics = MetricsReader(backend: backend)
        let http3 = HTTP3Transport(configuration: .init(tls: pki.clientTLS(alpn: ["h3"])))
        let http2 = HTTP2Transport(configuration: .init(tls: pki.clientTLS(alpn: ["h2"])))
        @Sendable func request(_ path: String) -> HTTPRequest {
            HTTPRequest(method: .get, scheme: "https", authority: "localhost:\(server.port)", path: path)
        }
        try await withTimeout(60) {
            for _ in 0..<2 { _ = try await http3.roundTrip(request("/hello")).body.collect(upTo: 100) }
            for _ in 0..<3 { _ = try await http2.roundTrip(request("/hello")).body.collect(upTo: 100) }
            _ = try await http2.roundTrip(request("/no-such-route")).body.collect(upTo: 1000)
            // The counters move when the server's side of each exchange ends.
            let deadline = ContinuousClock.now + .seconds(20)
            while metrics.counter("http_requests_total", [("protocol", "h2"), ("status", "4xx")]) < 1
                    || metrics.counter("http_requests_total", [("protocol", "h3"), ("status", "2xx")]) < 2,
                  ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(10))
            }
        }
        #expect(metrics.counter("http_requests_total", [("protocol", "h3"), ("status", "2xx")]) == 2)
        #expect(metrics.counter("http_requests_total", [("protocol", "h2"), ("status", "2xx")]) == 3)
        #expect(metrics.counter("http_requests_total", [("protocol", "h2"), ("status", "4xx")]) == 1)
        #expect(metrics.counter("http_requests_total", [("protocol", "http/1.1"), ("status", "2xx")]) == 0)
        #expect(metrics.meter("http_streams_open", [("protocol", "h2")]) == 0)
        #expect(metrics.counter("quic_connections_opened_total") == 1, "the QUIC side reports into the same backend")
        await http3.shutdown()
        await http2.shutdown()
        await server.shutdown()
    }
}
