import Foundation
import HTTP3
import HTTPAPI
import HTTPTypes
import NIOCore
import NIOPosix
import QUIC
import QUICSocket
import QUICTestSupport

/// Records what handlers saw, for tests to check.
actor Observations {
    var errors: [String: String] = [:]
    var inFlight = 0
    var completed = 0

    func record(_ key: String, _ value: String) { errors[key] = value }
    func value(_ key: String) -> String? { errors[key] }
    func begin() { inFlight += 1 }
    func end() { inFlight -= 1; completed += 1 }
}

func hex(_ bytes: [UInt8]) -> String { bytes.map { String($0, radix: 16).leftPad(2) }.joined() }

extension String {
    func leftPad(_ width: Int) -> String { count >= width ? self : String(repeating: "0", count: width - count) + self }
}

/// Query parameter `name` of a path like `/bytes?n=100`.
func query(_ path: String?, _ name: String) -> String? {
    guard let path, let question = path.firstIndex(of: "?") else { return nil }
    for pair in path[path.index(after: question)...].split(separator: "&") {
        let parts = pair.split(separator: "=", maxSplits: 1)
        if parts.count == 2 && parts[0] == name { return String(parts[1]) }
    }
    return nil
}

/// The test handler: a small set of routes exercising the API.
struct TestHandler: HTTPHandler {
    let observations: Observations
    /// On `/context`: whether the handler ran on an event loop thread.
    static let onEventLoop = HTTPField.Name("x-handler-on-event-loop")!

    func handle(_ request: HTTPRequest, body: HTTPBody, context: HTTPRequestContext, response: HTTPResponseWriter) async throws {
        let path = request.path ?? "/"
        let route = path.split(separator: "?").first.map(String.init) ?? path
        switch route {
        case "/hello":
            var head = HTTPResponse(status: .ok)
            head.headerFields[.contentType] = "text/plain"
            head.headerFields[.contentLength] = "5"
            try await response.respond(head, body: ByteBuffer(string: "hello"))
        case "/context":
            let text = "\(context.protocolVersion.rawValue) \(context.tlsServerName ?? "-") \(context.remoteAddress != nil)"
            var head = HTTPResponse(status: .ok)
            head.headerFields[Self.onEventLoop] = MultiThreadedEventLoopGroup.currentEventLoop != nil ? "true" : "false"
            try await response.respond(head, body: ByteBuffer(string: text))
        case "/sha256":
            // Hashes the request body as it streams in.
            let (hash, count) = try await hashBody(body)
            try await response.respond(HTTPResponse(status: .ok), body: ByteBuffer(string: "\(count) \(hex(hash))"))
        case "/bytes":
            let total = Int(query(path, "n") ?? "0") ?? 0
            var head = HTTPResponse(status: .ok)
            head.headerFields[.contentLength] = String(total)
            try await response.writeHead(head)
            var generator = PatternGenerator(seed: UInt64(query(path, "seed") ?? "1") ?? 1)
            var sent = 0
            while sent < total {
                let chunk = generator.next(min(256 << 10, total - sent))
                try await response.write(chunk)
                sent += chunk.readableBytes
            }
            try await response.finish()
        case "/echo":
            var head = HTTPResponse(status: .ok)
            head.headerFields[HTTPField.Name("x-served-by")!] = "swift-h3 test server"
            head.headerFields[.cacheControl] = "no-store, private"
            try await response.writeHead(head)
            for try await chunk in body { try await response.write(chunk) }
            try await response.finish()
        case "/trailers":
            let received = try await body.collect(upTo: 1 << 20)
            let requestTrailers = try await body.trailers()
            var trailers = HTTPFields()
            trailers[HTTPField.Name("x-checksum")!] = String(received.readableBytes)
            trailers[HTTPField.Name("x-echo-trailer")!] = requestTrailers?[HTTPField.Name("x-client-trailer")!] ?? "none"
            try await response.respond(HTTPResponse(status: .ok), body: received, trailers: trailers)
        case "/throw":
            throw TestFailure("handler failed before the head")
        case "/throw-after-head":
            try await response.writeHead(HTTPResponse(status: .ok))
            try await response.write(ByteBuffer(string: "partial"))
            throw TestFailure("handler failed after the head")
        case "/stream-until-cancelled":
            try await response.writeHead(HTTPResponse(status: .ok))
            do {
                for _ in 0..<100_000 {
                    try await response.write(ByteBuffer(repeating: 0x41, count: 16 << 10))
                }
                await observations.record("cancel", "never cancelled")
            } catch {
                await observations.record("cancel", "\(error)")
                throw error
            }
        case "/late-fin":
            // Body first, the end of the stream a moment later: nghttp3 then sends a bare FIN.
            try await response.writeHead(HTTPResponse(status: .ok))
            try await response.write(ByteBuffer(string: "body"))
            try await Task.sleep(for: .milliseconds(5))
            try await response.finish()
        case "/ignore-body":
            // Answers without reading the request body (after it has had time to arrive whole).
            try await Task.sleep(for: .milliseconds(100))
            try await response.respond(HTTPResponse(status: .ok), body: ByteBuffer(string: "ignored"))
        case "/reject-upload":
            var head = HTTPResponse(status: .init(code: 413, reasonPhrase: "Content Too Large"))
            head.headerFields[.contentLength] = "9"
            try await response.respond(head, body: ByteBuffer(string: "too large"))
        case "/hints":
            // 103 Early Hints, then the final response.
            var hints = HTTPResponse(status: .init(code: 103, reasonPhrase: "Early Hints"))
            hints.headerFields[HTTPField.Name("link")!] = "</style.css>; rel=preload; as=style"
            try await response.writeHead(hints)
            try await response.respond(HTTPResponse(status: .ok), body: ByteBuffer(string: "hinted"))
        case "/slow":
            await observations.begin()
            let millis = Int(query(path, "ms") ?? "500") ?? 500
            try await Task.sleep(for: .milliseconds(millis))
            try await response.respond(HTTPResponse(status: .ok), body: ByteBuffer(string: "slow done"))
            await observations.end()
        default:
            try await response.respond(HTTPResponse(status: .notFound), body: ByteBuffer(string: "not found"))
        }
    }
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A server with ``TestHandler`` on 127.0.0.1 and a client that trusts the test CA.
struct HTTP3Fixture {
    let server: HTTP3Server
    let client: HTTP3Transport
    let observations: Observations

