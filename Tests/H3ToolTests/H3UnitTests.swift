import Foundation
import HTTPTypes
import Testing
@testable import H3Tool

@Suite("h3 parsers and formatters")
struct H3UnitTests {
    @Test("--limit-rate values: curl's K, M and G suffixes in powers of 1024, any case; nonsense refused")
    func transferRates() {
        #expect(TransferRate("1000")?.bytesPerSecond == 1000)
        #expect(TransferRate("200k")?.bytesPerSecond == 204_800)
        #expect(TransferRate("3M")?.bytesPerSecond == 3 << 20)
        #expect(TransferRate("1.5g")?.bytesPerSecond == 3 << 29)
        for bad in ["", "0", "-1", "k", "1x", "1e3", "inf", "nan", "0.1", "99999999999999999999G"] {
            #expect(TransferRate(bad) == nil, "\(bad)")
        }
        #expect(TransferRate("1")?.uploadChunkSize == 1024)
        #expect(TransferRate("1G")?.uploadChunkSize == 256 << 10)
    }

    @Test("byte ranges: single ranges, suffixes, open ends, unsatisfiable and ignored forms")
    func ranges() {
        #expect(FileServer.parseRange("bytes=0-9", size: 100) == .range(0, 9))
        #expect(FileServer.parseRange("bytes=90-", size: 100) == .range(90, 99))
        #expect(FileServer.parseRange("bytes=90-1000", size: 100) == .range(90, 99))
        #expect(FileServer.parseRange("bytes=-10", size: 100) == .range(90, 99))
        #expect(FileServer.parseRange("bytes=-1000", size: 100) == .range(0, 99))
        #expect(FileServer.parseRange("bytes=100-", size: 100) == .unsatisfiable)
        #expect(FileServer.parseRange("bytes=-0", size: 100) == .unsatisfiable)
        #expect(FileServer.parseRange("bytes=0-0", size: 0) == .unsatisfiable)
        #expect(FileServer.parseRange("bytes=5-2", size: 100) == .ignore)
        #expect(FileServer.parseRange("bytes=0-1,5-6", size: 100) == .ignore)
        #expect(FileServer.parseRange("items=0-1", size: 100) == .ignore)
        #expect(FileServer.parseRange("bytes=a-b", size: 100) == .ignore)
        #expect(FileServer.parseRange("bytes=99999999999999999999-", size: 100) == .ignore)
        #expect(FileServer.parseRange("bytes=5-99999999999999999999", size: 100) == .range(5, 99))
    }

    @Test("ETag lists use weak comparison; If-Range needs a strong match or the exact date")
    func validators() {
        let tag = "\"abc-1\""
        #expect(FileServer.etagListMatches("\"x\", \"abc-1\"", tag))
        #expect(FileServer.etagListMatches("W/\"abc-1\"", tag))
        #expect(FileServer.etagListMatches("*", tag))
        #expect(!FileServer.etagListMatches("\"abc-2\"", tag))
        #expect(FileServer.ifRangeAllows(nil, etag: tag, mtime: 0))
        #expect(FileServer.ifRangeAllows(tag, etag: tag, mtime: 0))
        #expect(!FileServer.ifRangeAllows("W/\"abc-1\"", etag: tag, mtime: 0))
        #expect(FileServer.ifRangeAllows(HTTPDate.format(seconds: 784111777), etag: tag, mtime: 784111777))
        #expect(!FileServer.ifRangeAllows(HTTPDate.format(seconds: 784111777), etag: tag, mtime: 784111778))
    }

    @Test("HTTP dates: IMF-fixdate both ways; other forms are not dates")
    func dates() {
        #expect(HTTPDate.format(seconds: 784111777) == "Sun, 06 Nov 1994 08:49:37 GMT")
        #expect(HTTPDate.parse("Sun, 06 Nov 1994 08:49:37 GMT") == 784111777)
        #expect(HTTPDate.parse("Sunday, 06-Nov-94 08:49:37 GMT") == nil)
        #expect(HTTPDate.parse("Sun, 06 Nov 1994 25:49:37 GMT") == nil)
        #expect(HTTPDate.parse("") == nil)
    }

