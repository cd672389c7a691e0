import Foundation
import HTTP3
import HTTPAPI
import HTTPTypes
import NetSim
import NIOCore
import QUIC
import QUICTestSupport
import Testing
import HTTPTestSupport

/// Sends `request` until the peer server is up (it may still be starting).
func roundTripWhenUp(_ client: HTTP3Transport, _ request: HTTPRequest, body: HTTPBody? = nil) async throws -> HTTPClientResponse {
    var lastError: any Error = HTTPError.connectTimeout
    for _ in 0..<300 {  // up to 30 s for the peer to start
        do {
            return try await client.roundTrip(request, body: body)
        } catch HTTPError.connectionRefused(let why) {
            lastError = HTTPError.connectionRefused(why)
            try await Task.sleep(for: .milliseconds(100))
        }
    }
    throw lastError
}

@Suite("HTTP/3 interop with independent implementations")
struct HTTP3InteropTests {
    let files = InteropFiles.shared
    let pki = TestPKI.shared

    func client() -> HTTP3Transport {
        HTTP3Transport(configuration: .init(tls: pki.clientTLS(alpn: ["h3"])))
    }

    @Test("our client fetches 1 MB and 50 MB files from ngtcp2's gtlsserver, byte-exact")
    func clientToGtlsserver() async throws {
        guard let gtlsserver = requirePeer("gtlsserver") else { return }
        let port = try freeUDPPort()
        let server = try PeerProcess(gtlsserver, ["-q", "--htdocs=\(files.directory.path)", "127.0.0.1", "\(port)",
                                                  pki.keyFile, pki.certFile], directory: pki.directory)
        defer { server.stop() }
        let client = client()
        try await withHeavyTimeout(120) {
            for name in ["file-1m", "file-50m"] {
                let request = HTTPRequest(method: .get, scheme: "https", authority: "localhost:\(port)", path: "/\(name)")
                let response = try await roundTripWhenUp(client, request)
                #expect(response.head.status == .ok)
                let (hash, size) = try await hashBody(response.body)
                #expect(hash == files.hashes[name], "\(name): \(size) bytes")
            }
        }
        await client.shutdown()
    }

    /// gtlsserver uses the QPACK dynamic table, so under loss a response's HEADERS and FIN can
    /// arrive before the encoder-stream instructions they refer to. The stream is then complete in
    /// QUIC while nghttp3 still holds it blocked: the client must wait for the instructions, not
    /// fail the request (it did, with "stream reset by peer with error H3_NO_ERROR", in the
    /// interop runner's handshakeloss case).
    @Test("through 30 % loss, ten new connections to gtlsserver each complete a GET")
    func lossyHandshakesToGtlsserver() async throws {
        guard let gtlsserver = requirePeer("gtlsserver") else { return }
        let port = try freeUDPPort()
        let server = try PeerProcess(gtlsserver, ["-q", "--htdocs=\(files.directory.path)", "127.0.0.1", "\(port)",
                                                  pki.keyFile, pki.certFile], directory: pki.directory)
        defer { server.stop() }
        var relayConfiguration = NetworkSimulator.Configuration(listen: try NetworkAddress(host: "127.0.0.1", port: 0),
                                                                server: try NetworkAddress(host: "127.0.0.1", port: UInt16(port)))
        relayConfiguration.seed = 7
        for direction in [\NetworkSimulator.Configuration.toServer, \.toClient] {
            relayConfiguration[keyPath: direction].delay = .milliseconds(15)
            relayConfiguration[keyPath: direction].lossProbability = 0.3
        }
        let relay = try NetworkSimulator.start(relayConfiguration)
        defer { relay.stop() }
        let relayPort = Int(relay.listenAddress.port)
        let tls = pki.clientTLS(alpn: ["h3"])
        try await withHeavyTimeout(240) {
            // The server is up once a direct request succeeds (no loss on this path).
            let direct = HTTP3Transport(configuration: .init(tls: tls))
            let first = try await roundTripWhenUp(direct, HTTPRequest(method: .get, scheme: "https",
                                                                      authority: "localhost:\(port)", path: "/small.txt"))
            _ = try await first.body.collect(upTo: 1 << 20)
            await direct.shutdown()
            for attempt in 0..<10 {
                var configuration = HTTP3Transport.Configuration(tls: tls)
                configuration.quic.handshakeTimeout = .seconds(60)
                configuration.quic.idleTimeout = .seconds(60)
                let client = HTTP3Transport(configuration: configuration)
                do {
                    let request = HTTPRequest(method: .get, scheme: "https", authority: "localhost:\(relayPort)", path: "/small.txt")
                    let response = try await client.roundTrip(request)
                    #expect(response.head.status == .ok, "connection \(attempt)")
                    let body = try await response.body.collect(upTo: 1 << 20)
                    #expect(sha256(body) == files.hashes["small.txt"], "connection \(attempt): \(body.readableBytes) bytes")
                } catch {
                    Issue.record("connection \(attempt): \(error)")
                }
                await client.shutdown()
            }
        }
    }

