import Foundation
import NetSim
import NIOCore
import QUIC
import QUICTestSupport
import Testing

/// End-to-end tests of the built `h3` binary: `h3 serve` and the client, as users run them.
@Suite("h3 command line, end to end")
struct H3EndToEndTests {
    let files = ServedFiles.shared

    @Test("--help prints the usage and exits 0, for the client and for serve")
    func help() async throws {
        for arguments in [["--help"], ["serve", "--help"], ["fetch", "--help"]] {
            let run = try await runH3(arguments, timeout: 30)
            #expect(run.status == 0, "h3 \(arguments.joined(separator: " ")): \(run)")
            #expect(run.text.contains("USAGE:"), "h3 \(arguments.joined(separator: " ")) printed: \(run.text.prefix(300))")
            #expect(!run.stderr.contains("CommandError"), "\(run)")
        }
    }

    @Test("downloads are byte-exact with -o and -O; two URLs share one connection")
    func downloads() async throws {
        let server = try await ServeProcess.files()
        let scratch = try scratchDirectory()
        let out = scratch.appendingPathComponent("out.bin").path
        let run = try await runH3(trust + ["-sS", "-o", out, "-o", "second.txt", "-w", "%{num_connects} ",
                                           "\(server.url)/random.bin", "\(server.url)/small.txt"], workingDirectory: scratch)
        #expect(run.status == 0, "\(run)")
        #expect(sameBytes(FileManager.default.contents(atPath: out), files.random))
        #expect(FileManager.default.contents(atPath: scratch.appendingPathComponent("second.txt").path) == Data("hello h3\n".utf8))
        #expect(run.text == "1 0 ", "the second URL reuses the connection")
        // -O names each file after its URL, as given (not decoded: %2F cannot leave the directory).
        let remote = try await runH3(trust + ["-sS", "-O", "\(server.url)/small.txt", "\(server.url)/sub/..%2F..%2Fsmall.txt"],
                                     workingDirectory: scratch)
        #expect(remote.status == 0, "\(remote)")
        #expect(FileManager.default.contents(atPath: scratch.appendingPathComponent("small.txt").path) == Data("hello h3\n".utf8))
        #expect(FileManager.default.fileExists(atPath: scratch.appendingPathComponent("..%2F..%2Fsmall.txt").path))
        #expect(!FileManager.default.fileExists(atPath: scratch.deletingLastPathComponent().appendingPathComponent("small.txt").path))
        let both = try await runH3(trust + ["-o", "x", "-O", "\(server.url)/a", "\(server.url)/b"])
        #expect(both.status == 2, "-o with -O is refused: \(both)")
    }

    @Test("uploads: -T and --data-binary @FILE stream byte-exact through h3 serve --echo; -d joins with &")
    func uploads() async throws {
        let pki = TestPKI.shared
        let server = try await ServeProcess.start(["--echo", "--cert", pki.certFile, "--key", pki.keyFile])
        let scratch = try scratchDirectory()
        let upload = ServedFiles.shared.root.appendingPathComponent("random.bin").path
        for mode in [["-T", upload], ["--data-binary", "@\(upload)"]] {
            let out = scratch.appendingPathComponent("echo-\(mode[0]).bin").path
            let run = try await runH3(trust + ["-sS", "-o", out, "-w", "%{http_code} %{size_upload} %{size_download}"]
                                      + mode + ["\(server.url)/upload"])
            #expect(run.status == 0, "\(run)")
            #expect(run.text == "200 \(files.random.count) \(files.random.count)")
            #expect(sameBytes(FileManager.default.contents(atPath: out), files.random), "\(mode[0])")
        }
        let form = try await runH3(trust + ["-sS", "-i", "-d", "a=1", "-d", "b=2", "\(server.url)/form"])
        #expect(form.status == 0, "\(form)")
        #expect(form.text.contains("content-type: application/x-www-form-urlencoded\r\n"))
        #expect(form.text.hasSuffix("\r\n\r\na=1&b=2"))
        // From standard input, length unknown.
        let stdinRun = try await runH3(trust + ["-sS", "-T", "-", "\(server.url)/stdin"], standardInput: upload)
        #expect(stdinRun.status == 0, "\(stdinRun)")
        #expect(sameBytes(stdinRun.stdout, files.random))
        #expect(server.log.contains("\"PUT /stdin HTTP/3\" 200 \(files.random.count)"), "access log: \(server.log)")
    }

