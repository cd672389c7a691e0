#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why an Alt-Svc cache file was not loaded or saved.
public struct AltSvcCacheFileError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The file.
    public var path: String
    /// What is wrong, in a sentence (with the line number for a malformed line).
    public var reason: String

    /// Creates an error.
    public init(path: String, reason: String) {
        self.path = path
        self.reason = reason
    }

    public var description: String { "alt-svc cache \(path): \(reason)" }
}

/// Reads and writes an ``AltSvcCache`` in curl's alt-svc file format, so `h3 --alt-svc FILE`
/// and `curl --alt-svc FILE` can share a file. One entry per line:
///
/// ```
/// h2 example.com 443 h3 example.com 443 "20261124 14:50:00" 0 0
/// ```
///
/// (source ALPN, origin host and port, alternative ALPN, host and port, expiry in UTC,
/// persist, priority). Lines starting with `#` are comments. The file is written with mode
/// 0600 (it tells where its owner browses), through a temporary file and a rename.
public enum AltSvcCacheFile {
    /// Files larger than this are refused rather than read.
    public static let maxFileSize = 1 << 20

    /// Reads `path` into `cache`. A missing file is an empty cache; a file that is unreadable,
    /// too large or has any malformed line is refused whole (the error says which line), so
    /// that a damaged file never steers the client.
    public static func load(_ path: String, into cache: inout AltSvcCache, now: Double) throws(AltSvcCacheFileError) {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        if descriptor < 0 {
            if errno == ENOENT { return }
            throw AltSvcCacheFileError(path: path, reason: "cannot open: \(String(cString: strerror(errno)))")
        }
        defer { close(descriptor) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw AltSvcCacheFileError(path: path, reason: "cannot read: \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            bytes += chunk[0..<n]
            if bytes.count > maxFileSize {
                throw AltSvcCacheFileError(path: path, reason: "larger than \(maxFileSize) bytes")
            }
        }
        try load(contentsOf: bytes, path: path, into: &cache, now: now)
    }

    /// Parses the bytes of a cache file (what ``load(_:into:now:)`` read from `path`, which only
    /// names the file in errors) into `cache`, all or nothing. The fuzz targets and their
    /// regression replay call this directly.
    package static func load(contentsOf bytes: [UInt8], path: String, into cache: inout AltSvcCache,
                             now: Double) throws(AltSvcCacheFileError) {
        guard bytes.count <= maxFileSize else {
            throw AltSvcCacheFileError(path: path, reason: "larger than \(maxFileSize) bytes")
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw AltSvcCacheFileError(path: path, reason: "not UTF-8 text")
        }
        var loaded = cache
        var lineNumber = 0
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNumber += 1
            let trimmed = line.drop { $0 == " " || $0 == "\t" }
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            do throws(AltSvcCacheFileError) {
                let (origin, entry) = try parseLine(String(trimmed), path: path)
                if entry.expires > now { loaded.insert(entry, for: origin) }
            } catch {
                throw AltSvcCacheFileError(path: path, reason: "line \(lineNumber): \(error.reason)")
            }
        }
        cache = loaded
    }

