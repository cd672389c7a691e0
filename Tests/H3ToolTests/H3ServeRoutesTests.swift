import Foundation
@testable import H3Tool
import HTTPProxy
import QUIC
import QUICTestSupport
import Testing

/// Proxy routes by host and path prefix, replaced on SIGHUP, and the health path.
@Suite("h3 serve --proxy routes and --health-path")
struct H3ServeRoutesTests {
    let pki = TestPKI.shared

    @Test("route choice: a host beats no host, then the longest whole-segment prefix; *.domain is one label")
    func matching() {
        let routes: [(host: String?, prefix: String)] = [(nil, "/"), (nil, "/api"), ("app.example", "/"),
                                                          ("app.example", "/api/v2"), ("*.example", "/static/")]
        #expect(ProxyRouter.route(host: "other.test:443", path: "/x", among: routes) == 0)
        #expect(ProxyRouter.route(host: "other.test", path: "/api/users?q=1", among: routes) == 1)
        #expect(ProxyRouter.route(host: "other.test", path: "/apix", among: routes) == 0, "not a whole segment")
        #expect(ProxyRouter.route(host: "APP.example:8443", path: "/api/x", among: routes) == 2, "a host route wins")
        #expect(ProxyRouter.route(host: "app.example", path: "/api/v2/x", among: routes) == 3)
        #expect(ProxyRouter.route(host: "cdn.example", path: "/static/a.css", among: routes) == 4)
        #expect(ProxyRouter.route(host: "cdn.example", path: "/static", among: routes) == 4)
        #expect(ProxyRouter.route(host: "a.b.example", path: "/static/a.css", among: routes) == 0, "*.example is one label")
        #expect(ProxyRouter.route(host: "x", path: "/", among: [("app.example", "/")]) == nil)
    }

    @Test("--proxy values: URL, HOST=URL, /PREFIX=URL, HOST/PREFIX=URL; bad ones are refused")
    func parsing() throws {
        #expect(try ServeProxyOptions.parseRoute("http://b:80/x?a=b") == (nil, "/", "http://b:80/x?a=b"))
        #expect(try ServeProxyOptions.parseRoute("app.example=https://b") == ("app.example", "/", "https://b"))
        #expect(try ServeProxyOptions.parseRoute("/api=http://b") == (nil, "/api", "http://b"))
        #expect(try ServeProxyOptions.parseRoute("*.example/s=http://b") == ("*.example", "/s", "http://b"))
        for bad in ["ftp://b", "app=ftp://b", "=", "a*b=http://b", "http://", "nothing"] {
            #expect(throws: ToolError.self, "\(bad)") { _ = try ServeProxyOptions.parseRoute(bad) }
        }
    }

    /// GET through the proxy; the backend's name from its JSON answer, or the status and body.
    func fetch(_ host: String, _ path: String, port: Int) async throws -> String {
        let run = try await runH3(trust + ["-sS", "-w", "\n%{http_code}", "--resolve", "\(host):\(port):127.0.0.1",
                                           "https://\(host):\(port)\(path)"])
        let lines = run.text.split(separator: "\n")
        let status = lines.last.map(String.init) ?? "?"
        let body = lines.dropLast().joined(separator: "\n")
        if status == "200", let data = body.data(using: .utf8),
           let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any], let name = object["backend"] as? String {
            return name
        }
        return "\(status) \(body)"
    }

    @Test("routes by host and prefix from a file, replaced on SIGHUP; a bad file keeps the previous routes")
    func routesReload() async throws {
        let a = try await H3ServeProxyTests.Backend(name: "A")
        let b = try await H3ServeProxyTests.Backend(name: "B")
        let directory = try scratchDirectory()
        let file = directory.appendingPathComponent("routes").path
        try "localhost/api=http://127.0.0.1:\(a.port)   # the API\n/=http://127.0.0.1:\(b.port)\n"
            .write(toFile: file, atomically: true, encoding: .utf8)
        let proxy = try await ServeProcess.start(["--cert", pki.certFile, "--key", pki.keyFile, "--proxy-routes", file])
        #expect(try await fetch("localhost", "/api/users", port: proxy.port) == "A")
        #expect(try await fetch("localhost", "/apix", port: proxy.port) == "B")
        #expect(try await fetch("127.0.0.1", "/api/users", port: proxy.port) == "B", "another host: the catch-all")

        try "/api=http://127.0.0.1:\(b.port)\n".write(toFile: file, atomically: true, encoding: .utf8)
        let pid = proxy.process.process.processIdentifier
        kill(pid, SIGHUP)
        #expect(await eventually { proxy.log.contains("SIGHUP: reloaded 1 proxy route(s)") }, "\(proxy.log)")
        #expect(try await fetch("localhost", "/api/users", port: proxy.port) == "B")
        #expect(try await fetch("localhost", "/other", port: proxy.port).hasPrefix("404"))

        try "/api=gopher://x\n".write(toFile: file, atomically: true, encoding: .utf8)
        kill(pid, SIGHUP)
        #expect(await eventually { proxy.log.contains("routes reload refused, still serving the previous routes") }, "\(proxy.log)")
        #expect(proxy.log.contains("line 1"), "the log names the line: \(proxy.log)")
        #expect(try await fetch("localhost", "/api/users", port: proxy.port) == "B")
    }

    @Test("--health-path answers 200 without the backend, which is down (other paths get 502)")
    func health() async throws {
        let closed = try freeTCPPort()
        let proxy = try await ServeProcess.start(["--cert", pki.certFile, "--key", pki.keyFile,
                                                  "--proxy", "http://127.0.0.1:\(closed)", "--health-path", "/healthz"])
        #expect(try await fetch("localhost", "/healthz", port: proxy.port) == "200 ok")
        #expect(try await fetch("localhost", "/other", port: proxy.port).hasPrefix("502"))
        #expect(try await fetch("localhost", "/healthz?probe=1", port: proxy.port) == "200 ok")
    }

    func eventually(_ seconds: Double = 30, _ condition: () -> Bool) async -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if condition() { return true }
            try? await Task.sleep(for: .milliseconds(25))
        }
        return condition()
    }
}