    @Test("--limit-rate paces downloads and uploads (a lower bound on time: load only slows a transfer), byte-exact; bad rates exit 2")
    func limitRate() async throws {
        let pki = TestPKI.shared
        let files = ServedFiles.shared
        let server = try await ServeProcess.start([files.root.path, "--cert", pki.certFile, "--key", pki.keyFile])
        let scratch = try scratchDirectory()
        // 4 MiB at 2 MiB/s: the pacer lets the first chunk through at once, so at least ~1.9 s.
        let out = scratch.appendingPathComponent("paced.bin").path
        let down = try await runH3(trust + ["-sS", "--limit-rate", "2M", "-o", out, "-w", "%{time_total}",
                                            "\(server.url)/random.bin"], timeout: 60)
        #expect(down.status == 0, "\(down)")
        #expect(sameBytes(FileManager.default.contents(atPath: out), files.random))
        #expect((Double(down.text) ?? 0) >= 1.5, "4 MiB at 2 MiB/s took \(down.text) s")

        let echo = try await ServeProcess.start(["--echo", "--cert", pki.certFile, "--key", pki.keyFile])
        let upload = files.root.appendingPathComponent("random.bin").path
        let echoed = scratch.appendingPathComponent("paced-echo.bin").path
        let up = try await runH3(trust + ["-sS", "--limit-rate", "4096K", "-T", upload, "-o", echoed, "-w", "%{time_total}",
                                          "\(echo.url)/up"], timeout: 60)
        #expect(up.status == 0, "\(up)")
        #expect(sameBytes(FileManager.default.contents(atPath: echoed), files.random))
        #expect((Double(up.text) ?? 0) >= 0.7, "4 MiB up and back at 4 MiB/s took \(up.text) s")

        for bad in ["0", "-5", "fast", "1X", "", "nanM"] {
            let run = try await runH3(["--limit-rate", bad, "https://127.0.0.1:1/"])
            #expect(run.status == 2, "--limit-rate '\(bad)': \(run)")
        }
    }

    @Test("-w prints curl's variables; times are ordered")
    func writeOut() async throws {
        let server = try await ServeProcess.files()
        let run = try await runH3(trust + ["-sS", "-o", "/dev/null", "-w",
            "%{http_code}|%{http_version}|%{size_download}|%{num_connects}|%{remote_ip}|%{remote_port}|%{time_connect}|%{time_appconnect}|%{time_starttransfer}|%{time_total}|%{speed_download}|%{content_type}\\n",
            "\(server.url)/small.txt"])
        #expect(run.status == 0, "\(run)")
        let fields = run.text.trimmingCharacters(in: .newlines).split(separator: "|", omittingEmptySubsequences: false).map(String.init)
        try #require(fields.count == 12, "\(run.text)")
        #expect(Array(fields[0..<6]) == ["200", "3", "9", "1", "127.0.0.1", "\(server.port)"])
        let times = fields[6..<10].compactMap(Double.init)
        #expect(times.count == 4 && times[0] > 0 && times == times.sorted(), "\(times)")
        #expect((Double(fields[10]) ?? 0) > 0)
        #expect(fields[11] == "text/plain; charset=utf-8")
    }

    @Test("-i and -I print the response head; -v prints TLS, QUIC and header lines on stderr")
    func headers() async throws {
        let server = try await ServeProcess.files()
        let include = try await runH3(trust + ["-sS", "-i", "\(server.url)/small.txt"])
        #expect(include.status == 0, "\(include)")
        #expect(include.text.hasPrefix("HTTP/3 200\r\n"))
        #expect(include.text.contains("content-length: 9\r\n"))
        #expect(include.text.hasSuffix("\r\n\r\nhello h3\n"))
        let head = try await runH3(trust + ["-sS", "-I", "\(server.url)/small.txt"])
        #expect(head.status == 0, "\(head)")
        #expect(head.text.hasPrefix("HTTP/3 200\r\n") && head.text.hasSuffix("\r\n\r\n"))
        #expect(head.text.contains("etag: \"") && head.text.contains("last-modified: ") && head.text.contains("accept-ranges: bytes"))
        #expect(!head.text.contains("hello"))
        #expect(server.log.contains("\"HEAD /small.txt HTTP/3\" 200 0"))
        let verbose = try await runH3(trust + ["-v", "-s", "\(server.url)/small.txt"])
        #expect(verbose.status == 0, "\(verbose)")
        for line in ["* Connected to 127.0.0.1:\(server.port) (127.0.0.1:\(server.port)) over QUIC v1", "(TLS1.3)", "ALPN: h3",
                     "*  subject: CN=localhost", "*  issuer: CN=swift-h3 test CA", "> GET /small.txt HTTP/3",
                     "> user-agent: h3/", "< HTTP/3 200", "< content-length: 9"] {
            #expect(verbose.stderr.contains(line), "missing \(line) in \(verbose.stderr)")
        }
        #expect(verbose.text == "hello h3\n")
    }