    @Test("our client follows gtlsserver's preferred address (127.0.0.2) during a 50 MB download, byte-exact; declines when told to")
    func preferredAddressOfGtlsserver() async throws {
        guard let gtlsserver = requirePeer("gtlsserver") else { return }
        for follow in [true, false] {
            let qlogs = pki.directory.appendingPathComponent("gtls-qlog-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: qlogs, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: qlogs) }
            let port = try freeUDPPort(), preferredPort = try freeUDPPort()
            let server = try PeerProcess(gtlsserver, ["-q", "--htdocs=\(files.directory.path)", "--qlog-dir=\(qlogs.path)",
                                                      "--preferred-ipv4-addr=127.0.0.2:\(preferredPort)", "127.0.0.1", "\(port)",
                                                      pki.keyFile, pki.certFile], directory: pki.directory)
            defer { server.stop() }
            var configuration = HTTP3Transport.Configuration(tls: pki.clientTLS(alpn: ["h3"]))
            configuration.quic.followPreferredAddress = follow
            let client = HTTP3Transport(configuration: configuration)
            try await withHeavyTimeout(120) {
                let request = HTTPRequest(method: .get, scheme: "https", authority: "localhost:\(port)", path: "/file-50m")
                let response = try await roundTripWhenUp(client, request)
                let (hash, size) = try await hashBody(response.body)
                #expect(hash == files.hashes["file-50m"], "\(size) bytes")
            }
            await client.shutdown()
            server.stop()
            // gtlsserver's own qlog: PATH_CHALLENGE from our client on the preferred path, or none.
            let challenges = try Qlog(directory: qlogs, fileSuffix: ".sqlog").count("transport:packet_received", withFrame: "path_challenge")
            if follow {
                #expect(challenges >= 1, "gtlsserver saw no PATH_CHALLENGE")
            } else {
                #expect(challenges == 0, "the client probed the preferred address although told not to")
            }
        }
    }

    @Test("ngtcp2's gtlsclient fetches a 1 MB file from our server, byte-exact")
    func gtlsclientToServer() async throws {
        guard let gtlsclient = requirePeer("gtlsclient") else { return }
        var configuration = HTTP3ServerConfiguration(host: "127.0.0.1", port: 0, tls: pki.serverTLS(alpn: ["h3"]))
        configuration.gracefulShutdownTimeout = .seconds(2)
        let server = try await HTTP3Server.bind(configuration: configuration, handler: DirectoryHandler(root: files.directory))
        let port = server.localAddress.port ?? 0
        let downloads = pki.directory.appendingPathComponent("gtlsclient-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: downloads, withIntermediateDirectories: true)
        let client = try PeerProcess(gtlsclient, ["-q", "--exit-on-all-streams-close", "--download=\(downloads.path)",
                                                  "127.0.0.1", "\(port)", "https://localhost:\(port)/file-1m"],
                                     directory: pki.directory)
        let status = await client.waitForExit(seconds: 30)
        #expect(status == 0, "gtlsclient exit status \(String(describing: status)): \(client.output.suffix(1000))")
        let data = FileManager.default.contents(atPath: downloads.appendingPathComponent("file-1m").path) ?? Data()
        #expect(data.count == 1 << 20)
        #expect(sha256(data) == files.hashes["file-1m"])
        await server.shutdown()
    }

    /// Runs gtlsclient against `server` for `path` into a fresh directory; returns its exit
    /// status, its output, and the downloaded bytes.
    func runGtlsclient(_ gtlsclient: String, port: Int, path: String, extra: [String] = []) async throws
        -> (status: Int32?, output: String, data: Data) {
        let downloads = pki.directory.appendingPathComponent("gtlsclient-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: downloads, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: downloads) }
        let client = try PeerProcess(gtlsclient, ["-q", "--exit-on-all-streams-close", "--download=\(downloads.path)"] + extra
                                                 + ["127.0.0.1", "\(port)", "https://localhost:\(port)\(path)"],
                                     directory: pki.directory)
        let status = await client.waitForExit(seconds: 60)
        let name = String(path.split(separator: "/").last ?? "")
        return (status, client.output, FileManager.default.contents(atPath: downloads.appendingPathComponent(name).path) ?? Data())
    }

    @Test("our client keeps gtlsserver's NEW_TOKEN token: with its address validation on (-V), only the first connection is retried")
    func newTokenFromGtlsserver() async throws {
        guard let gtlsserver = requirePeer("gtlsserver") else { return }
        let qlogs = try makeQlogDirectory()
        defer { try? FileManager.default.removeItem(at: qlogs) }
        let port = try freeUDPPort()
        let server = try PeerProcess(gtlsserver, ["-q", "-V", "--htdocs=\(files.directory.path)", "127.0.0.1", "\(port)",
                                                  pki.keyFile, pki.certFile], directory: pki.directory)
        defer { server.stop() }
        let cache = QUICSessionCache()
        var configuration = HTTP3Transport.Configuration(tls: pki.clientTLS(alpn: ["h3"]))
        configuration.quic.sessionCache = cache
        configuration.quic.qlogDirectory = qlogs.path
        let request = HTTPRequest(method: .get, scheme: "https", authority: "localhost:\(port)", path: "/file-1m")
        let settings = configuration
        try await withTimeout(60) {
            for run in 1...2 {
                let client = HTTP3Transport(configuration: settings)
                let response = run == 1 ? try await roundTripWhenUp(client, request) : try await client.roundTrip(request)
                #expect(try await hashBody(response.body).hash == files.hashes["file-1m"])
                for _ in 0..<1500 where cache.addressTokenCount == 0 { try await Task.sleep(for: .milliseconds(20)) }
                #expect(cache.addressTokenCount == 1, "gtlsserver's NEW_TOKEN token arrived")
                await client.shutdown()
            }
        }
        // Our client's qlogs of the two connections that got through (attempts made while
        // gtlsserver was starting heard nothing): the first was retried, the second not.
        let names = try FileManager.default.contentsOfDirectory(atPath: qlogs.path).filter { $0.hasSuffix("_client.sqlog") }
        let logs = try names.map { try Qlog(directory: qlogs, fileSuffix: $0) }
            .filter { log in log.events.contains { $0.name == "transport:packet_received" && $0.packetType == "1RTT" } }
        #expect(logs.count == 2, "\(names)")
        let retries = logs.map { log in
            log.events.filter { $0.name == "transport:packet_received" && $0.packetType == "retry" }.count
        }.sorted()
        #expect(retries.count == 2 && retries[0] == 0 && retries[1] >= 1, "Retry packets received per connection: \(retries)")
    }

    @Test("gtlsclient follows our server's preferred address (127.0.0.2) during a 50 MB download, byte-exact")
    func gtlsclientFollowsPreferredAddress() async throws {
        guard let gtlsclient = requirePeer("gtlsclient") else { return }
        let qlogs = try makeQlogDirectory()
        defer { try? FileManager.default.removeItem(at: qlogs) }
        var configuration = HTTP3ServerConfiguration(host: "127.0.0.1", port: 0, tls: pki.serverTLS(alpn: ["h3"]))
        configuration.gracefulShutdownTimeout = .seconds(2)
        configuration.quic.quic.qlogDirectory = qlogs.path
        configuration.quic.preferredAddress = .init(host: "127.0.0.2", port: try freeUDPPort())
        let server = try await HTTP3Server.bind(configuration: configuration, handler: DirectoryHandler(root: files.directory))
        let port = server.localAddress.port ?? 0
        let run = try await HeavyTestGate.shared.run { try await runGtlsclient(gtlsclient, port: port, path: "/file-50m") }
        #expect(run.status == 0, "gtlsclient: \(run.output.suffix(1000))")
        #expect(run.data.count == 50 << 20)
        #expect(sha256(run.data) == files.hashes["file-50m"])
        await server.shutdown()
        let qlog = try Qlog(directory: qlogs, role: "server")
        #expect(qlog.count("transport:packet_received", withFrame: "path_challenge") >= 1,
                "our server's qlog shows gtlsclient probing the preferred address")
        #expect(qlog.pathChallengesSent >= 1, "and our server validating gtlsclient on it")
    }

    @Test("our client against aioquic's server: GET and POST")
    func clientToAioquic() async throws {
        guard let python = aioquicPython() else { return }
        let port = try freeUDPPort()
        let script = packageRoot.appendingPathComponent("Tests/Peers/aioquic_peer.py").path
        let server = try PeerProcess(python, [script, "server", "--port", "\(port)", "--cert", pki.certFile, "--key", pki.keyFile,
                                              "--root", files.directory.path], directory: pki.directory)
        defer { server.stop() }
        let client = client()
        try await withTimeout(60) {
            let get = HTTPRequest(method: .get, scheme: "https", authority: "localhost:\(port)", path: "/file-1m")
            let response = try await roundTripWhenUp(client, get)
            #expect(response.head.status == .ok)
            #expect(response.head.headerFields[HTTPField.Name("server")!] == "aioquic-peer")
            let body = try await response.body.collect(upTo: 2 << 20)
            #expect(sha256(body) == files.hashes["file-1m"])

            var generator = PatternGenerator(seed: 77)
            let upload = generator.next(300_000)
            let post = HTTPRequest(method: .post, scheme: "https", authority: "localhost:\(port)", path: "/echo")
            let echoed = try await client.roundTrip(post, body: HTTPBody(upload))
            #expect(echoed.head.status == .ok)
            #expect(try await echoed.body.collect(upTo: 1 << 20) == upload)
        }
        await client.shutdown()
    }

    @Test("aioquic's client against our server: GET and POST")
    func aioquicToServer() async throws {
        guard let python = aioquicPython() else { return }
        var configuration = HTTP3ServerConfiguration(host: "127.0.0.1", port: 0, tls: pki.serverTLS(alpn: ["h3"]))
        configuration.gracefulShutdownTimeout = .seconds(2)
        let server = try await HTTP3Server.bind(configuration: configuration, handler: DirectoryHandler(root: files.directory))
        let port = server.localAddress.port ?? 0
        let script = packageRoot.appendingPathComponent("Tests/Peers/aioquic_peer.py").path
        let work = pki.directory.appendingPathComponent("aioquic-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)

        let getOutput = work.appendingPathComponent("got").path
        let get = try PeerProcess(python, [script, "client", "https://localhost:\(port)/file-1m", "--connect", "127.0.0.1",
                                           "--cafile", pki.caFile, "--output", getOutput], directory: work)
        #expect(await get.waitForExit(seconds: 30) == 0, "aioquic client: \(get.output.suffix(1000))")
        #expect(get.output.contains("status 200"))
        #expect(sha256(FileManager.default.contents(atPath: getOutput) ?? Data()) == files.hashes["file-1m"])

        let uploadPath = work.appendingPathComponent("upload").path
        var generator = PatternGenerator(seed: 78)
        let upload = Data(generator.next(500_000).readableBytesView)
        _ = FileManager.default.createFile(atPath: uploadPath, contents: upload)
        let postOutput = work.appendingPathComponent("echoed").path
        let post = try PeerProcess(python, [script, "client", "https://localhost:\(port)/echo", "--connect", "127.0.0.1",
                                            "--method", "POST", "--data", uploadPath, "--cafile", pki.caFile,
                                            "--output", postOutput], directory: work)
        #expect(await post.waitForExit(seconds: 30) == 0, "aioquic client: \(post.output.suffix(1000))")
        #expect(FileManager.default.contents(atPath: postOutput) == upload)
        await server.shutdown()
    }

    @Test("aioquic's client keeps our NEW_TOKEN token: with Retry on, only its first connection is retried")
    func aioquicUsesNewToken() async throws {
        guard let python = aioquicPython() else { return }
        var configuration = HTTP3ServerConfiguration(host: "127.0.0.1", port: 0, tls: pki.serverTLS(alpn: ["h3"]))
        configuration.gracefulShutdownTimeout = .seconds(2)
        configuration.quic.requireAddressValidation = true
        let server = try await HTTP3Server.bind(configuration: configuration, handler: DirectoryHandler(root: files.directory))
        let port = server.localAddress.port ?? 0
        let script = packageRoot.appendingPathComponent("Tests/Peers/aioquic_peer.py").path
        let work = pki.directory.appendingPathComponent("aioquic-token-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: work) }
        let tokenFile = work.appendingPathComponent("token").path
        var retriesAfterFirst = 0
        for run in 1...2 {
            let output = work.appendingPathComponent("got-\(run)").path
            let client = try PeerProcess(python, [script, "client", "https://localhost:\(port)/file-1m", "--connect", "127.0.0.1",
                                                  "--cafile", pki.caFile, "--output", output, "--token-file", tokenFile],
                                         directory: work)
            #expect(await client.waitForExit(seconds: 30) == 0, "aioquic client: \(client.output.suffix(1000))")
            #expect(sha256(FileManager.default.contents(atPath: output) ?? Data()) == files.hashes["file-1m"])
            #expect((FileManager.default.contents(atPath: tokenFile)?.count ?? 0) > 0, "aioquic kept a token")
            if run == 1 { retriesAfterFirst = try await server.endpointStatistics().retriesSent }
        }
        // (An Initial retransmitted before the Retry arrived gets a Retry of its own, so the
        // first connection may count more than one.)
        let stats = try await server.endpointStatistics()
        #expect(retriesAfterFirst >= 1)
        #expect(stats.retriesSent == retriesAfterFirst, "the token spared aioquic's second connection the Retry")
        #expect(stats.addressTokensAccepted >= 1)
        #expect(stats.addressTokensIssued >= 2)
        await server.shutdown()
    }
}
