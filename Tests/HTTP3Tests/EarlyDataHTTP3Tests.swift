import Foundation
@testable import HTTP3
import HTTPAPI
import HTTPTypes
import NetSim
import NIOCore
import QUIC
import QUICTestSupport
import Testing
import HTTPTestSupport

/// Records, per request path, whether each request arrived in early data.
actor EarlyDataLog {
    private(set) var seen: [String: [Bool]] = [:]
    func record(_ path: String, early: Bool) { seen[path, default: []].append(early) }
    func requests(_ path: String) -> [Bool] { seen[path] ?? [] }
}

/// Routes for the 0-RTT tests: says whether the request came early, refuses early ones with
/// 425 on `/too-early`, echoes `/echo`.
struct EarlyDataHandler: HTTPHandler {
    let log: EarlyDataLog

    func handle(_ request: HTTPRequest, body: HTTPBody, context: HTTPRequestContext, response: HTTPResponseWriter) async throws {
        let path = request.path ?? "/"
        await log.record(path, early: context.isEarlyData)
        switch path {
        case "/too-early" where context.isEarlyData:
            try await response.respond(HTTPResponse(status: .init(code: 425, reasonPhrase: "Too Early")),
                                       body: ByteBuffer(string: "too early"))
        case "/echo":
            let received = try await body.collect(upTo: 1 << 20)
            try await response.respond(HTTPResponse(status: .ok), body: received)
        default:
            try await response.respond(HTTPResponse(status: .ok), body: ByteBuffer(string: "early=\(context.isEarlyData)"))
        }
    }
}

@Suite("HTTP/3 0-RTT")
struct EarlyDataHTTP3Tests {
    @Test("which requests may go in 0-RTT, and when a 425 is retried")
    func policy() {
        #expect(EarlyDataPolicy.mayUseEarlyData(method: .get, allowEarlyData: false, bodyReplayable: true))
        #expect(EarlyDataPolicy.mayUseEarlyData(method: .head, allowEarlyData: false, bodyReplayable: true))
        #expect(EarlyDataPolicy.mayUseEarlyData(method: .options, allowEarlyData: false, bodyReplayable: true))
        #expect(!EarlyDataPolicy.mayUseEarlyData(method: .post, allowEarlyData: false, bodyReplayable: true))
        #expect(!EarlyDataPolicy.mayUseEarlyData(method: .put, allowEarlyData: false, bodyReplayable: true))
        #expect(EarlyDataPolicy.mayUseEarlyData(method: .post, allowEarlyData: true, bodyReplayable: true))
        // A streamed body cannot be sent again after a refusal: never early.
        #expect(!EarlyDataPolicy.mayUseEarlyData(method: .post, allowEarlyData: true, bodyReplayable: false))
        #expect(!EarlyDataPolicy.mayUseEarlyData(method: .get, allowEarlyData: false, bodyReplayable: false))

        #expect(EarlyDataPolicy.shouldRetryTooEarly(status: 425, sentEarly: true, alreadyRetried: false))
        #expect(!EarlyDataPolicy.shouldRetryTooEarly(status: 425, sentEarly: true, alreadyRetried: true))
        #expect(!EarlyDataPolicy.shouldRetryTooEarly(status: 425, sentEarly: false, alreadyRetried: false))
        #expect(!EarlyDataPolicy.shouldRetryTooEarly(status: 200, sentEarly: true, alreadyRetried: false))
    }

    /// Request-stream (client bidirectional) STREAM frames in 0-RTT packets, from a qlog.
    static func earlyRequestFrames(_ qlogs: URL, role: String, event: String) throws -> Int {
        try earlyRequestFrames(Qlog(directory: qlogs, role: role), event: event)
    }

    static func earlyRequestFrames(_ qlog: Qlog, event: String) -> Int {
        qlog.streamIDs(event, packetType: "0RTT").filter { $0 & 0x3 == 0 }.count
    }