    @Test("redirects: 301 shown without -L, followed with -L, limited by --max-redirs")
    func redirects() async throws {
        let server = try await ServeProcess.files()
        let plain = try await runH3(trust + ["-sS", "-i", "\(server.url)/site"])
        #expect(plain.status == 0, "\(plain)")
        #expect(plain.text.hasPrefix("HTTP/3 301\r\n") && plain.text.contains("location: /site/\r\n"))
        let followed = try await runH3(trust + ["-sS", "-L", "-w", "|%{http_code} %{num_redirects} %{url_effective}",
                                                "\(server.url)/site"])
        #expect(followed.status == 0, "\(followed)")
        #expect(followed.text == "<p>site</p>\n|200 1 \(server.url)/site/")
        // A target starting with "//" must not redirect to another host.
        let doubleSlash = try await runH3(trust + ["-sS", "-I", "\(server.url)//site"])
        #expect(doubleSlash.text.contains("location: /site/\r\n"), "\(doubleSlash.text)")
        let limited = try await runH3(trust + ["-sS", "-L", "--max-redirs", "0", "\(server.url)/site"])
        #expect(limited.status == 47, "\(limited)")
        #expect(limited.stderr.contains("redirects"))
    }

    @Test("byte ranges (206, suffix, 416) and 304 for If-None-Match / If-Modified-Since")
    func rangesAndConditionals() async throws {
        let server = try await ServeProcess.files()
        let url = "\(server.url)/random.bin"
        let middle = try await runH3(trust + ["-sS", "-H", "Range: bytes=1000-1999", "-w", "%{http_code}", "-o", "-", url])
        #expect(middle.status == 0, "\(middle)")
        #expect(sameBytes(middle.stdout, files.random.subdata(in: 1000..<2000) + Data("206".utf8)))
        let suffix = try await runH3(trust + ["-sS", "-H", "Range: bytes=-10", url])
        #expect(suffix.status == 0, "\(suffix)")
        #expect(sameBytes(suffix.stdout, Data(files.random.suffix(10))))
        let beyond = try await runH3(trust + ["-sS", "-i", "-H", "Range: bytes=99999999-", url])
        #expect(beyond.status == 0, "\(beyond)")
        #expect(beyond.text.hasPrefix("HTTP/3 416\r\n") && beyond.text.contains("content-range: bytes */\(files.random.count)\r\n"))
        let huge = try await runH3(trust + ["-sS", "-i", "-H", "Range: bytes=4194300-99999999999999999999", url])
        #expect(huge.text.hasPrefix("HTTP/3 206\r\n") && huge.text.contains("content-range: bytes 4194300-4194303/4194304\r\n"))

        let head = try await runH3(trust + ["-sS", "-I", url])
        let lines = head.text.components(separatedBy: "\r\n")
        let etag = try #require(lines.first { $0.hasPrefix("etag: ") }).dropFirst(6)
        let modified = try #require(lines.first { $0.hasPrefix("last-modified: ") }).dropFirst(15)
        let notModified = try await runH3(trust + ["-sS", "-H", "If-None-Match: \"other\", \(etag)", "-w", "%{http_code} %{size_download}", url])
        #expect(notModified.status == 0 && notModified.text == "304 0", "\(notModified)")
        let since = try await runH3(trust + ["-sS", "-H", "If-Modified-Since: \(modified)", "-w", "%{http_code} %{size_download}", url])
        #expect(since.status == 0 && since.text == "304 0", "\(since)")
        let changed = try await runH3(trust + ["-sS", "-H", "If-None-Match: \"other\"", "-w", "%{http_code}", "-o", "/dev/null", url])
        #expect(changed.status == 0 && changed.text == "200", "\(changed)")
    }

