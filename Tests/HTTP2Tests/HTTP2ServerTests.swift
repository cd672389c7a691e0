import Foundation
import HTTP2
import HTTPAPI
import HTTPTypes
import NIOCore
import QUICTestSupport
import Testing
import HTTPTestSupport

/// What only the TCP side has: HTTP/1.1 fallback and keep-alive, the connection limit.
@Suite("HTTP/2 server: HTTP/1.1 fallback and limits")
struct HTTP2ServerTests {
    let pki = TestPKI.shared

    func bind(_ adjust: (inout HTTP2ServerConfiguration) -> Void = { _ in }) async throws -> HTTP2Server {
        var configuration = HTTP2ServerConfiguration(host: "127.0.0.1", port: 0, tls: pki.serverTLS())
        configuration.gracefulShutdownTimeout = .seconds(2)
        adjust(&configuration)
        return try await HTTP2Server.bind(configuration: configuration, handler: TestHandler(observations: Observations()))
    }

    /// Runs curl with the test CA; returns what `-w` printed and curl's exit status.
    func curl(_ arguments: [String], port: Int) async throws -> (written: String, status: Int32?) {
        let curl = try #require(requirePeer("curl"))
        let process = try PeerProcess(curl, ["-sS", "--cacert", pki.caFile, "--resolve", "localhost:\(port):127.0.0.1"] + arguments,
                                      directory: pki.directory, separateStandardOutput: true)
        let status = await process.waitForExit(seconds: 60)
        return (String(decoding: process.standardOutput, as: UTF8.self), status)
    }

    @Test("HTTP/1.1 keeps the connection across requests, even when the handler leaves a request body unread")
    func http1KeepAlive() async throws {
        guard requirePeer("curl") != nil else { return }
        let server = try await bind()
        let port = server.localAddress.port ?? 0
        let url = "https://localhost:\(port)"
        do {
            try await withTimeout(60) {
                let run = try await curl(["--http1.1", "-o", "/dev/null", "-o", "/dev/null", "-o", "/dev/null",
                                          "-w", "%{http_version}:%{http_code}:%{num_connects} ",
                                          "\(url)/hello", "\(url)/context", "\(url)/hello"], port: port)
                #expect(run.status == 0)
                #expect(run.written == "1.1:200:1 1.1:200:0 1.1:200:0 ", "one connection for three requests")
                // A POST whose body the handler ignores, then a GET on the same connection.
                let upload = pki.directory.appendingPathComponent("upload-\(UUID().uuidString)")
                try Data(repeating: 0x61, count: 200_000).write(to: upload)
                defer { try? FileManager.default.removeItem(at: upload) }
                let mixed = try await curl(["--http1.1", "-o", "/dev/null", "-w", "%{http_code}:%{num_connects} ",
                                            "--data-binary", "@\(upload.path)", "\(url)/ignore-body",
                                            // --next starts fresh options: trust and resolve again.
                                            "--next", "--cacert", pki.caFile, "--resolve", "localhost:\(port):127.0.0.1",
                                            "--http1.1", "-o", "/dev/null", "-w", "%{http_code}:%{num_connects} ",
                                            "\(url)/hello"], port: port)
                #expect(mixed.status == 0)
                #expect(mixed.written == "200:1 200:0 ", "the unread body was skipped, the connection kept")
            }
        } catch {
            await server.shutdown()
            throw error
        }
        #expect(server.statistics.http1Connections == 2)
        #expect(server.statistics.http2Connections == 0)
        await server.shutdown()
    }

    @Test("a server without HTTP/1.1 refuses clients that do not offer h2")
    func http2Only() async throws {
        guard requirePeer("curl") != nil else { return }
        let server = try await bind { $0.allowHTTP1 = false }
        let port = server.localAddress.port ?? 0
        do {
            try await withTimeout(60) {
                let refused = try await curl(["--http1.1", "-o", "/dev/null", "https://localhost:\(port)/hello"], port: port)
                #expect(refused.status != 0, "an HTTP/1.1-only client must not be served")
                let served = try await curl(["--http2", "-o", "/dev/null", "-w", "%{http_version}", "https://localhost:\(port)/hello"],
                                            port: port)
                #expect(served.status == 0)
                #expect(served.written == "2")
            }
        } catch {
            await server.shutdown()
            throw error
        }
        await server.shutdown()
    }

    @Test("connections beyond the limit are closed at once; a freed slot takes a new one")
    func connectionLimit() async throws {
        let server = try await bind { $0.maxConnections = 1 }
        let port = server.localAddress.port ?? 0
        let request = HTTPRequest(method: .get, scheme: "https", authority: "localhost:\(port)", path: "/hello")
        let first = HTTP2Transport(configuration: .init(tls: pki.clientTLS(alpn: ["h2"])))
        let second = HTTP2Transport(configuration: .init(tls: pki.clientTLS(alpn: ["h2"])))
        do {
            try await withTimeout(30) {
                let response = try await first.roundTrip(request)
                #expect(String(buffer: try await response.body.collect(upTo: 100)) == "hello")
                await #expect(throws: HTTPError.self) { _ = try await second.roundTrip(request) }
                await first.shutdown()
                // The server sees the first connection close a moment later.
                var served = false
                for _ in 0..<100 where !served {
                    if let response = try? await second.roundTrip(request) {
                        served = String(buffer: try await response.body.collect(upTo: 100)) == "hello"
                    } else {
                        try await Task.sleep(for: .milliseconds(50))
                    }
                }
                #expect(served)
            }
        } catch {
            await first.shutdown()
            await second.shutdown()
            await server.shutdown()
            throw error
        }
        await second.shutdown()
        #expect(server.statistics.connectionsAccepted >= 2)
        await server.shutdown()
    }
}
