// h3-demo: the quickest look at the stack. Starts an HTTP/3 server on 127.0.0.1 with a freshly
// generated self-signed certificate, sends it a request with the HTTP/3 client (which trusts
// exactly that certificate), prints the exchange, and shuts both down gracefully.
//
// Usage: swift run h3-demo [PATH]
import Foundation
import HTTP3
import HTTPAPI
import HTTPTypes
import NIOCore
import QUIC

@main
struct H3Demo {
    static func main() async {
        let path = CommandLine.arguments.dropFirst().first ?? "/hello"
        do {
            try await run(path: path.hasPrefix("/") ? path : "/" + path)
        } catch {
            FileHandle.standardError.write(Data("h3-demo: \(error)\n".utf8))
            exit(1)
        }
    }

    static func run(path: String) async throws {
        let certificate = try CertificateGenerator.makeLeaf(
            .init(commonName: "localhost", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"]))
        print("* generated a self-signed certificate for localhost, SHA-256 \(certificate.sha256Fingerprint)")

        let serverTLS = QUICTLSConfiguration.makeServerConfiguration(
            certificateChain: .pem(certificate.certificatePEM), privateKey: .pem(certificate.privateKeyPEM),
            applicationProtocols: ["h3"])
        let handler = ClosureHTTPHandler { request, _, context, response in
            var head = HTTPResponse(status: .ok)
            head.headerFields[.contentType] = "text/plain; charset=utf-8"
            let text = "hello from swift-h3 over HTTP/\(context.protocolVersion.rawValue): \(request.method) \(request.path ?? "")\n"
            head.headerFields[.contentLength] = String(text.utf8.count)
            try await response.respond(head, body: ByteBuffer(string: text))
        }
        let server = try await HTTP3Server.bind(
            configuration: HTTP3ServerConfiguration(host: "127.0.0.1", port: 0, tls: serverTLS), handler: handler)
        let port = server.localAddress.port ?? 0
        print("* HTTP/3 server listening on udp://127.0.0.1:\(port)")

        var clientTLS = QUICTLSConfiguration.makeClientConfiguration(applicationProtocols: ["h3"])
        clientTLS.trustRoots = .certificates(.pem(certificate.certificatePEM))
        let client = HTTP3Transport(configuration: .init(tls: clientTLS))
        let request = HTTPRequest(method: .get, scheme: "https", authority: "localhost:\(port)", path: path)
        print("> \(request.method) https://localhost:\(port)\(path)")
        let response = try await client.roundTrip(request)
        print("< HTTP/\(response.metadata.protocolVersion.rawValue) \(response.head.status.code)")
        for field in response.head.headerFields { print("< \(field.name): \(field.value)") }
        let body = try await response.body.collect(upTo: 1 << 20)
        print(String(buffer: body), terminator: "")
        let timings = response.metadata.timings
        print("* connected in \(timings.connected), first byte after \(timings.firstResponseByte)")
        await client.shutdown()
        await server.shutdown()
    }
}
