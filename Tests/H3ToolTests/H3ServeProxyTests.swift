import Foundation
import NIOCore
import QUIC
import QUICTestSupport
import Testing

/// `h3 serve --proxy`: the built binary as an HTTP/3 (and HTTP/2) front for an independent
/// HTTP/1.1 backend (Python's http.server), and for an HTTP/2 backend (`h3 serve --tcp`).
@Suite("h3 serve --proxy, end to end")
struct H3ServeProxyTests {
    let pki = TestPKI.shared

    /// A Python http.server: GET answers with its name, the request's path and header fields as JSON,
    /// `/bytes/N` with N pattern bytes, `/stall` never answers; POST and PUT answer with the
    /// body's length and SHA-256.
    static let backendScript = """
        import http.server, json, sys, hashlib, time
        NAME = sys.argv[1] if len(sys.argv) > 1 else ""
        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            def log_message(self, *a): pass
            def do_GET(self):
                if self.path.startswith("/stall"):
                    time.sleep(60); return
                if self.path.startswith("/hints"):
                    self.send_response_only(103); self.send_header("Link", "</style.css>; rel=preload"); self.end_headers()
                    self.wfile.flush()
                if self.path.startswith("/bytes/"):
                    n = int(self.path.split("/")[2]); self.send_response(200)
                    self.send_header("Content-Length", str(n)); self.end_headers()
                    chunk = bytes(range(256)) * 256; sent = 0
                    while sent < n:
                        k = min(len(chunk), n - sent); self.wfile.write(chunk[:k]); sent += k
                    return
                body = json.dumps({"backend": NAME, "path": self.path, "headers": [[k.lower(), v] for k, v in self.headers.items()]}).encode()
                self.send_response(200); self.send_header("Content-Type", "application/json")
                self.send_header("Connection", "keep-alive, x-hop"); self.send_header("X-Hop", "1")
                self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
            def do_PUT(self): self.do_POST()
            def do_POST(self):
                h = hashlib.sha256(); n = 0
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    while True:
                        size = int(self.rfile.readline().strip().split(b";")[0], 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\\r\\n", b"\\n", b""): pass
                            break
                        data = self.rfile.read(size); h.update(data); n += len(data); self.rfile.readline()
                else:
                    left = int(self.headers.get("Content-Length", "0"))
                    while left > 0:
                        data = self.rfile.read(min(left, 1 << 16)); h.update(data); n += len(data); left -= len(data)
                body = json.dumps({"length": n, "sha256": h.hexdigest()}).encode()
                self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
                self.wfile.write(body)
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        print(server.server_address[1], flush=True)
        server.serve_forever()
        """

