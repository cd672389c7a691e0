import Foundation
import HTTP2
import HTTPAPI
import HTTPTypes
import NIOCore
import QUICTestSupport
import Testing
import HTTPTestSupport

/// The hypercorn of the virtualenv that `scripts/install-deps` makes (an HTTP/2 server on
/// Python's `h2`).
func hypercorn() -> String? {
    let path = packageRoot.appendingPathComponent(".venv/bin/hypercorn").path
    if FileManager.default.isExecutableFile(atPath: path) { return path }
    if runningInCI { Issue.record("hypercorn is not installed: run scripts/install-deps") }
    return nil
}

@Suite("HTTP/2 interop with independent implementations")
struct HTTP2InteropTests {
    let files = InteropFiles.shared
    let pki = TestPKI.shared

    /// Runs curl and returns what `-w` wrote (curl's exit status must be 0).
    func curl(_ arguments: [String]) async throws -> String {
        let curl = try #require(requirePeer("curl"))
        let process = try PeerProcess(curl, ["-sS"] + arguments, directory: pki.directory, separateStandardOutput: true)
        let status = await process.waitForExit(seconds: 60)
        #expect(status == 0, "curl \(arguments.joined(separator: " ")): \(process.output)")
        return String(decoding: process.standardOutput, as: UTF8.self)
    }

    @Test("curl (nghttp2) fetches 1 MB and 50 MB over HTTP/2 and HTTP/1.1 from our server and uploads, byte-exact")
    func curlToServer() async throws {
        guard requirePeer("curl") != nil else { return }
        var configuration = HTTP2ServerConfiguration(host: "127.0.0.1", port: 0, tls: pki.serverTLS(alpn: ["h2"]))
        configuration.gracefulShutdownTimeout = .seconds(2)
        let server = try await HTTP2Server.bind(configuration: configuration, handler: DirectoryHandler(root: files.directory))
        let port = server.localAddress.port ?? 0
        let common = ["--cacert", pki.caFile, "--resolve", "localhost:\(port):127.0.0.1"]
        do {
            try await withHeavyTimeout(120) {
                for (flag, version) in [("--http2", "2"), ("--http1.1", "1.1")] {
                    for name in ["file-1m", "file-50m"] {
                        let output = pki.directory.appendingPathComponent("curl-\(UUID().uuidString)")
                        defer { try? FileManager.default.removeItem(at: output) }
                        let written = try await curl(common + [flag, "-o", output.path, "-w", "%{http_version} %{http_code}",
                                                               "https://localhost:\(port)/\(name)"])
                        #expect(written == "\(version) 200")
                        let data = try Data(contentsOf: output)
                        #expect(sha256(data) == files.hashes[name], "\(flag) \(name): \(data.count) bytes")
                    }
                    // Upload: the handler echoes the body.
                    let output = pki.directory.appendingPathComponent("curl-\(UUID().uuidString)")
                    defer { try? FileManager.default.removeItem(at: output) }
                    let upload = files.directory.appendingPathComponent("file-1m").path
                    let written = try await curl(common + [flag, "--data-binary", "@\(upload)", "-o", output.path,
                                                           "-w", "%{http_version} %{http_code}", "https://localhost:\(port)/echo"])
                    #expect(written == "\(version) 200")
                    #expect(sha256(try Data(contentsOf: output)) == files.hashes["file-1m"], "\(flag) upload")
                }
            }
        } catch {
            await server.shutdown()
            throw error
        }
        let statistics = server.statistics
        #expect(statistics.http2Connections == 3)
        #expect(statistics.http1Connections == 3)
        await server.shutdown()
    }

    @Test("our client fetches 1 MB and 50 MB from hypercorn (Python h2) and streams an upload, byte-exact")
    func clientToHypercorn() async throws {
        guard let hypercorn = hypercorn() else { return }
        let port = try freeTCPPort()
        let server = try PeerProcess(hypercorn, ["--certfile", pki.certFile, "--keyfile", pki.keyFile,
                                                 "--bind", "127.0.0.1:\(port)", "h2_peer:app"],
                                     directory: pki.directory,
                                     workingDirectory: packageRoot.appendingPathComponent("Tests/Peers"),
                                     environment: ["H2_PEER_ROOT": files.directory.path])
        defer { server.stop() }
        let client = HTTP2Transport(configuration: .init(tls: pki.clientTLS(alpn: ["h2"])))
        do {
            try await withHeavyTimeout(120) {
                for name in ["file-1m", "file-50m"] {
                    let request = HTTPRequest(method: .get, scheme: "https", authority: "localhost:\(port)", path: "/\(name)")
                    let response = try await roundTripWhenUp(client, request)
                    #expect(response.head.status == .ok)
                    #expect(response.head.headerFields[HTTPField.Name("x-http-version")!] == "2")
                    #expect(response.metadata.protocolVersion == .http2)
                    #expect(response.metadata.connection?.transport == "tcp")
                    #expect(response.metadata.connection?.applicationProtocol == "h2")
                    let (hash, size) = try await hashBody(response.body)
                    #expect(hash == files.hashes[name], "\(name): \(size) bytes")
                }
                // A streamed upload, echoed back as it arrives.
                let request = HTTPRequest(method: .post, scheme: "https", authority: "localhost:\(port)", path: "/echo")
                let total = 8 << 20
                let response = try await client.roundTrip(request, body: HTTPBody(LazyPattern(seed: 21, total: total),
                                                                                  length: Int64(total)))
                #expect(response.head.status == .ok)
                let (hash, size) = try await hashBody(response.body)
                #expect(size == total)
                #expect(hash == (await PatternGenerator.hash(seed: 21, total: total)))
                #expect(await client.statistics().connectionsOpened == 1)
            }
        } catch {
            await client.shutdown()
            throw error
        }
        await client.shutdown()
    }
}

/// Sends `request` until the peer server is up (it may still be starting).
func roundTripWhenUp(_ client: HTTP2Transport, _ request: HTTPRequest) async throws -> HTTPClientResponse {
    var lastError: any Error = HTTPError.connectTimeout
    for _ in 0..<300 {  // up to 30 s for the peer to start
        do {
            return try await client.roundTrip(request)
        } catch HTTPError.connectionRefused(let why) {
            lastError = HTTPError.connectionRefused(why)
            try await Task.sleep(for: .milliseconds(100))
        }
    }
    throw lastError
}