    @Test("request paths never leave the served directory")
    func pathResolution() throws {
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("h3-unit-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: base) }
        let root = base.appendingPathComponent("root")
        try FileManager.default.createDirectory(at: root.appendingPathComponent("dir"), withIntermediateDirectories: true)
        try Data("secret".utf8).write(to: base.appendingPathComponent("secret.txt"))
        try Data("ok".utf8).write(to: root.appendingPathComponent("a b.txt"))
        try FileManager.default.createSymbolicLink(atPath: root.appendingPathComponent("out").path,
                                                   withDestinationPath: base.appendingPathComponent("secret.txt").path)
        try FileManager.default.createSymbolicLink(atPath: root.appendingPathComponent("in").path,
                                                   withDestinationPath: "a b.txt")
        let rootPath = try #require(realpath(root.path, nil).map { pointer in
            defer { free(pointer) }
            return String(cString: pointer)
        })
        #expect(FileServer.resolve("/a%20b.txt", root: rootPath) == .file(rootPath + "/a b.txt"))
        #expect(FileServer.resolve("/in?x=1", root: rootPath) == .file(rootPath + "/a b.txt"))
        #expect(FileServer.resolve("/./dir/", root: rootPath) == .directory(rootPath + "/dir"))
        #expect(FileServer.resolve("/dir", root: rootPath) == .redirectToDirectory("/dir/"))
        #expect(FileServer.resolve("//dir?x=1", root: rootPath) == .redirectToDirectory("/dir/?x=1"))
        #expect(FileServer.resolve("/", root: rootPath) == .directory(rootPath))
        #expect(FileServer.resolve("/../secret.txt", root: rootPath) == .forbidden)
        #expect(FileServer.resolve("/%2e%2e/secret.txt", root: rootPath) == .forbidden)
        #expect(FileServer.resolve("/dir/%2E%2E%2F%2E%2E%2Fsecret.txt", root: rootPath) == .forbidden)
        #expect(FileServer.resolve("/out", root: rootPath) == .forbidden)
        #expect(FileServer.resolve("/missing", root: rootPath) == .notFound)
        #expect(FileServer.resolve("/a%00b", root: rootPath) == .badRequest)
        #expect(FileServer.resolve("relative", root: rootPath) == .badRequest)
        #expect(FileServer.resolve("/a%zzb", root: rootPath) == .badRequest)
    }

    @Test("--write-out templates: variables, escapes, %% and unknown names")
    func writeOut() {
        var report = TransferReport()
        report.httpCode = 200
        report.httpVersion = "3"
        report.sizeDownload = 1000
        report.timeTotal = 0.5
        report.remoteIP = "127.0.0.1"
        var warnings: [String] = []
        let text = WriteOut.render("%{http_code} %{http_version} %{size_download} %{speed_download} %{time_total}\\n%%%{nope}|",
                                   report) { warnings.append($0) }
        #expect(text == "200 3 1000 2000 0.500000\n%|")
        #expect(warnings == ["unknown --write-out variable: 'nope'"])
        #expect(WriteOut.render("%{remote_ip}\\t%{http_code}", TransferReport()) == "\t000")
        #expect(WriteOut.splitEndpoint("[::1]:443") == ("::1", 443))
        #expect(WriteOut.splitEndpoint("127.0.0.1:8443") == ("127.0.0.1", 8443))
    }

    @Test("URLs: default scheme, ports, IPv6 literals, rejected forms with curl's exit codes")
    func urls() throws {
        let plain = try TargetURL(parsing: "localhost:4433/a/b.txt?q=1")
        #expect(plain.host == "localhost" && plain.port == 4433 && plain.pathAndQuery == "/a/b.txt?q=1")
        #expect(plain.remoteFileName == "b.txt")
        let v6 = try TargetURL(parsing: "https://[::1]:8443")
        #expect(v6.host == "::1" && v6.authority == "[::1]:8443" && v6.pathAndQuery == "/")
        #expect(try TargetURL(parsing: "https://example.com/x/").remoteFileName == "")
        #expect(try TargetURL(parsing: "https://example.com").port == 443)
        #expect(try plain.resolving(location: "../c?d").description == "https://localhost:4433/c?d")
        #expect(try plain.resolving(location: "https://other:1/z").authority == "other:1")
        for (text, code) in [("http://example.com/", 1), ("ftp://x/", 1), ("https://", 3), ("https://[::1/", 3),
                             ("https://host:99999/", 3), ("https://user:pw@host/", 3),
                             // Malformed URLs are 3 whatever the scheme (curl checks the form first).
                             ("http://[::1", 3), ("ht!tp:/bad url", 3), ("ht!tp:/bad", 3), ("https://a b/", 3),
                             ("https://bad host/", 3), ("1http://x/", 3), ("https://[zz::1]/", 3)] {
            #expect(throws: ToolError.self, "\(text)") { try TargetURL(parsing: text) }
            do {
                _ = try TargetURL(parsing: text)
            } catch {
                #expect(error.code == Int32(code), "\(text): \(error.message)")
            }
        }
    }

    @Test("--resolve entries and the progress meter's text")
    func resolveAndProgress() {
        let named = Fetch.parseResolve("Example.com:443:127.0.0.2")
        #expect(named?.key == "example.com:443" && named?.address == "127.0.0.2")
        let v6 = Fetch.parseResolve("h:443:[::1]")
        #expect(v6?.key == "h:443" && v6?.address == "::1")
        #expect(Fetch.parseResolve("h:0:1.2.3.4") == nil)
        #expect(Fetch.parseResolve("h:443") == nil)
        #expect(ProgressMeter.line(received: 512 << 10, total: 1 << 20, elapsed: 1) == " 50.0%  512.0 kB of 1.0 MB  512.0 kB/s  ETA 0:00:01")
        #expect(ProgressMeter.line(received: 100, total: nil, elapsed: 61) == "100 B  1 B/s  0:01:01")
    }
}