    @Test("no request reads outside the served directory")
    func traversal() async throws {
        let server = try await ServeProcess.files()
        for path in ["/../secret.txt", "/%2e%2e/secret.txt", "/sub/%2E%2E/%2E%2E/secret.txt", "/sub/..%2F..%2Fsecret.txt",
                     "/escape", "/escape-dir/secret.txt", "/%2e%2e%2f%2e%2e%2fetc/passwd"] {
            let run = try await runH3(trust + ["-s", "-w", "|%{http_code}", server.url + path])
            #expect(run.status == 0, "\(path): \(run)")
            let code = run.text.split(separator: "|").last.map(String.init) ?? ""
            #expect(code == "403" || code == "404", "\(path) -> \(code)")
            #expect(!run.text.contains(files.secret) && !run.text.contains("root:"), "\(path) leaked")
        }
        let alias = try await runH3(trust + ["-sS", "\(server.url)/alias.txt"])
        #expect(alias.text == "hello h3\n", "a link inside the directory is served")
        let listing = try await runH3(trust + ["-sS", "\(server.url)/sub/"])
        #expect(listing.text.contains("<a href=\"inner.txt\">inner.txt</a>"))
    }

    @Test("exit codes: 2, 3, 6, 7, 22, 23, 26, 28, 35, 60, each from a real situation")
    func exitCodes() async throws {
        let server = try await ServeProcess.files()
        func expectExit(_ arguments: [String], _ code: Int32, _ fragment: String,
                        sourceLocation: SourceLocation = #_sourceLocation) async throws {
            let run = try await runH3(arguments, timeout: 30)
            #expect(run.status == code, "\(arguments): \(run)", sourceLocation: sourceLocation)
            let lines = run.stderr.split(separator: "\n")
            #expect(lines.count == 1, "one line on stderr: \(run.stderr)", sourceLocation: sourceLocation)
            #expect(run.stderr.lowercased().contains(fragment.lowercased()), "\(run.stderr)", sourceLocation: sourceLocation)
        }
        try await expectExit(["--no-such-option", server.url], 2, "h3:")
        try await expectExit([], 2, "no URL")
        try await expectExit(["https://[::1/"], 3, "malformed")
        try await expectExit(["http://127.0.0.1/"], 1, "not supported")
        // Malformed whatever the scheme: curl's 3, not "unsupported protocol" or a host lookup.
        try await expectExit(["http://[::1"], 3, "URL rejected")
        try await expectExit(["ht!tp:/bad url"], 3, "URL rejected")
        try await expectExit(trust + ["https://no-such-host.invalid/"], 6, "could not resolve host")
        let closed = try freeUDPPort()
        try await expectExit(trust + ["--connect-timeout", "20", "https://127.0.0.1:\(closed)/"], 7, "failed to connect")
        try await expectExit(trust + ["-f", "\(server.url)/missing"], 22, "error: 404")
        try await expectExit(trust + ["-o", "/nonexistent-dir/out", "\(server.url)/small.txt"], 23, "/nonexistent-dir/out")
        try await expectExit(trust + ["-T", "/nonexistent-dir/in", "\(server.url)/up"], 26, "/nonexistent-dir/in")
        // -d @, --data-binary @ and -T report a missing file in one form.
        var missingLines: [ToolRun] = []
        for arguments in [["-T", "/nonexistent-dir/in"], ["-d", "@/nonexistent-dir/in"],
                          ["--data-binary", "@/nonexistent-dir/in"], ["-d", "x", "--data-binary", "@/nonexistent-dir/in"]] {
            missingLines.append(try await runH3(trust + arguments + ["\(server.url)/up"], timeout: 30))
        }
        #expect(missingLines.allSatisfy { $0.status == 26 }, "\(missingLines)")
        #expect(Set(missingLines.map(\.stderr)) == ["h3: (26) cannot open '/nonexistent-dir/in' for reading: No such file or directory\n"],
                "\(missingLines.map(\.stderr))")
        try await expectExit(["\(server.url)/small.txt"], 60, "certificate")

