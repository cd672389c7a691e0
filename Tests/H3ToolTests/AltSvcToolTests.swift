import Foundation
import HTTP2
import HTTP3
import HTTPAPI
import HTTPServer
import HTTPTypes
import NIOCore
import QUIC
import QUICTestSupport
import Testing

/// An HTTP/3 server on 127.0.0.1 answering every request with `name`, and an Alt-Svc field if given.
func namedHTTP3Server(_ name: String, altSvc: @escaping @Sendable () -> String? = { nil }) async throws -> HTTP3Server {
    let configuration = HTTP3ServerConfiguration(host: "127.0.0.1", port: 0, tls: TestPKI.shared.serverTLS(alpn: ["h3"]))
    return try await HTTP3Server.bind(configuration: configuration, handler: ClosureHTTPHandler { _, _, _, response in
        var head = HTTPResponse(status: .ok)
        if let value = altSvc() { head.headerFields[HTTPField.Name("alt-svc")!] = value }
        try await response.respond(head, body: ByteBuffer(string: name))
    })
}

@Suite("h3 --alt-svc, end to end")
struct AltSvcToolTests {
    @Test("--alt-svc FILE saves what the server advertised (mode 0600) and the next run goes to the alternative")
    func persistedAlternative() async throws {
        let alternative = try await namedHTTP3Server("alternative")
        let alternativePort = alternative.localAddress.port ?? 0
        let origin = try await namedHTTP3Server("origin") { #"h3=":\#(alternativePort)"; ma=600"# }
        let originPort = origin.localAddress.port ?? 0
        let scratch = try scratchDirectory()
        let cacheFile = scratch.appendingPathComponent("altsvc.txt").path
        let url = "https://localhost:\(originPort)/"
        do {
            let first = try await runH3(trust + ["-sS", "--alt-svc", cacheFile, "-w", " %{http_version}", url])
            #expect(first.status == 0, "\(first)")
            #expect(first.text == "origin 3")
            let saved = try String(contentsOfFile: cacheFile, encoding: .utf8)
            #expect(saved.contains("localhost \(originPort) h3 localhost \(alternativePort) "), "\(saved)")
            let mode = try FileManager.default.attributesOfItem(atPath: cacheFile)[.posixPermissions] as? Int
            #expect(mode == 0o600)

            let second = try await runH3(trust + ["-sS", "--alt-svc", cacheFile, url])
            #expect(second.status == 0, "\(second)")
            #expect(second.text == "alternative", "the cached alternative served the origin's URL")

            // Without the cache file, the origin answers again.
            let plain = try await runH3(trust + ["-sS", url])
            #expect(plain.text == "origin")

            // A damaged file is ignored with a warning naming it; the transfer still works and the file is rewritten.
            try Data("h2 localhost \(originPort) h3 localhost\n".utf8).write(to: URL(fileURLWithPath: cacheFile))
            let damaged = try await runH3(trust + ["-sS", "--alt-svc", cacheFile, url])
            #expect(damaged.status == 0, "\(damaged)")
            #expect(damaged.text == "origin")
            #expect(damaged.stderr.contains("warning: ignoring the Alt-Svc cache") && damaged.stderr.contains(cacheFile)
                    && damaged.stderr.contains("line 1"), "\(damaged.stderr)")
            let rewritten = try String(contentsOfFile: cacheFile, encoding: .utf8)
            #expect(rewritten.contains("h3 localhost \(alternativePort) "), "\(rewritten)")

            let usage = try await runH3(["--http2", "--http3", url])
            #expect(usage.status == 2, "conflicting protocol flags are bad usage: \(usage)")
        } catch {
            await origin.shutdown(); await alternative.shutdown()
            throw error
        }
        await origin.shutdown()
        await alternative.shutdown()
    }

    @Test("--http2 uses HTTP/2 and keeps no Alt-Svc file; --http3 races: HTTP/3 wins when UDP answers, HTTP/2 when refused")
    func protocolFlags() async throws {
        let handler = ClosureHTTPHandler { _, _, context, response in
            try await response.respond(HTTPResponse(status: .ok), body: ByteBuffer(string: "h\(context.protocolVersion.rawValue)"))
        }
        let combined = try await HTTPServer.bind(configuration: HTTPServerConfiguration(
            host: "127.0.0.1", port: 0, tls: TestPKI.shared.serverTLS(alpn: ["h2"])), handler: handler)
        let tcpOnly = try await HTTP2Server.bind(configuration: HTTP2ServerConfiguration(
            host: "127.0.0.1", port: 0, tls: TestPKI.shared.serverTLS(alpn: ["h2"])), handler: handler)
        let scratch = try scratchDirectory()
        let cacheFile = scratch.appendingPathComponent("h2-altsvc.txt").path
        do {
            let both = "https://localhost:\(combined.port)/"
            let http2 = try await runH3(trust + ["-sS", "-v", "--http2", "--alt-svc", cacheFile, "-w", " %{http_version}", both])
            #expect(http2.status == 0, "\(http2)")
            #expect(http2.text == "h2 2")
            // The TCP connection's certificate is described as the QUIC one is.
            for line in ["over tcp", "*  subject: CN=localhost", "*  issuer: CN=swift-h3 test CA", "*  expire date: "] {
                #expect(http2.stderr.contains(line), "missing \(line) in \(http2.stderr)")
            }
            #expect(!FileManager.default.fileExists(atPath: cacheFile), "--http2 keeps no Alt-Svc cache")

            // A long head start for QUIC, so that the machine's load does not decide the race.
            let raced = try await runH3(trust + ["-sS", "--http3", "--happy-eyeballs-timeout-ms", "20000",
                                                 "-w", " %{http_version}", both])
            #expect(raced.status == 0, "\(raced)")
            #expect(raced.text == "h3 3", "QUIC answered: HTTP/3 won the race")

            // Nothing on the UDP port: QUIC is refused, HTTP/2 carries the request.
            let fallback = try await runH3(trust + ["-sS", "--http3", "-v", "-w", " %{http_version}",
                                                    "https://localhost:\(tcpOnly.localAddress.port ?? 0)/"])
            #expect(fallback.status == 0, "\(fallback)")
            #expect(fallback.text == "h2 2")
            #expect(fallback.stderr.contains("< HTTP/2 200"), "\(fallback.stderr)")

            let only3 = try await runH3(trust + ["-sS", "--http3-only", "https://localhost:\(tcpOnly.localAddress.port ?? 0)/"])
            #expect(only3.status == 7, "--http3-only does not fall back: \(only3)")
            let badDelay = try await runH3(["--http3", "--happy-eyeballs-timeout-ms", "-5", both])
            #expect(badDelay.status == 2, "\(badDelay)")
        } catch {
            await combined.shutdown(); await tcpOnly.shutdown()
            throw error
        }
        await combined.shutdown()
        await tcpOnly.shutdown()
    }
}
