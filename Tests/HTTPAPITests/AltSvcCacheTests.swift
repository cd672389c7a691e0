import Foundation
import HTTPAPI
import Testing

@Suite("Alt-Svc cache, its file, and broken alternatives")
struct AltSvcCacheTests {
    let origin = AltSvcOrigin(host: "Example.COM", port: 443)

    func field(_ value: String) throws -> AltSvcField { try AltSvcField.parse(value) }

    @Test("entries expire after ma; the empty host means the origin's host; h2 alternatives are not kept")
    func expiry() throws {
        var cache = AltSvcCache()
        cache.update(origin: origin, with: try field(#"h3=":8443"; ma=100, h2="other:443", h3="alt.example:443""#), now: 1000)
        let live = cache.alternatives(for: AltSvcOrigin(host: "example.com", port: 443), now: 1050)
        #expect(live.map(\.host) == ["example.com", "alt.example"])
        #expect(live.map(\.port) == [8443, 443])
        #expect(live[0].expires == 1100)
        #expect(cache.alternatives(for: origin, now: 1100).map(\.host) == ["alt.example"], "the first expired at 1100")
        #expect(cache.alternatives(for: origin, now: 1000 + 86_400).isEmpty, "the default ma is 24 h")
        cache.prune(now: 1000 + 86_400)
        #expect(cache.originCount == 0)
    }

    @Test("a new field replaces the origin's alternatives; clear and ma=0 remove them; other origins stay")
    func replaceAndClear() throws {
        var cache = AltSvcCache()
        let other = AltSvcOrigin(host: "other.example", port: 443)
        cache.update(origin: origin, with: try field(#"h3=":1""#), now: 0)
        cache.update(origin: other, with: try field(#"h3=":9""#), now: 0)
        cache.update(origin: origin, with: try field(#"h3=":2""#), now: 1)
        #expect(cache.alternatives(for: origin, now: 2).map(\.port) == [2])
        cache.update(origin: origin, with: .clear, now: 3)
        #expect(cache.alternatives(for: origin, now: 3).isEmpty)
        cache.update(origin: other, with: try field(#"h3=":9"; ma=0"#), now: 4)
        #expect(cache.alternatives(for: other, now: 4).isEmpty)
        #expect(cache.originCount == 0)
    }

    @Test("the cache is bounded: the least recently updated origin goes first")
    func bounded() throws {
        var cache = AltSvcCache(maxOrigins: 3, maxEntriesPerOrigin: 2)
        for port in 1...4 {
            cache.update(origin: AltSvcOrigin(host: "h\(port)", port: 443), with: try field(#"h3=":1", h3=":2", h3=":3""#), now: 0)
        }
        #expect(cache.originCount == 3)
        #expect(cache.alternatives(for: AltSvcOrigin(host: "h1", port: 443), now: 1).isEmpty)
        #expect(cache.alternatives(for: AltSvcOrigin(host: "h4", port: 443), now: 1).map(\.port) == [1, 2])
    }

    @Test("save and load round-trip in curl's format, with mode 0600; expired entries are dropped")
    func fileRoundTrip() throws {
        let path = temporaryPath("altsvc-roundtrip")
        defer { unlink(path) }
        var cache = AltSvcCache()
        cache.update(origin: origin, with: try field(#"h3=":8443"; ma=3600; persist=1, h3="[::1]:443"; ma=10"#), now: 1_700_000_000)
        cache.update(origin: AltSvcOrigin(host: "::1", port: 8443), with: try field(#"h3=":8443""#), now: 1_700_000_000)
        try AltSvcCacheFile.save(cache, to: path, now: 1_700_000_000)
        var info = stat()
        #expect(stat(path, &info) == 0)
        #expect(info.st_mode & 0o777 == 0o600)
        let text = try String(contentsOfFile: path, encoding: .utf8)
        #expect(text.contains(#"h2 example.com 443 h3 example.com 8443 "20231114 23:13:20" 1 0"#), "\(text)")
        #expect(text.contains(#"h2 [::1] 8443 h3 [::1] 8443 "#), "\(text)")

        var loaded = AltSvcCache()
        try AltSvcCacheFile.load(path, into: &loaded, now: 1_700_000_005)
        #expect(loaded.alternatives(for: origin, now: 1_700_000_005) == cache.alternatives(for: origin, now: 1_700_000_005))
        #expect(loaded.alternatives(for: AltSvcOrigin(host: "::1", port: 8443), now: 1_700_000_005).count == 1)
        var later = AltSvcCache()
        try AltSvcCacheFile.load(path, into: &later, now: 1_700_000_020)
        #expect(later.alternatives(for: origin, now: 1_700_000_020).map(\.port) == [8443], "the ma=10 entry expired")
    }

    @Test("a missing file is an empty cache; a corrupt one is refused whole, naming the line", arguments: [
        "h2 example.com 443 h3 example.com 8443 \"20991114 23:13:20\" 0 0\ngarbage\n",
        "h2 example.com 443 h3 example.com 99999 \"20991114 23:13:20\" 0 0\n",
        "h2 example.com 443 h3 example.com 443 \"2099-11-14 23:13:20\" 0 0\n",
        "h2 example.com 443 h3 example.com 443 \"20991314 23:13:20\" 0 0\n",
        "hx example.com 443 h3 example.com 443 \"20991114 23:13:20\" 0 0\n",
        "h2 example.com 443 h3 example.com 443 \"20991114 23:13:20\" 2 0\n",
        "h2 exa\"mple.com 443 h3 example.com 443 \"20991114 23:13:20\" 0 0\n",
        "\u{FF}\u{FE}",
    ])
    func corruptFile(_ content: String) throws {
        let path = temporaryPath("altsvc-corrupt")
        defer { unlink(path) }
        var cache = AltSvcCache()
        try AltSvcCacheFile.load(path, into: &cache, now: 0)
        #expect(cache.originCount == 0)
        cache.update(origin: origin, with: try field(#"h3=":1""#), now: 0)
        try Array(content.utf8).withUnsafeBytes { try Data($0).write(to: URL(fileURLWithPath: path)) }
        do {
            try AltSvcCacheFile.load(path, into: &cache, now: 0)
            Issue.record("a corrupt file was accepted: \(content)")
        } catch {
            #expect(error.description.contains(path))
            #expect(error.reason.contains("line") || content.hasPrefix("\u{FF}"), "\(error)")
        }
        #expect(cache.alternatives(for: origin, now: 0).map(\.port) == [1], "the cache is unchanged")
    }

    @Test("invalid UTF-8 and over-large files are refused")
    func badBytes() throws {
        let path = temporaryPath("altsvc-binary")
        defer { unlink(path) }
        try Data([0xff, 0xfe, 0x00, 0x41]).write(to: URL(fileURLWithPath: path))
        var cache = AltSvcCache()
        #expect(throws: AltSvcCacheFileError.self) { try AltSvcCacheFile.load(path, into: &cache, now: 0) }
        try Data(repeating: 0x23, count: AltSvcCacheFile.maxFileSize + 1).write(to: URL(fileURLWithPath: path))
        #expect(throws: AltSvcCacheFileError.self) { try AltSvcCacheFile.load(path, into: &cache, now: 0) }
    }

    @Test("a broken alternative is blocked with exponential back-off, capped, and forgotten on success")
    func broken() {
        var broken = BrokenAlternatives(initialDelay: 300, maxDelay: 1000)
        let key = BrokenAlternatives.Key(protocolID: "h3", host: "Example.com", port: 443)
        let same = BrokenAlternatives.Key(protocolID: "h3", host: "example.com", port: 443)
        #expect(!broken.isBroken(key, now: 0))
        #expect(broken.markBroken(key, now: 0) == 300)
        #expect(broken.isBroken(same, now: 299))
        #expect(!broken.isBroken(same, now: 300))
        #expect(broken.markBroken(key, now: 300) == 600)
        #expect(broken.isBroken(key, now: 899))
        #expect(broken.markBroken(key, now: 900) == 1000, "capped")
        #expect(broken.failures(key) == 3)
        #expect(!broken.isBroken(BrokenAlternatives.Key(protocolID: "h3", host: "example.com", port: 444), now: 901))
        broken.markWorking(key)
        #expect(!broken.isBroken(key, now: 901))
        #expect(broken.markBroken(key, now: 901) == 300, "a success resets the back-off")
    }

    @Test("broken-alternative memory is bounded")
    func brokenBounded() {
        var broken = BrokenAlternatives(initialDelay: 10, capacity: 5)
        for port in 1...20 { broken.markBroken(.init(protocolID: "h3", host: "h", port: port), now: Double(port)) }
        let blocked = (1...20).filter { broken.isBroken(.init(protocolID: "h3", host: "h", port: $0), now: 20) }
        #expect(blocked == [16, 17, 18, 19, 20])
    }

    func temporaryPath(_ name: String) -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
    }
}