        // A UDP port that swallows everything: the handshake never finishes.
        let silent = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(silent) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(silent, $0, length) == 0 && getsockname(silent, $0, &length) == 0 }
        }
        try #require(bound)
        let silentPort = Int(UInt16(bigEndian: address.sin_port))
        try await expectExit(trust + ["-m", "1", "https://127.0.0.1:\(silentPort)/"], 28, "timed out")
        try await expectExit(trust + ["--connect-timeout", "1", "https://127.0.0.1:\(silentPort)/"], 28, "timed out")
        try await expectExit(trust + ["-m", "inf", server.url], 2, "max-time")

        // A QUIC server that does not speak h3: the TLS handshake fails (no_application_protocol).
        let listener = try await QUICListener.bind(host: "127.0.0.1", port: 0, configuration: serverConfiguration(alpn: ["hq-interop"]))
        let port = listener.localAddress.port ?? 0
        try await expectExit(trust + ["https://127.0.0.1:\(port)/"], 35, "TLS handshake failed")
        await listener.close()
    }

    @Test("--qlog-dir writes one qlog per connection on each side; SSLKEYLOGFILE gets the TLS secrets")
    func qlogAndKeylog() async throws {
        let qlogs = try scratchDirectory()
        let pki = TestPKI.shared
        let server = try await ServeProcess.start([ServedFiles.shared.root.path, "--cert", pki.certFile, "--key", pki.keyFile,
                                                   "--qlog-dir", qlogs.path])
        let keylog = qlogs.appendingPathComponent("keys.log").path
        let run = try await runH3(trust + ["-sS", "--qlog-dir", qlogs.path, "\(server.url)/small.txt"],
                                  environment: ["SSLKEYLOGFILE": keylog])
        #expect(run.text == "hello h3\n", "\(run)")
        server.process.stop()
        let names = try FileManager.default.contentsOfDirectory(atPath: qlogs.path).filter { $0.hasSuffix(".sqlog") }.sorted()
        try #require(names.count == 2, "\(names)")
        // Both sides name the file after the same original destination connection ID.
        #expect(names[0].hasSuffix("_client.sqlog") && names[1].hasSuffix("_server.sqlog"))
        #expect(names[0].dropLast("_client.sqlog".count) == names[1].dropLast("_server.sqlog".count))
        for name in names {
            let text = try String(contentsOfFile: qlogs.appendingPathComponent(name).path, encoding: .utf8)
            #expect(text.contains("\"qlog_format\":\"JSON-SEQ\"") && text.contains("transport:packet_sent")
                    && text.contains("transport:packet_received"), "\(name)")
        }
        let secrets = try String(contentsOfFile: keylog, encoding: .utf8).split(separator: "\n")
        let labels = Set(secrets.compactMap { $0.split(separator: " ").first.map(String.init) })
        #expect(labels.isSuperset(of: ["CLIENT_HANDSHAKE_TRAFFIC_SECRET", "SERVER_HANDSHAKE_TRAFFIC_SECRET",
                                       "CLIENT_TRAFFIC_SECRET_0", "SERVER_TRAFFIC_SECRET_0"]), "\(labels)")
        #expect(secrets.allSatisfy { $0.split(separator: " ").count == 3 && $0.split(separator: " ")[1].count == 64 })
    }

    @Test("a progress meter on a terminal (size, percent, speed, ETA); none with -s or into a pipe")
    func progressMeter() async throws {
        guard let script = findExecutable("script") else {
            Issue.record("util-linux's script(1) is needed to give h3 a terminal")
            return
        }
        let server = try await ServeProcess.files()
        let scratch = try scratchDirectory()
        func onTerminal(_ arguments: [String]) async throws -> ToolRun {
            let command = ([h3Binary] + trust + arguments).map { "'\($0)'" }.joined(separator: " ")
            let process = try PeerProcess(script, ["-q", "-e", "-c", command, "/dev/null"], directory: scratch,
                                          separateStandardOutput: true)
            let status = await process.waitForExit(seconds: 60)
            return ToolRun(status: status, stdout: process.standardOutput, stderr: process.output)
        }
        let shown = try await onTerminal(["-o", scratch.appendingPathComponent("a").path, "\(server.url)/random.bin"])
        #expect(shown.status == 0, "\(shown)")
        #expect(shown.text.contains("100.0%  4.0 MB of 4.0 MB") && shown.text.contains("ETA 0:00:00"), "\(shown.text)")
        let silent = try await onTerminal(["-s", "-o", scratch.appendingPathComponent("b").path, "\(server.url)/random.bin"])
        #expect(silent.status == 0 && !silent.text.contains("%"), "\(silent.text)")
        let piped = try await runH3(trust + ["-o", scratch.appendingPathComponent("c").path, "\(server.url)/random.bin"])
        #expect(piped.status == 0 && !piped.stderr.contains("%"), "stderr is not a terminal: \(piped.stderr)")
    }

    @Test("-m ending a transfer mid-body exits 28 and keeps what was saved")
    func maxTimeMidBody() async throws {
        let big = try scratchDirectory()
        // Sparse: 8 GiB that cost nothing on disk, far more than a debug build moves in a second.
        let handle = try #require(FileHandle(forWritingAtPath: { () -> String in
            let path = big.appendingPathComponent("huge.bin").path
            _ = FileManager.default.createFile(atPath: path, contents: nil)
            return path
        }()))
        try handle.truncate(atOffset: 8 << 30)
        try handle.close()
        let pki = TestPKI.shared
        let server = try await ServeProcess.start([big.path, "--cert", pki.certFile, "--key", pki.keyFile])
        let out = big.appendingPathComponent("partial").path
        let run = try await runH3(trust + ["-sS", "-m", "1.5", "-o", out, "\(server.url)/huge.bin"])
        #expect(run.status == 28, "\(run)")
        let reported = run.stderr.range(of: #"with [0-9]+ bytes"#, options: .regularExpression)
            .flatMap { Int(run.stderr[$0].dropFirst(5).dropLast(6)) }
        let saved = (try? FileManager.default.attributesOfItem(atPath: out)[.size] as? Int) ?? -1
        let received = try #require(reported, "\(run.stderr)")
        #expect(received > 0 && saved >= received, "saved \(saved) of \(received) received bytes")
    }

    @Test("--session-file: the second run resumes the TLS session (our server and gtlsserver)")
    func sessionFile() async throws {
        let server = try await ServeProcess.files()
        var targets = [server.url]
        var gtls: PeerProcess?
        if let gtlsserver = peerProgram("gtlsserver") {
            let port = try freeUDPPort()
            gtls = try PeerProcess(gtlsserver, ["-q", "--htdocs=\(files.root.path)", "127.0.0.1", "\(port)",
                                               TestPKI.shared.keyFile, TestPKI.shared.certFile], directory: TestPKI.shared.directory)
            targets.append("https://127.0.0.1:\(port)")
        }
        defer { gtls?.stop() }
        for target in targets {
            let file = try scratchDirectory().appendingPathComponent("sessions").path
            var first = try await runH3(trust + ["-sS", "-v", "--session-file", file, "\(target)/small.txt"])
            for _ in 0..<200 where first.status == 7 {  // gtlsserver may still be starting (up to 20 s)
                try await Task.sleep(for: .milliseconds(100))
                first = try await runH3(trust + ["-sS", "-v", "--session-file", file, "\(target)/small.txt"])
            }
            #expect(first.status == 0 && first.text == "hello h3\n", "\(target): \(first)")
            #expect(!first.stderr.contains("session resumed"))
            #expect(FileManager.default.fileExists(atPath: file), "\(target): tickets saved")
            let second = try await runH3(trust + ["-sS", "-v", "--session-file", file, "\(target)/small.txt"])
            #expect(second.status == 0 && second.text == "hello h3\n", "\(target): \(second)")
            #expect(second.stderr.contains("ALPN: h3, session resumed"), "\(target): \(second.stderr)")
        }
    }

    @Test("--cert/--key against h3 serve --client-ca: refused without a certificate, served with one, over HTTP/3 and HTTP/2")
    func clientCertificate() async throws {
        let pki = TestPKI.shared
        let server = try await ServeProcess.start([files.root.path, "--cert", pki.certFile, "--key", pki.keyFile,
                                                   "--client-ca", pki.caFile, "--tcp"])
        let client = try CertificateGenerator.makeLeaf(.init(commonName: "h3 test client"), issuer: pki.ca)
        let directory = try scratchDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let certFile = directory.appendingPathComponent("client-cert.pem").path
        let keyFile = directory.appendingPathComponent("client-key.pem").path
        try client.certificatePEM.write(toFile: certFile, atomically: true, encoding: .utf8)
        try client.privateKeyPEM.write(toFile: keyFile, atomically: true, encoding: .utf8)
        for mode in ["--http3-only", "--http2"] {
            let refused = try await runH3(trust + ["-sS", mode, "\(server.url)/small.txt"])
            #expect(refused.status != 0 && refused.text.isEmpty, "\(mode) without a certificate: \(refused)")
            let served = try await runH3(trust + ["-sS", mode, "--cert", certFile, "--key", keyFile, "\(server.url)/small.txt"])
            #expect(served.status == 0 && served.text == "hello h3\n", "\(mode) with a certificate: \(served)")
        }
        let missing = try await runH3(["serve", files.root.path, "--client-ca", directory.appendingPathComponent("nope.pem").path])
        #expect(missing.status == 26 && missing.stderr.contains("client CA"), "\(missing)")
    }

    @Test("-Z runs transfers concurrently on one connection and prints bodies in URL order")
    func parallel() async throws {
        let server = try await ServeProcess.files()
        let run = try await runH3(trust + ["-sS", "-Z", "-w", "[%{num_connects}]", "\(server.url)/random.bin",
                                           "\(server.url)/small.txt", "\(server.url)/sub/inner.txt"])
        #expect(run.status == 0, "\(run)")
        // Bodies come out in URL order. Which transfer opened the shared connection depends on
        // scheduling, so the three num_connects values are only known to add up to one.
        let bodySize = files.random.count
        #expect(sameBytes(run.stdout.prefix(bodySize), files.random))
        let tail = String(decoding: run.stdout.dropFirst(bodySize), as: UTF8.self)
        let pattern = /\[([01])\]hello h3\n\[([01])\]inner\n\[([01])\]/
        if let match = tail.wholeMatch(of: pattern) {
            let connects = [match.1, match.2, match.3].compactMap { Int($0) }
            #expect(connects.reduce(0, +) == 1, "one connection for three URLs: \(tail.debugDescription)")
        } else {
            Issue.record("unexpected output after the first body: \(tail.debugDescription)")
        }
    }

    @Test("h3 serve makes a local certificate once, prints its fingerprint, and reuses it")
    func selfSignedCertificate() async throws {
        let cache = try scratchDirectory()
        let first = try await ServeProcess.start([ServedFiles.shared.root.path, "--cert-cache", cache.path])
        let certificate = cache.appendingPathComponent("localhost-cert.pem").path
        let pem = try String(contentsOfFile: certificate, encoding: .utf8)
        let fingerprint = try CertificateGenerator.inspect(certificatePEM: pem).sha256Fingerprint
        #expect(first.log.contains("generated a local certificate \(certificate)"))
        #expect(first.log.contains("SHA-256 \(fingerprint)"))
        let keyMode = try FileManager.default.attributesOfItem(atPath: cache.appendingPathComponent("localhost-key.pem").path)[.posixPermissions] as? Int
        #expect(keyMode == 0o600)
        // The generated chain file verifies as a trust anchor (localhost and 127.0.0.1 are in it).
        let fetched = try await runH3(["-sS", "--cacert", certificate, "\(first.url)/small.txt"])
        #expect(fetched.text == "hello h3\n", "\(fetched)")
        first.process.stop()
        let second = try await ServeProcess.start([ServedFiles.shared.root.path, "--cert-cache", cache.path])
        #expect(second.log.contains("using the local certificate \(certificate)"))
        #expect(second.log.contains("SHA-256 \(fingerprint)"))
    }

    @Test("SIGTERM stops h3 serve (a ServiceGroup of the server and its metrics port) gracefully: the download in flight completes")
    func gracefulShutdown() async throws {
        // A 24 MB transfer that must finish within h3 serve's shutdown grace: one heavy test at
        // a time, or a loaded machine stretches it.
        try await HeavyTestGate.shared.run { try await Self.gracefulShutdownBody() }
    }

    static func gracefulShutdownBody() async throws {
        let big = try scratchDirectory()
        var generator = PatternGenerator(seed: 77)
        var data = Data()
        for _ in 0..<96 { data.append(contentsOf: generator.next(256 << 10).readableBytesView) }  // 24 MiB
        try data.write(to: big.appendingPathComponent("big.bin"))
        let pki = TestPKI.shared
        // With --metrics the service group holds a second service (the metrics port) beside the server.
        let server = try await ServeProcess.start([big.path, "--cert", pki.certFile, "--key", pki.keyFile,
                                                   "--shutdown-timeout", "60", "--metrics", "0"])
        // A relay limited to 8 MB/s towards the client keeps the download in flight for about
        // 3 s (on loopback it would end before the signal arrives).
        var relayConfiguration = NetworkSimulator.Configuration(listen: try NetworkAddress(host: "127.0.0.1", port: 0),
                                                                server: try NetworkAddress(host: "127.0.0.1", port: UInt16(server.port)))
        relayConfiguration.toClient.rateBytesPerSecond = 8_000_000
        let relay = try NetworkSimulator.start(relayConfiguration)
        defer { relay.stop() }
        let out = big.appendingPathComponent("download").path
        let client = try PeerProcess(h3Binary, trust + ["-sS", "-o", out, "https://127.0.0.1:\(relay.listenAddress.port)/big.bin"],
                                     directory: pki.directory)
        // Wait until bytes flow, then ask the server to stop.
        for _ in 0..<400 {
            let size = (try? FileManager.default.attributesOfItem(atPath: out)[.size] as? Int) ?? 0
            if size > 0 { break }
            try await Task.sleep(for: .milliseconds(10))
        }
        kill(server.process.process.processIdentifier, SIGTERM)
        let clientStatus = await client.waitForExit(seconds: 60)
        let serverStatus = await server.process.waitForExit(seconds: 30)
        #expect(clientStatus == 0, "client: \(client.output)")
        #expect(sameBytes(FileManager.default.contents(atPath: out), data))
        #expect(serverStatus == 0, "server: \(server.log)")
        #expect(server.log.contains("h3 serve: shutting down gracefully") && server.log.contains("h3 serve: stopped"))
        // The access-log line is written when a response ends: after the signal means in flight.
        let signalAt = server.log.range(of: "h3 serve: shutting down gracefully")?.lowerBound
        let loggedAt = server.log.range(of: "\"GET /big.bin HTTP/3\" 200")?.lowerBound
        #expect(signalAt != nil && loggedAt != nil && signalAt! < loggedAt!, "the download was in flight: \(server.log)")
    }
}