    static func waitForTicket(_ cache: QUICSessionCache) async throws {
        for _ in 0..<1500 where cache.count == 0 {  // up to 30 s
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(cache.count == 1, "a session ticket arrived")
    }

    /// Waits until the connection just used has left a ticket of its own (not `previous`):
    /// each connection resumes with a fresh ticket, as a reused one may be refused early data
    /// by the server's anti-replay.
    static func waitForFreshTicket(_ cache: QUICSessionCache, server: String, previous: [UInt8]?) async throws {
        for _ in 0..<1500 where cache.ticket(for: server)?.tlsSession == previous {  // up to 30 s
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(cache.ticket(for: server)?.tlsSession != previous, "a fresh session ticket arrived")
    }

    @Test("through a 2.2 s round trip: GET in 0-RTT, POST only when opted in, 425 retried after the handshake, refused early data resent")
    func http3EarlyData() async throws {
        try await HeavyTestGate.shared.run { try await Self.http3EarlyDataBody() }
    }

    static func http3EarlyDataBody() async throws {
        let serverQlogs = try makeQlogDirectory(), clientQlogs = try makeQlogDirectory()
        defer {
            try? FileManager.default.removeItem(at: serverQlogs)
            try? FileManager.default.removeItem(at: clientQlogs)
        }
        let port = try freeUDPPort()
        let log = EarlyDataLog()
        var serverConfiguration = HTTP3ServerConfiguration(host: "127.0.0.1", port: port,
                                                           tls: TestPKI.shared.serverTLS(alpn: ["h3"]))
        serverConfiguration.quic.quic.qlogDirectory = serverQlogs.path
        var server: HTTP3Server? = try await HTTP3Server.bind(configuration: serverConfiguration,
                                                             handler: EarlyDataHandler(log: log))
        // 200 ms to the server, 2 s back: the handshake completes 2.2 s after connect returns,
        // so a request sent in 0-RTT is early even when the loaded parallel suite delays its
        // task by a second or more.
        var relayConfiguration = NetworkSimulator.Configuration(listen: try NetworkAddress(host: "127.0.0.1", port: 0),
                                                                server: try NetworkAddress(host: "127.0.0.1", port: UInt16(port)))
        relayConfiguration.toServer.delay = .milliseconds(200)
        relayConfiguration.toClient.delay = .milliseconds(2000)
        let relay = try NetworkSimulator.start(relayConfiguration)
        defer { relay.stop() }
        let authority = "localhost:\(relay.listenAddress.port)"
        let cache = QUICSessionCache()
        @Sendable func makeTransport(clientQlog: Bool = false) -> HTTP3Transport {
            var configuration = HTTP3Transport.Configuration(tls: TestPKI.shared.clientTLS(alpn: ["h3"]),
                                                             resolve: [authority: "127.0.0.1"])
            configuration.quic.sessionCache = cache
            configuration.quic.enableEarlyData = true
            if clientQlog { configuration.quic.qlogDirectory = clientQlogs.path }
            return HTTP3Transport(configuration: configuration)
        }
        @Sendable func request(_ method: HTTPRequest.Method, _ path: String) -> HTTPRequest {
            HTTPRequest(method: method, scheme: "https", authority: authority, path: path)
        }
        /// Closes a transport once its connection left a fresh ticket for the next one.
        @Sendable func finish(_ transport: HTTP3Transport, previous: [UInt8]?) async throws {
            try await EarlyDataHTTP3Tests.waitForFreshTicket(cache, server: authority, previous: previous)
            await transport.shutdown()
        }
        @Sendable func currentTicket() -> [UInt8]? { cache.ticket(for: authority)?.tlsSession }

        do {
            try await withTimeout(180) {
                // 1. A full handshake leaves a ticket; nothing is early.
                let first = makeTransport()
                let plain = try await first.roundTrip(request(.get, "/early"))
                #expect(String(buffer: try await plain.body.collect(upTo: 1024)) == "early=false")
                #expect(plain.metadata.earlyDataBytes == 0)
                try await EarlyDataHTTP3Tests.waitForTicket(cache)
                await first.shutdown()
                #expect(try EarlyDataHTTP3Tests.earlyRequestFrames(serverQlogs, role: "server", event: "transport:packet_received") == 0)

                // 2. Resumed: the GET goes in 0-RTT, the handler sees it as early, the response arrives.
                var ticket = currentTicket()
                let second = makeTransport()
                let early = try await second.roundTrip(request(.get, "/early"))
                #expect(early.head.status == .ok)
                #expect(String(buffer: try await early.body.collect(upTo: 1024)) == "early=true")
                #expect(early.metadata.earlyDataBytes > 0)
                #expect(early.metadata.connection?.sessionResumed == true)
                let afterGet = try EarlyDataHTTP3Tests.earlyRequestFrames(serverQlogs, role: "server", event: "transport:packet_received")
                #expect(afterGet >= 1, "the server's qlog shows the request stream in a 0-RTT packet")
                try await finish(second, previous: ticket)

                // 3. A POST waits for the handshake unless the request opts in.
                ticket = currentTicket()
                let third = makeTransport()
                let post = try await third.roundTrip(request(.post, "/echo"), body: HTTPBody(ByteBuffer(string: "posted")))
                #expect(String(buffer: try await post.body.collect(upTo: 1024)) == "posted")
                #expect(post.metadata.earlyDataBytes == 0)
                #expect(post.metadata.connection?.sessionResumed == true)
                #expect(try EarlyDataHTTP3Tests.earlyRequestFrames(serverQlogs, role: "server", event: "transport:packet_received") == afterGet,
                        "no request stream in 0-RTT for the POST")
                try await finish(third, previous: ticket)

                ticket = currentTicket()
                let fourth = makeTransport()
                let optedIn = try await fourth.roundTrip(request(.post, "/echo"), body: HTTPBody(ByteBuffer(string: "posted early")),
                                                         options: HTTPRequestOptions(allowEarlyData: true))
                #expect(String(buffer: try await optedIn.body.collect(upTo: 1024)) == "posted early")
                #expect(optedIn.metadata.earlyDataBytes > 0)
                #expect(try EarlyDataHTTP3Tests.earlyRequestFrames(serverQlogs, role: "server", event: "transport:packet_received") > afterGet)
                try await finish(fourth, previous: ticket)
                #expect(await log.requests("/echo") == [false, true])

                // 4. 425 Too Early: the client sends the request again once the handshake is done, and only once.
                let fifth = makeTransport()
                let retried = try await fifth.roundTrip(request(.get, "/too-early"))
                #expect(retried.head.status == .ok)
                #expect(String(buffer: try await retried.body.collect(upTo: 1024)) == "early=false")
                #expect(retried.metadata.earlyDataBytes == 0, "the answered request went after the handshake")
                #expect(await log.requests("/too-early") == [true, false])
                #expect(await fifth.statistics().sessions.map(\.tooEarlyRetries) == [1])
                await fifth.shutdown()
            }
            // 5. A restarted server (new ticket key) cannot resume: it refuses the early data, and
            //    the request sent in it goes again after the handshake.
            await server?.shutdown()
            server = nil
            server = try await HTTP3Server.bind(configuration: serverConfiguration, handler: EarlyDataHandler(log: log))
            try await withTimeout(120) {
                let sixth = makeTransport(clientQlog: true)
                let resent = try await sixth.roundTrip(request(.get, "/refused"))
                #expect(resent.head.status == .ok)
                #expect(String(buffer: try await resent.body.collect(upTo: 1024)) == "early=false")
                #expect(resent.metadata.earlyDataBytes == 0)
                #expect(resent.metadata.connection?.sessionResumed == false)
                let sessions = await sixth.statistics().sessions
                #expect(sessions.map(\.earlyRequestsSent) == [1])
                #expect(sessions.map(\.earlyRequestsResent) == [1])
                #expect(try EarlyDataHTTP3Tests.earlyRequestFrames(clientQlogs, role: "client", event: "transport:packet_sent") >= 1,
                        "the client's qlog shows the request went in 0-RTT first")
                #expect(await log.requests("/refused") == [false], "the server got it once, after the handshake")
                await sixth.shutdown()
            }
        } catch {
            await server?.shutdown()
            throw error
        }
        await server?.shutdown()
    }

