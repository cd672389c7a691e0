import Foundation
import HTTP2
import HTTP3
import HTTPAPI
import HTTPServer
import HTTPTypes
import Hummingbird
import HummingbirdH3
import Logging
import NIOCore
import QUIC
import QUICTestSupport
import ServiceLifecycle
import Testing

/// The package's root directory (for the example binary and the aioquic virtualenv).
let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// A router like an existing application's: middleware, a parameter route, streamed bodies both
/// ways, an error that middleware-less Hummingbird turns into a status.
func makeTestRouter() -> Router<BasicRequestContext> {
    let router = Router()
    router.middlewares.add(TagMiddleware())
    router.get("hello") { _, _ in "hello from hummingbird\n" }
    router.get("protocol") { _, _ in HummingbirdH3.requestContext?.protocolVersion.rawValue ?? "unknown" }
    router.post("echo") { request, _ in Response(status: .ok, body: ResponseBody(asyncSequence: request.body)) }
    router.get("lines/:n") { _, context -> Response in
        let count = try context.parameters.require("n", as: Int.self)
        return Response(status: .ok, body: ResponseBody { writer in
            for index in 0..<count { try await writer.write(ByteBuffer(string: "line \(index)\n")) }
            try await writer.finish(nil)
        })
    }
    router.get("forbidden") { _, _ -> String in throw HTTPError(.forbidden, message: "not for you") }
    return router
}

/// Middleware of the application: tags every response.
struct TagMiddleware<Context: RequestContext>: RouterMiddleware {
    static var tag: HTTPField.Name { HTTPField.Name("x-served-by")! }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var response = try await next(request, context)
        response.headers[Self.tag] = "hummingbird-h3-example"
        return response
    }
}

/// Runs the routes of ``makeTestRouter()`` (the example's routes are the same) through
/// `transport` and checks the answers; `expected` is the protocol that should carry them.
func checkRoutes(_ transport: some HTTPRoundTripper, authority: String, expected: HTTPProtocolVersion) async throws {
    func request(_ method: HTTPRequest.Method, _ path: String) -> HTTPRequest {
        HTTPRequest(method: method, scheme: "https", authority: authority, path: path)
    }
    let hello = try await transport.roundTrip(request(.get, "/hello"), body: nil, options: .init())
    #expect(hello.head.status == .ok)
    #expect(hello.metadata.protocolVersion == expected)
    #expect(hello.head.headerFields[TagMiddleware<BasicRequestContext>.tag] == "hummingbird-h3-example", "the middleware ran")
    #expect(String(buffer: try await hello.body.collect(upTo: 1000)) == "hello from hummingbird\n")

    let proto = try await transport.roundTrip(request(.get, "/protocol"), body: nil, options: .init())
    #expect(String(buffer: try await proto.body.collect(upTo: 100)) == expected.rawValue)

    // A 1 MiB upload in 64 KiB chunks, streamed back.
    var generator = PatternGenerator(seed: 16)
    let upload = generator.next(1 << 20)
    let chunks = AsyncStream<ByteBuffer> { continuation in
        var rest = upload
        while rest.readableBytes > 0 {
            continuation.yield(rest.readSlice(length: min(65_536, rest.readableBytes))!)
        }
        continuation.finish()
    }
    let echoed = try await transport.roundTrip(request(.post, "/echo"), body: HTTPBody(chunks, length: Int64(upload.readableBytes)),
                                               options: .init())
    #expect(echoed.head.status == .ok)
    #expect(try await echoed.body.collect(upTo: 2 << 20) == upload)

    let lines = try await transport.roundTrip(request(.get, "/lines/2000"), body: nil, options: .init())
    let text = String(buffer: try await lines.body.collect(upTo: 1 << 20))
    #expect(text.split(separator: "\n").count == 2000 && text.hasSuffix("line 1999\n"))

    let forbidden = try await transport.roundTrip(request(.get, "/forbidden"), body: nil, options: .init())
    #expect(forbidden.head.status == .forbidden, "a Hummingbird HTTPError becomes its status")
    _ = try await forbidden.body.collect(upTo: 1000)

    let missing = try await transport.roundTrip(request(.get, "/no-such-route"), body: nil, options: .init())
    #expect(missing.head.status == .notFound)
    _ = try await missing.body.collect(upTo: 1000)
}

@Suite("Hummingbird applications over HTTP/3 and HTTP/2")
struct HummingbirdH3Tests {
    let pki = TestPKI.shared