@Suite("h3 against ngtcp2's example peers")
struct H3PeerInteropTests {
    @Test("h3 downloads from gtlsserver byte-exact")
    func h3ToGtlsserver() async throws {
        guard let gtlsserver = peerProgram("gtlsserver") else { return }
        let pki = TestPKI.shared
        let files = ServedFiles.shared
        let port = try freeUDPPort()
        let server = try PeerProcess(gtlsserver, ["-q", "--htdocs=\(files.root.path)", "127.0.0.1", "\(port)", pki.keyFile, pki.certFile],
                                     directory: pki.directory)
        defer { server.stop() }
        var run = ToolRun(status: nil, stdout: Data(), stderr: "")
        for _ in 0..<200 {  // gtlsserver may still be starting (up to 20 s)
            run = try await runH3(trust + ["-sS", "-w", "|%{http_code}", "https://127.0.0.1:\(port)/random.bin"])
            if run.status != 7 { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(run.status == 0, "\(run)")
        #expect(sameBytes(run.stdout, files.random + Data("|200".utf8)))
    }

    @Test("gtlsclient downloads from h3 serve byte-exact")
    func gtlsclientToServe() async throws {
        guard let gtlsclient = peerProgram("gtlsclient") else { return }
        let server = try await ServeProcess.files()
        let downloads = try scratchDirectory()
        let client = try PeerProcess(gtlsclient, ["-q", "--exit-on-all-streams-close", "--download=\(downloads.path)",
                                                  "127.0.0.1", "\(server.port)", "https://localhost:\(server.port)/random.bin"],
                                     directory: TestPKI.shared.directory)
        let status = await client.waitForExit(seconds: 30)
        #expect(status == 0, "gtlsclient: \(client.output.suffix(1000))")
        #expect(sameBytes(FileManager.default.contents(atPath: downloads.appendingPathComponent("random.bin").path), ServedFiles.shared.random))
        #expect(server.log.contains("\"GET /random.bin HTTP/3\" 200 \(ServedFiles.shared.random.count)"))
    }
}