    @Test("against ngtcp2's gtlsserver through a 2.2 s round trip: the resumed GET goes in 0-RTT (its qlog shows it) and the file arrives whole")
    func earlyDataToGtlsserver() async throws {
        try await HeavyTestGate.shared.run { try await Self.earlyDataToGtlsserverBody() }
    }

    static func earlyDataToGtlsserverBody() async throws {
        guard let gtlsserver = requirePeer("gtlsserver") else { return }
        let pki = TestPKI.shared, files = InteropFiles.shared
        let qlogs = try makeQlogDirectory()
        defer { try? FileManager.default.removeItem(at: qlogs) }
        let port = try freeUDPPort()
        let server = try PeerProcess(gtlsserver, ["-q", "--htdocs=\(files.directory.path)", "--qlog-dir=\(qlogs.path)",
                                                  "127.0.0.1", "\(port)", pki.keyFile, pki.certFile], directory: pki.directory)
        defer { server.stop() }
        var relayConfiguration = NetworkSimulator.Configuration(listen: try NetworkAddress(host: "127.0.0.1", port: 0),
                                                                server: try NetworkAddress(host: "127.0.0.1", port: UInt16(port)))
        relayConfiguration.toServer.delay = .milliseconds(200)
        relayConfiguration.toClient.delay = .milliseconds(2000)
        let relay = try NetworkSimulator.start(relayConfiguration)
        defer { relay.stop() }
        let authority = "localhost:\(relay.listenAddress.port)"
        let cache = QUICSessionCache()
        @Sendable func makeTransport() -> HTTP3Transport {
            var configuration = HTTP3Transport.Configuration(tls: pki.clientTLS(alpn: ["h3"]), resolve: [authority: "127.0.0.1"])
            configuration.quic.sessionCache = cache
            configuration.quic.enableEarlyData = true
            return HTTP3Transport(configuration: configuration)
        }
        let request = HTTPRequest(method: .get, scheme: "https", authority: authority, path: "/file-1m")
        try await withTimeout(180) {
            let first = makeTransport()
            let plain = try await roundTripWhenUp(first, request)
            #expect(try await hashBody(plain.body).hash == files.hashes["file-1m"])
            try await EarlyDataHTTP3Tests.waitForTicket(cache)
            await first.shutdown()
            let serverLog = { try Qlog(directory: qlogs, fileSuffix: ".sqlog") }
            #expect(try EarlyDataHTTP3Tests.earlyRequestFrames(serverLog(), event: "transport:packet_received") == 0)
            #expect(try serverLog().events.count > 0, "gtlsserver wrote its qlog")

            let second = makeTransport()
            let early = try await second.roundTrip(request)
            #expect(early.head.status == .ok)
            #expect(try await hashBody(early.body).hash == files.hashes["file-1m"])
            let sessions = await second.statistics().sessions
            #expect(early.metadata.earlyDataBytes > 0,
                    "sent early: \(sessions.map(\.earlyRequestsSent)), resent: \(sessions.map(\.earlyRequestsResent))")
            #expect(early.metadata.connection?.sessionResumed == true)
            #expect(try EarlyDataHTTP3Tests.earlyRequestFrames(serverLog(), event: "transport:packet_received") >= 1,
                    "gtlsserver's qlog shows the request stream in a 0-RTT packet")
            await second.shutdown()
        }
    }
}