    @Test("the same Hummingbird routes and middleware answer over HTTP/3 and HTTP/2 on one port (our client)")
    func sameRoutesBothProtocols() async throws {
        var configuration = HTTPServerConfiguration(host: "127.0.0.1", port: 0, tls: pki.serverTLS())
        configuration.http3.gracefulShutdownTimeout = .seconds(5)
        configuration.http2.gracefulShutdownTimeout = .seconds(5)
        let server = try await HTTPServer.bind(configuration: configuration, responder: makeTestRouter().buildResponder())
        let http3 = HTTP3Transport(configuration: .init(tls: pki.clientTLS(alpn: ["h3"])))
        let http2 = HTTP2Transport(configuration: .init(tls: pki.clientTLS(alpn: ["h2"])))
        let authority = "localhost:\(server.port)"
        do {
            try await withTimeout(90) {
                try await checkRoutes(http3, authority: authority, expected: .http3)
                try await checkRoutes(http2, authority: authority, expected: .http2)
                // TCP responses advertise HTTP/3 on the same port.
                let request = HTTPRequest(method: .get, scheme: "https", authority: authority, path: "/hello")
                let overTCP = try await http2.roundTrip(request)
                #expect(overTCP.head.headerFields[.altSvc] == "h3=\":\(server.port)\"; ma=86400")
                _ = try await overTCP.body.collect(upTo: 1000)
            }
        } catch {
            await http3.shutdown()
            await http2.shutdown()
            await server.shutdown()
            throw error
        }
        await http3.shutdown()
        await http2.shutdown()
        await server.shutdown()
    }

    @Test("aioquic's HTTP/3 client gets the Hummingbird routes")
    func aioquicClient() async throws {
        let python = packageRoot.appendingPathComponent(".venv/bin/python").path
        guard FileManager.default.isExecutableFile(atPath: python) else {
            if runningInCI { Issue.record("aioquic is not installed: run scripts/install-deps") }
            return
        }
        var configuration = HTTPServerConfiguration(host: "127.0.0.1", port: 0, tls: pki.serverTLS())
        configuration.http3.gracefulShutdownTimeout = .seconds(2)
        configuration.http2.gracefulShutdownTimeout = .seconds(2)
        let server = try await HTTPServer.bind(configuration: configuration, responder: makeTestRouter().buildResponder())
        let script = packageRoot.appendingPathComponent("Tests/Peers/aioquic_peer.py").path
        let work = pki.directory.appendingPathComponent("hb-aioquic-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        for (path, expected) in [("/hello", "hello from hummingbird\n"), ("/protocol", "3")] {
            let output = work.appendingPathComponent("out").path
            let client = try PeerProcess(python, [script, "client", "https://localhost:\(server.port)\(path)", "--connect", "127.0.0.1",
                                                  "--cafile", pki.caFile, "--output", output], directory: work)
            #expect(await client.waitForExit(seconds: 30) == 0, "aioquic client: \(client.output.suffix(1000))")
            #expect(client.output.contains("status 200"))
            #expect(client.output.contains("x-served-by: hummingbird-h3-example"), "the middleware ran: \(client.output)")
            #expect(String(decoding: FileManager.default.contents(atPath: output) ?? Data(), as: UTF8.self) == expected)
        }
        await server.shutdown()
    }

    @Test("the example application builds and serves its routes over HTTP/3 and HTTP/2; SIGTERM stops it")
    func exampleBinary() async throws {
        let binary = try #require(exampleBinaryPath(), "hummingbird-h3-example is built with the tests")
        let process = try PeerProcess(binary, ["--cert", pki.certFile, "--key", pki.keyFile, "--port", "0"], directory: pki.directory)
        defer { process.stop() }
        var port: Int?
        for _ in 0..<400 where port == nil {
            if let range = process.output.range(of: #"https://127\.0\.0\.1:[0-9]+/"#, options: .regularExpression) {
                port = Int(process.output[range].dropFirst("https://127.0.0.1:".count).dropLast())
            } else {
                try #require(process.process.isRunning, "the example exited: \(process.output)")
                try await Task.sleep(for: .milliseconds(25))
            }
        }
        let bound = try #require(port, "the example says where it serves: \(process.output)")
        let http3 = HTTP3Transport(configuration: .init(tls: pki.clientTLS(alpn: ["h3"])))
        let http2 = HTTP2Transport(configuration: .init(tls: pki.clientTLS(alpn: ["h2"])))
        try await withTimeout(90) {
            try await checkRoutes(http3, authority: "localhost:\(bound)", expected: .http3)
            try await checkRoutes(http2, authority: "localhost:\(bound)", expected: .http2)
        }
        await http3.shutdown()
        await http2.shutdown()
        kill(process.process.processIdentifier, SIGTERM)
        #expect(await process.waitForExit(seconds: 30) == 0, "\(process.output)")
        #expect(process.output.contains("stopped"))
    }
}

/// The example's binary beside the test bundle (or in .build/debug).
func exampleBinaryPath() -> String? {
    var candidates: [String] = []
    if let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
        candidates.append(URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("hummingbird-h3-example").path)
    }
    candidates.append(packageRoot.appendingPathComponent(".build/debug/hummingbird-h3-example").path)
    return candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
}