    /// A running backend, stopped when released.
    final class Backend: @unchecked Sendable {
        let process: PeerProcess
        let port: Int
        init(name: String = "") async throws {
            let directory = try scratchDirectory()
            let script = directory.appendingPathComponent("backend.py")
            try H3ServeProxyTests.backendScript.write(to: script, atomically: true, encoding: .utf8)
            let python = try #require(peerProgram("python3"))
            process = try PeerProcess(python, [script.path, name], directory: directory, separateStandardOutput: true)
            var port: Int?
            for _ in 0..<400 where port == nil {
                port = Int(String(decoding: process.standardOutput, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
                if port == nil { try await Task.sleep(for: .milliseconds(25)) }
            }
            self.port = try #require(port, "the backend did not start: \(process.output)")
        }
        deinit { process.stop() }
    }

    /// A client certificate for jane, in groups admins and devs, and the proxy's options to require it.
    func clientCertificate() throws -> (cert: String, key: String) {
        let leaf = try CertificateGenerator.makeLeaf(.init(commonName: "jane", organizations: ["admins", "devs"]), issuer: pki.ca)
        let directory = try scratchDirectory()
        let cert = directory.appendingPathComponent("client.pem").path, key = directory.appendingPathComponent("client.key").path
        try leaf.certificatePEM.write(toFile: cert, atomically: true, encoding: .utf8)
        try leaf.privateKeyPEM.write(toFile: key, atomically: true, encoding: .utf8)
        return (cert, key)
    }

    func startProxy(to backend: String, _ extra: [String] = []) async throws -> ServeProcess {
        try await ServeProcess.start(["--tcp", "--cert", pki.certFile, "--key", pki.keyFile, "--client-ca", pki.caFile,
                                      "--proxy", backend] + extra)
    }

    /// The header fields the backend saw, from its JSON answer.
    func seenFields(_ body: Data) throws -> [(String, String)] {
        let object = try #require(try JSONSerialization.jsonObject(with: body) as? [String: Any])
        let headers = try #require(object["headers"] as? [[String]])
        return headers.compactMap { $0.count == 2 ? ($0[0], $0[1]) : nil }
    }

    @Test("the HTTP/1.1 backend sees Forwarded, X-Forwarded-*, the original Host and the client-certificate identity; spoofed identity never arrives (h3 over HTTP/3, curl over HTTP/2)")
    func forwardedFields() async throws {
        guard peerProgram("curl") != nil else { return }
        let backend = try await Backend()
        let proxy = try await startProxy(to: "http://127.0.0.1:\(backend.port)")
        let client = try clientCertificate()
        let spoof = ["-H", "X-Remote-User: admin", "-H", "X-Remote-Group: system:masters", "-H", "X-Forwarded-For: 203.0.113.9"]
        let h3 = try await runH3(trust + ["-sS", "--cert", client.cert, "--key", client.key] + spoof
                                 + ["https://localhost:\(proxy.port)/hello?x=1"])
        #expect(h3.status == 0, "\(h3)")
        let curl = try #require(peerProgram("curl"))
        let curlRun = try PeerProcess(curl, ["-sS", "--http2", "--cacert", pki.caFile, "--cert", client.cert, "--key", client.key]
                                      + spoof + ["-D", "-", "https://localhost:\(proxy.port)/hello?x=1"],
                                      directory: pki.directory, separateStandardOutput: true)
        #expect(await curlRun.waitForExit(seconds: 60) == 0, "\(curlRun.output)")
        let curlText = String(decoding: curlRun.standardOutput, as: UTF8.self)
        let curlBody = Data((curlText.components(separatedBy: "\r\n\r\n").last ?? "").utf8)
        #expect(!curlText.lowercased().contains("x-hop"), "hop-by-hop response fields are dropped: \(curlText)")

        for (name, body) in [("h3", h3.stdout), ("curl", curlBody)] {
            let fields = try seenFields(body)
            func all(_ field: String) -> [String] { fields.filter { $0.0 == field }.map(\.1) }
            #expect(all("host") == ["localhost:\(proxy.port)"], "\(name): \(fields)")
            #expect(all("x-remote-user") == ["jane"], "\(name): \(fields)")
            #expect(all("x-remote-group") == ["admins", "devs"], "\(name): \(fields)")
            #expect(!fields.contains { $0.1 == "admin" || $0.1 == "system:masters" }, "\(name): spoofed identity reached the backend")
            #expect(all("x-forwarded-for") == ["203.0.113.9, 127.0.0.1"], "\(name): \(fields)")
            #expect(all("x-forwarded-proto") == ["https"])
            #expect(all("x-forwarded-host") == ["localhost:\(proxy.port)"])
            #expect(all("x-forwarded-port") == ["\(proxy.port)"])
            #expect(all("forwarded") == ["for=127.0.0.1;by=127.0.0.1;proto=https;host=\"localhost:\(proxy.port)\""], "\(name): \(fields)")
        }
    }

    @Test("a 103 Early Hints from the backend reaches the client ahead of the final response (curl over HTTP/2)")
    func earlyHints() async throws {
        guard let curl = peerProgram("curl") else { return }
        let backend = try await Backend()
        let proxy = try await ServeProcess.start(["--tcp", "--cert", pki.certFile, "--key", pki.keyFile,
                                                  "--proxy", "http://127.0.0.1:\(backend.port)"])
        let run = try PeerProcess(curl, ["-sS", "--http2", "-i", "--cacert", pki.caFile, "https://localhost:\(proxy.port)/hints"],
                                  directory: pki.directory, separateStandardOutput: true)
        #expect(await run.waitForExit(seconds: 60) == 0, "\(run.output)")
        let text = String(decoding: run.standardOutput, as: UTF8.self).lowercased()
        let hints = text.range(of: "http/2 103"), final = text.range(of: "http/2 200")
        #expect(hints != nil && final != nil && hints!.lowerBound < final!.lowerBound, "\(text)")
        #expect(text.contains("link: </style.css>; rel=preload"), "\(text)")
        #expect(text.contains("\"path\": \"/hints\""), "\(text)")
    }

    @Test("backend down gives 502 and a backend that stalls gives 504 within --proxy-timeout, each with a log line")
    func failures() async throws {
        let backend = try await Backend()
        let client = try clientCertificate()
        let closedPort = try freeTCPPort()
        let down = try await startProxy(to: "http://127.0.0.1:\(closedPort)")
        let refused = try await runH3(trust + ["-sS", "--cert", client.cert, "--key", client.key, "-w", "%{http_code}",
                                               "https://localhost:\(down.port)/"])
        #expect(refused.text.hasSuffix("502"), "\(refused) \(refused.text)")
        #expect(down.log.contains("status=502") && down.log.contains("backend unreachable"), "\(down.log)")

        let slow = try await startProxy(to: "http://127.0.0.1:\(backend.port)", ["--proxy-timeout", "1"])
        let stalled = try await runH3(trust + ["-sS", "--cert", client.cert, "--key", client.key, "-w", "%{http_code}",
                                               "https://localhost:\(slow.port)/stall"], timeout: 30)
        #expect(stalled.text.hasSuffix("504"), "\(stalled) \(stalled.text)")
        #expect(stalled.text.contains("no response head within 1.0 seconds"))
        #expect(slow.log.contains("status=504"), "\(slow.log)")
    }

    @Test("100 MB up and down through the proxy, byte-exact, with the proxy's peak RSS bounded and logged")
    func bulk() async throws {
        let backend = try await Backend()
        let proxy = try await startProxy(to: "http://127.0.0.1:\(backend.port)")
        let client = try clientCertificate()
        let total = 100_000_000
        let scratch = try scratchDirectory()
        // Upload: a pattern file; the backend answers with its length and SHA-256.
        let upload = scratch.appendingPathComponent("up.bin")
        FileManager.default.createFile(atPath: upload.path, contents: nil)
        let handle = try FileHandle(forWritingTo: upload)
        var generator = PatternGenerator(seed: 0xb0d7)
        var sha = SHA256()
        var written = 0
        while written < total {
            let chunk = generator.next(min(1 << 20, total - written))
            sha.update(chunk)
            handle.write(Data(chunk.readableBytesView))
            written += chunk.readableBytes
        }
        try handle.close()
        let expectedUpload = sha.finalize().map { String(format: "%02x", $0) }.joined()
        let up = try await runH3(trust + ["-sS", "--cert", client.cert, "--key", client.key, "-T", upload.path,
                                          "https://localhost:\(proxy.port)/upload"], timeout: 300)
        #expect(up.status == 0, "\(up)")
        #expect(up.text.contains("\"length\": \(total)") && up.text.contains(expectedUpload), "upload: \(up.text)")

        // Download: the backend's pattern, checked against the same pattern made here.
        let output = scratch.appendingPathComponent("down.bin")
        let down = try await runH3(trust + ["-sS", "--cert", client.cert, "--key", client.key, "-o", output.path,
                                            "https://localhost:\(proxy.port)/bytes/\(total)"], timeout: 300)
        #expect(down.status == 0, "\(down)")
        let received = try #require(FileManager.default.contents(atPath: output.path))
        #expect(received.count == total)
        let block = Data((0..<65536).map { UInt8($0 & 0xff) })
        var exact = received.count == total
        var offset = 0
        while exact && offset < received.count {
            let length = min(block.count, received.count - offset)
            exact = received[offset..<offset + length].elementsEqual(block.prefix(length))
            offset += length
        }
        #expect(exact, "the download differs from the backend's pattern")

        let peak = peakRSS(pid: proxy.process.process.processIdentifier)
        print("h3 serve --proxy: 100 MB up and 100 MB down, proxy peak RSS \(peak.map { "\($0 / 1024) MiB" } ?? "unknown")")
        let rss = try #require(peak)
        #expect(rss < 200 * 1024, "the proxy held \(rss / 1024) MiB: bodies are buffered")
    }

    @Test("an HTTP/2 backend (h3 serve --tcp, TLS with ALPN h2): files come through byte-exact")
    func http2Backend() async throws {
        let files = ServedFiles.shared
        let origin = try await ServeProcess.start([files.root.path, "--tcp", "--cert", pki.certFile, "--key", pki.keyFile])
        let proxy = try await ServeProcess.start(["--cert", pki.certFile, "--key", pki.keyFile,
                                                  "--proxy", "https://localhost:\(origin.port)", "--proxy-http2",
                                                  "--proxy-cacert", pki.caFile])
        let run = try await runH3(trust + ["-sS", "https://localhost:\(proxy.port)/random.bin"], timeout: 120)
        #expect(run.status == 0, "\(run)")
        #expect(sameBytes(run.stdout, files.random))
        #expect(origin.log.contains("\"GET /random.bin HTTP/2\" 200"), "the origin saw HTTP/2: \(origin.log)")
    }

    /// VmHWM of a process, in KiB.
    func peakRSS(pid: Int32) -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        let line = status.split(separator: "\n").first { $0.hasPrefix("VmHWM:") }
        return line.flatMap { Int($0.split(separator: " ").dropFirst().first ?? "") }
    }
}
