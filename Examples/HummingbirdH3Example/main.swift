// A Hummingbird 2 application served over HTTP/3, HTTP/2 and HTTP/1.1 on one port.
//
//   swift run hummingbird-h3-example --cert cert.pem --key key.pem [--host 127.0.0.1] [--port 8443]
//   h3 --cacert ca.pem https://localhost:8443/hello              (HTTP/3)
//   curl --http2 --cacert ca.pem https://localhost:8443/hello    (HTTP/2, with Alt-Svc: h3=":8443")
//
// The routes and middleware are plain Hummingbird; only the server differs from
// `Application(router: router).runService()`: `HTTPServer.bind(configuration:responder:)`.
import Foundation
import HTTPAPI
import HTTPServer
import HTTPTypes
import Hummingbird
import HummingbirdH3
import Logging
import QUIC
import ServiceLifecycle
import UnixSignals

/// Adds `x-served-by` to every response (an application's own middleware, unchanged).
struct ServedByMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var response = try await next(request, context)
        response.headers[HTTPField.Name("x-served-by")!] = "hummingbird-h3-example"
        return response
    }
}

/// The application's routes.
func makeRouter() -> Router<BasicRequestContext> {
    let router = Router()
    router.middlewares.add(ServedByMiddleware())
    router.get("hello") { _, _ in "hello from hummingbird\n" }
    // Which protocol carried the request (the transport's facts beside Hummingbird's context).
    router.get("protocol") { _, _ in HummingbirdH3.requestContext?.protocolVersion.rawValue ?? "unknown" }
    // The request body streamed straight back.
    router.post("echo") { request, _ in Response(status: .ok, body: ResponseBody(asyncSequence: request.body)) }
    // A streamed response: `n` lines written one by one.
    router.get("lines/:n") { _, context -> Response in
        let count = min(try context.parameters.require("n", as: Int.self), 100_000)
        return Response(status: .ok, body: ResponseBody { writer in
            for index in 0..<count { try await writer.write(ByteBuffer(string: "line \(index)\n")) }
            try await writer.finish(nil)
        })
    }
    router.get("forbidden") { _, _ -> String in throw HTTPError(.forbidden, message: "not for you") }
    return router
}

/// `--name value` from the command line.
func option(_ name: String) -> String? {
    let arguments = CommandLine.arguments
    guard let index = arguments.firstIndex(of: name), index + 1 < arguments.count else { return nil }
    return arguments[index + 1]
}

guard let cert = option("--cert"), let key = option("--key") else {
    FileHandle.standardError.write(Data("usage: hummingbird-h3-example --cert CERT.pem --key KEY.pem [--host H] [--port P]\n".utf8))
    exit(2)
}
guard let port = Int(option("--port") ?? "8443"), (0...65535).contains(port) else {
    FileHandle.standardError.write(Data("--port must be 0-65535\n".utf8))
    exit(2)
}
let host = option("--host") ?? "127.0.0.1"
let tls = QUICTLSConfiguration.makeServerConfiguration(certificateChain: .file(cert), privateKey: .file(key),
                                                       applicationProtocols: ["h3"])
let logger = Logger(label: "hummingbird-h3-example")
let server: HTTPServer
do {
    server = try await HTTPServer.bind(configuration: HTTPServerConfiguration(host: host, port: port, tls: tls),
                                       responder: makeRouter().buildResponder(), logger: logger)
} catch {
    FileHandle.standardError.write(Data("cannot serve on \(host) port \(port): \(error)\n".utf8))
    exit(1)
}
FileHandle.standardError.write(Data("serving on https://\(host):\(server.port)/ (HTTP/3, HTTP/2, HTTP/1.1)\n".utf8))
let group = ServiceGroup(configuration: .init(services: [server], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
try await group.run()
FileHandle.standardError.write(Data("stopped\n".utf8))
