import HTTP2
import HTTPAPI
import HTTPTypes
import NIOCore
import QUICTestSupport
import Testing

/// Counts the uploads a server handler began, and tells the test when one has its first chunk.
actor UploadLog {
    private(set) var started = 0
    private var firstChunk: [CheckedContinuation<Void, Never>] = []
    private var sawFirstChunk = false

    func begin() { started += 1 }

    func gotFirstChunk() {
        sawFirstChunk = true
        for waiter in firstChunk { waiter.resume() }
        firstChunk.removeAll()
    }

    /// Returns once a handler has read the first chunk of an upload.
    func waitForFirstChunk() async {
        if sawFirstChunk { return }
        await withCheckedContinuation { firstChunk.append($0) }
    }
}

/// GOAWAY while a request with a streamed (non-replayable) body is in flight: the server either
/// completes it, or the client fails it with a clear error; it is never lost or sent twice.
@Suite("HTTP/2 GOAWAY during a streamed upload")
struct HTTP2GoAwayUploadTests {
    /// A server whose handler reads the whole upload and answers with its size.
    func startServer(log: UploadLog, graceTime: Duration) async throws -> HTTP2Server {
        var configuration = HTTP2ServerConfiguration(host: "127.0.0.1", port: 0, tls: TestPKI.shared.serverTLS(alpn: ["h2"]))
        configuration.gracefulShutdownTimeout = graceTime
        return try await HTTP2Server.bind(configuration: configuration, handler: ClosureHTTPHandler { request, body, _, response in
            if request.method == .post { await log.begin() }
            var total = 0
            for try await chunk in body {
                if total == 0 { await log.gotFirstChunk() }
                total += chunk.readableBytes
            }
            try await response.respond(HTTPResponse(status: .ok), body: ByteBuffer(string: "\(total)"))
        })
    }

    func upload(_ authority: String) -> HTTPRequest {
        HTTPRequest(method: .post, scheme: "https", authority: authority, path: "/upload")
    }

    @Test("GOAWAY after the upload began: the server finishes it once; the next request takes a new connection")
    func completedOnce() async throws {
        let log = UploadLog()
        let server = try await startServer(log: log, graceTime: .seconds(30))
        let client = HTTP2Transport(configuration: .init(tls: TestPKI.shared.clientTLS(alpn: ["h2"])))
        let authority = "localhost:\(server.localAddress.port ?? 0)"
        let (chunks, feed) = AsyncStream.makeStream(of: ByteBuffer.self)
        do {
            try await withTimeout(60) {
                async let answer = client.roundTrip(upload(authority), body: HTTPBody(chunks))
                feed.yield(ByteBuffer(repeating: 1, count: 1000))
                await log.waitForFirstChunk()
                server.goAway()
                // The stream is at or below GOAWAY's last-stream-ID: the server keeps reading it.
                for _ in 0..<4 { feed.yield(ByteBuffer(repeating: 2, count: 1000)) }
                feed.finish()
                let response = try await answer
                #expect(response.head.status == .ok)
                #expect(String(buffer: try await response.body.collect(upTo: 100)) == "5000")
                #expect(await log.started == 1, "the upload reached the handler once")
                // The GOAWAY came before that response: the connection takes no new request.
                let next = try await client.roundTrip(HTTPRequest(method: .get, scheme: "https", authority: authority, path: "/"),
                                                      body: nil)
                _ = try await next.body.collect(upTo: 1 << 16)
                #expect(await client.statistics().connectionsOpened == 2)
                #expect(await log.started == 1, "the streamed body was not sent again")
            }
        } catch {
            feed.finish()
            await client.shutdown(); await server.shutdown()
            throw error
        }
        await client.shutdown()
        await server.shutdown()
    }

    @Test("GOAWAY, then the server closes before the upload ends: a clear error, and no second attempt")
    func failsClearly() async throws {
        let log = UploadLog()
        // The server's grace period after GOAWAY ends while the client holds the rest of its body.
        let server = try await startServer(log: log, graceTime: .milliseconds(200))
        let client = HTTP2Transport(configuration: .init(tls: TestPKI.shared.clientTLS(alpn: ["h2"])))
        let authority = "localhost:\(server.localAddress.port ?? 0)"
        let (chunks, feed) = AsyncStream.makeStream(of: ByteBuffer.self)
        do {
            try await withTimeout(60) {
                async let answer = client.roundTrip(upload(authority), body: HTTPBody(chunks))
                feed.yield(ByteBuffer(repeating: 1, count: 1000))
                await log.waitForFirstChunk()
                server.goAway()
                do {
                    let response = try await answer
                    Issue.record("the upload should fail, but got \(response.head.status)")
                } catch let error as HTTPError {
                    switch error {
                    case .connectionClosed, .streamReset: break
                    default: Issue.record("unexpected error \(error)")
                    }
                    #expect(!error.description.isEmpty)
                }
                feed.finish()
                #expect(await log.started == 1, "the streamed body was not sent again")
                #expect(await client.statistics().connectionsOpened == 1, "no second connection was tried")
            }
        } catch {
            feed.finish()
            await client.shutdown(); await server.shutdown()
            throw error
        }
        await client.shutdown()
        await server.shutdown()
    }
}