    /// Writes the cache's unexpired entries to `path` with mode 0600.
    public static func save(_ cache: AltSvcCache, to path: String, now: Double) throws(AltSvcCacheFileError) {
        var text = "# Alt-Svc cache (curl's format). Written by h3; edit at your own risk.\n"
        for (origin, entry) in cache.allEntries(now: now) {
            text += "h2 \(bracketed(origin.host)) \(origin.port) \(entry.protocolID) \(bracketed(entry.host)) \(entry.port) "
            text += "\"\(formatDate(entry.expires))\" \(entry.persist ? 1 : 0) 0\n"
        }
        let temporary = path + ".tmp-\(getpid())"
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            throw AltSvcCacheFileError(path: path, reason: "cannot create \(temporary): \(String(cString: strerror(errno)))")
        }
        // The mode given to open() is reduced by the umask, and an old temporary file keeps its own.
        _ = fchmod(descriptor, 0o600)
        let bytes = Array(text.utf8)
        var offset = 0
        var failure: Int32 = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { raw in
                raw.baseAddress.map { write(descriptor, $0 + offset, raw.count - offset) } ?? 0
            }
            if n < 0 {
                if errno == EINTR { continue }
                failure = errno
                break
            }
            offset += n
        }
        close(descriptor)
        if failure == 0, rename(temporary, path) != 0 { failure = errno }
        if failure != 0 {
            unlink(temporary)
            throw AltSvcCacheFileError(path: path, reason: "cannot write: \(String(cString: strerror(failure)))")
        }
    }

    static func parseLine(_ line: String, path: String) throws(AltSvcCacheFileError) -> (AltSvcOrigin, AltSvcEntry) {
        // Fields are separated by blanks; the date is one quoted field with a blank inside.
        guard let open = line.firstIndex(of: "\""),
              let close = line[line.index(after: open)...].firstIndex(of: "\"") else {
            throw AltSvcCacheFileError(path: path, reason: "no quoted expiry date")
        }
        let before = line[..<open].split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        let after = line[line.index(after: close)...].split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        guard before.count == 6, after.count == 2 else {
            throw AltSvcCacheFileError(path: path, reason: "expected 9 fields")
        }
        guard ["h1", "h2", "h3"].contains(before[0]) else {
            throw AltSvcCacheFileError(path: path, reason: "unknown source protocol \(before[0])")
        }
        let originHost = try host(before[1], path: path), alternativeHost = try host(before[4], path: path)
        let originPort = try port(before[2], path: path), alternativePort = try port(before[5], path: path)
        guard !before[3].isEmpty, before[3].utf8.allSatisfy({ AltSvcParser.isTokenChar($0) }) else {
            throw AltSvcCacheFileError(path: path, reason: "bad protocol id \(before[3])")
        }
        guard let expires = parseDate(line[line.index(after: open)..<close]) else {
            throw AltSvcCacheFileError(path: path, reason: "bad expiry date (want \"YYYYMMDD HH:MM:SS\")")
        }
        guard after[0] == "0" || after[0] == "1", Int(after[1]) != nil else {
            throw AltSvcCacheFileError(path: path, reason: "bad persist or priority field")
        }
        let entry = AltSvcEntry(protocolID: before[3], host: alternativeHost, port: alternativePort, expires: expires,
                                persist: after[0] == "1")
        return (AltSvcOrigin(host: originHost, port: originPort), entry)
    }

    private static func host(_ text: String, path: String) throws(AltSvcCacheFileError) -> String {
        var host = Substring(text)
        if host.hasPrefix("[") && host.hasSuffix("]") && host.count > 2 { host = host.dropFirst().dropLast() }
        guard !host.isEmpty, host.count <= 255,
              host.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "[") && $0 != UInt8(ascii: "]") && $0 != UInt8(ascii: "\"") }) else {
            throw AltSvcCacheFileError(path: path, reason: "bad host \(text)")
        }
        return String(host).lowercased()
    }

    private static func port(_ text: String, path: String) throws(AltSvcCacheFileError) -> Int {
        guard text.count <= 5, let value = Int(text), (1...65535).contains(value) else {
            throw AltSvcCacheFileError(path: path, reason: "bad port \(text)")
        }
        return value
    }

    private static func bracketed(_ host: String) -> String { host.contains(":") ? "[\(host)]" : host }

    /// `YYYYMMDD HH:MM:SS` in UTC.
    static func formatDate(_ seconds: Double) -> String {
        var time = time_t(max(0, min(seconds, 253_402_300_799)))  // up to year 9999
        var parts = tm()
        gmtime_r(&time, &parts)
        func pad(_ value: Int32, _ width: Int) -> String {
            let text = String(value)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        return pad(parts.tm_year + 1900, 4) + pad(parts.tm_mon + 1, 2) + pad(parts.tm_mday, 2) + " "
            + pad(parts.tm_hour, 2) + ":" + pad(parts.tm_min, 2) + ":" + pad(parts.tm_sec, 2)
    }

    static func parseDate(_ text: Substring) -> Double? {
        let utf8 = Array(text.utf8)
        guard utf8.count == 17, utf8[8] == UInt8(ascii: " "), utf8[11] == UInt8(ascii: ":"), utf8[14] == UInt8(ascii: ":") else {
            return nil
        }
        func number(_ range: Range<Int>) -> Int32? {
            var value: Int32 = 0
            for byte in utf8[range] {
                guard byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") else { return nil }
                value = value * 10 + Int32(byte - UInt8(ascii: "0"))
            }
            return value
        }
        guard let year = number(0..<4), let month = number(4..<6), let day = number(6..<8),
              let hour = number(9..<11), let minute = number(12..<14), let second = number(15..<17),
              (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 61 else { return nil }
        var parts = tm()
        parts.tm_year = year - 1900
        parts.tm_mon = month - 1
        parts.tm_mday = day
        parts.tm_hour = hour
        parts.tm_min = minute
        parts.tm_sec = second
        return Double(timegm(&parts))
    }
}