    /// - Parameter socketOptions: UDP socket options for both the server and the client.
    static func start(socketOptions: UDPSocketOptions = .init(),
                      _ adjust: (inout HTTP3ServerConfiguration) -> Void = { _ in }) async throws -> HTTP3Fixture {
        let observations = Observations()
        var configuration = HTTP3ServerConfiguration(host: "127.0.0.1", port: 0, tls: TestPKI.shared.serverTLS(alpn: ["h3"]))
        adjust(&configuration)
        let server = try await HTTP3Server.bind(configuration: configuration, handler: TestHandler(observations: observations),
                                                socketOptions: socketOptions)
        let client = HTTP3Transport(configuration: .init(tls: TestPKI.shared.clientTLS(alpn: ["h3"]),
                                                         socketOptions: socketOptions))
        return HTTP3Fixture(server: server, client: client, observations: observations)
    }

    var authority: String { "localhost:\(server.localAddress.port ?? 0)" }

    func request(_ method: HTTPRequest.Method = .get, _ path: String, fields: HTTPFields = [:]) -> HTTPRequest {
        HTTPRequest(method: method, scheme: "https", authority: authority, path: path, headerFields: fields)
    }

    /// Runs a test step with a timeout; stops the fixture if the step fails, so that no
    /// connection outlives its test.
    func run(_ seconds: Double, _ body: @escaping @Sendable () async throws -> Void) async throws {
        do {
            try await withTimeout(seconds, body)
        } catch {
            await stop()
            throw error
        }
    }

    /// ``run(_:_:)`` for a heavy test (one at a time, see `HeavyTestGate`).
    func runHeavy(_ seconds: Double, _ body: @escaping @Sendable () async throws -> Void) async throws {
        do {
            try await withHeavyTimeout(seconds, body)
        } catch {
            await stop()
            throw error
        }
    }

    func stop() async {
        await client.shutdown()
        await server.shutdown()
    }
}

/// SHA-256 and length of a body, read as it streams.
func hashBody(_ body: HTTPBody) async throws -> (hash: [UInt8], count: Int) {
    var hash = SHA256()
    var count = 0
    for try await chunk in body {
        hash.update(chunk)
        count += chunk.readableBytes
    }
    return (hash.finalize(), count)
}
