import Foundation
import HTTPAPI
import HTTPTypes
import NIOCore

/// Serves the files under one directory: GET and HEAD, Content-Type, Last-Modified, ETag,
/// single byte ranges (206/416), 304 for If-None-Match and If-Modified-Since, directory
/// listings. No request can read outside the directory: `..` segments (also percent-encoded)
/// are refused, and every path is resolved (symbolic links included) and must stay inside.
struct FileServer: HTTPHandler {
    /// The served directory, fully resolved.
    let root: String
    let log: AccessLog

    /// Serves `directory` (which must exist).
    init(directory: String, log: AccessLog) throws(ToolError) {
        guard let real = realpath(directory, nil) else {
            throw ToolError(ToolError.usage, "cannot serve '\(directory)': \(String(cString: strerror(errno)))")
        }
        root = String(cString: real)
        free(real)
        var info = stat()
        guard stat(root, &info) == 0, (info.st_mode & S_IFMT) == S_IFDIR else {
            throw ToolError(ToolError.usage, "cannot serve '\(directory)': not a directory")
        }
        self.log = log
    }

    func handle(_ request: HTTPRequest, body: HTTPBody, context: HTTPRequestContext,
                response: HTTPResponseWriter) async throws {
        let started = ContinuousClock.now
        let writer = CountingWriter(response)
        defer { log.record(request, context: context, status: writer.status ?? 500, bytes: writer.bytes, since: started) }
        body.discard()
        _ = try await serve(request, writer)
    }

    private func serve(_ request: HTTPRequest, _ out: CountingWriter) async throws -> Int {
        guard request.method == .get || request.method == .head else {
            var head = HTTPResponse(status: .methodNotAllowed)
            head.headerFields[.allow] = "GET, HEAD"
            return try await out.text(head, "method \(request.method) is not allowed here\n", method: request.method)
        }
        let target = request.path ?? "/"
        switch FileServer.resolve(target, root: root) {
        case .badRequest:
            return try await out.text(HTTPResponse(status: .badRequest), "bad request path\n", method: request.method)
        case .forbidden:
            return try await out.text(HTTPResponse(status: .forbidden), "forbidden\n", method: request.method)
        case .notFound:
            return try await out.text(HTTPResponse(status: .notFound), "not found\n", method: request.method)
        case .redirectToDirectory(let location):
            // Built from the normalized segments: "//other.host" cannot become a cross-origin Location.
            var head = HTTPResponse(status: .movedPermanently)
            head.headerFields[.location] = location
            return try await out.text(head, "moved to a directory path\n", method: request.method)
        case .directory(let path):
            switch FileServer.resolve(FileServer.pathOnly(target) + "index.html", root: root) {
            case .file(let index): return try await sendFile(index, request, out)
            default: return try await listing(path, target: FileServer.pathOnly(target), request, out)
            }
        case .file(let path):
            return try await sendFile(path, request, out)
        }
    }

    private func sendFile(_ path: String, _ request: HTTPRequest, _ out: CountingWriter) async throws -> Int {
        let file: ReadableFile
        do {
            file = try ReadableFile(path: path, serving: true)
        } catch {
            return try await out.text(HTTPResponse(status: .forbidden), "forbidden\n", method: request.method)
        }
        // The path was checked, then opened: make sure what was opened is still inside the root
        // (a symbolic link swapped in between would show here).
        guard file.isRegularFile, let opened = file.openedPath, opened.hasPrefix(root == "/" ? "/" : root + "/") else {
            return try await out.text(HTTPResponse(status: .forbidden), "forbidden\n", method: request.method)
        }
        let mtime = Int(file.modificationTime.tv_sec)
        let etag = "\"\(String(file.inode, radix: 16))-\(String(file.size, radix: 16))-"
            + "\(String(mtime, radix: 16))\(String(file.modificationTime.tv_nsec, radix: 16))\""
        var head = HTTPResponse(status: .ok)
        head.headerFields[.contentType] = MIMEType.forPath(path)
        head.headerFields[.lastModified] = HTTPDate.format(seconds: mtime)
        head.headerFields[.eTag] = etag
        head.headerFields[.acceptRanges] = "bytes"

        // Conditional requests (RFC 9110, section 13): If-None-Match wins over If-Modified-Since.
        if let ifNoneMatch = request.headerFields[.ifNoneMatch] {
            if FileServer.etagListMatches(ifNoneMatch, etag) {
                head.status = .notModified
                try await out.head(head)
                try await out.finish()
                return 304
            }
        } else if let since = request.headerFields[.ifModifiedSince].flatMap(HTTPDate.parse), mtime <= since {
            head.status = .notModified
            try await out.head(head)
            try await out.finish()
            return 304
        }

        var start: Int64 = 0
        var length = file.size
        if let range = request.headerFields[.range], FileServer.ifRangeAllows(request.headerFields[.ifRange], etag: etag, mtime: mtime) {
            switch FileServer.parseRange(range, size: file.size) {
            case .ignore:
                break
            case .unsatisfiable:
                var refused = HTTPResponse(status: .rangeNotSatisfiable)
                refused.headerFields[.contentRange] = "bytes */\(file.size)"
                return try await out.text(refused, "range not satisfiable\n", method: request.method)
            case .range(let first, let last):
                head.status = .partialContent
                head.headerFields[.contentRange] = "bytes \(first)-\(last)/\(file.size)"
                start = first
                length = last - first + 1
            }
        }
        head.headerFields[.contentLength] = String(length)
        try await out.head(head)
        if request.method != .head {
            for try await chunk in file.chunks(from: start, length: length) {
                try await out.write(chunk)
            }
        }
        try await out.finish()
        return head.status.code
    }

    private func listing(_ path: String, target: String, _ request: HTTPRequest, _ out: CountingWriter) async throws -> Int {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted()
        let title = FileServer.escapeHTML(target.removingPercentEncoding ?? target)
        var html = "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Index of \(title)</title></head>\n"
        html += "<body><h1>Index of \(title)</h1>\n<ul>\n"
        if target != "/" { html += "<li><a href=\"../\">../</a></li>\n" }
        for name in names {
            var isDirectory: ObjCBool = false
            _ = FileManager.default.fileExists(atPath: path + "/" + name, isDirectory: &isDirectory)
            let shown = name + (isDirectory.boolValue ? "/" : "")
            let link = (name.addingPercentEncoding(withAllowedCharacters: FileServer.segmentAllowed) ?? name)
                + (isDirectory.boolValue ? "/" : "")
            html += "<li><a href=\"\(FileServer.escapeHTML(link))\">\(FileServer.escapeHTML(shown))</a></li>\n"
        }
        html += "</ul></body></html>\n"
        var head = HTTPResponse(status: .ok)
        head.headerFields[.contentType] = "text/html; charset=utf-8"
        return try await out.text(head, html, method: request.method)
    }

    // MARK: - Pure helpers (unit-tested)

    /// Where a request path leads.
    enum Resolution: Equatable {
        case file(String)
        case directory(String)
        /// A directory asked for without the trailing slash; the location to send.
        case redirectToDirectory(String)
        case notFound
        case forbidden
        case badRequest
    }

    static let segmentAllowed: CharacterSet = {
        var allowed = CharacterSet.urlPathAllowed
        allowed.remove(charactersIn: "/;?#")
        return allowed
    }()

    static func pathOnly(_ target: String) -> String {
        String(target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? "/")
    }

    /// Maps a request target to a file under `root` (a resolved directory path).
    static func resolve(_ target: String, root: String) -> Resolution {
        let path = pathOnly(target)
        guard path.hasPrefix("/"), let decoded = path.removingPercentEncoding, !decoded.contains("\0") else {
            return .badRequest
        }
        var segments: [Substring] = []
        for segment in decoded.split(separator: "/", omittingEmptySubsequences: true) {
            if segment == "." { continue }
            if segment == ".." { return .forbidden }
            segments.append(segment)
        }
        let candidate = segments.isEmpty ? root : (root == "/" ? "" : root) + "/" + segments.joined(separator: "/")
        guard let resolvedPointer = realpath(candidate, nil) else {
            return errno == EACCES ? .forbidden : .notFound
        }
        let resolved = String(cString: resolvedPointer)
        free(resolvedPointer)
        guard resolved == root || resolved.hasPrefix(root == "/" ? "/" : root + "/") else { return .forbidden }
        var info = stat()
        guard stat(resolved, &info) == 0 else { return .notFound }
        switch info.st_mode & S_IFMT {
        case S_IFDIR:
            if decoded.hasSuffix("/") || segments.isEmpty { return .directory(resolved) }
            let encoded = segments.map { String($0).addingPercentEncoding(withAllowedCharacters: segmentAllowed) ?? "" }
            let query = target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).dropFirst().first
            return .redirectToDirectory("/" + encoded.joined(separator: "/") + "/" + (query.map { "?" + $0 } ?? ""))
        case S_IFREG:
            return decoded.hasSuffix("/") ? .notFound : .file(resolved)
        default:
            return .forbidden
        }
    }

    /// A Range header's meaning for a file of `size` bytes (RFC 9110, section 14).
    enum RangeRequest: Equatable {
        /// Serve the whole file (no usable range: several ranges, another unit, bad syntax).
        case ignore
        case unsatisfiable
        /// First and last byte, inclusive.
        case range(Int64, Int64)
    }

    static func parseRange(_ header: String, size: Int64) -> RangeRequest {
        let trimmed = header.trimmingCharacters(in: .whitespaces)
        guard trimmed.lowercased().hasPrefix("bytes=") else { return .ignore }
        let spec = trimmed.dropFirst(6).trimmingCharacters(in: .whitespaces)
        guard !spec.contains(","), let dash = spec.firstIndex(of: "-") else { return .ignore }
        let firstText = spec[..<dash], lastText = spec[spec.index(after: dash)...]
        func number(_ text: Substring) -> Int64? {
            guard !text.isEmpty, text.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
            return Int64(text)  // nil on overflow
        }
        if firstText.isEmpty {
            guard let suffix = number(lastText) else { return .ignore }
            guard suffix > 0, size > 0 else { return .unsatisfiable }
            return .range(max(0, size - suffix), size - 1)
        }
        guard let first = number(firstText) else { return .ignore }
        var last = size - 1
        if !lastText.isEmpty {
            guard lastText.allSatisfy({ $0.isASCII && $0.isNumber }) else { return .ignore }
            // A last byte beyond Int64 is just "to the end".
            let value = number(lastText) ?? Int64.max
            guard value >= first else { return .ignore }
            last = min(value, size - 1)
        }
        guard first < size else { return .unsatisfiable }
        return .range(first, last)
    }

    /// Whether an If-None-Match list matches the ETag (weak comparison).
    static func etagListMatches(_ list: String, _ etag: String) -> Bool {
        func opaque(_ tag: Substring) -> Substring {
            let trimmed = tag.trimmingCharacters(in: .whitespaces)
            return trimmed.hasPrefix("W/") ? Substring(trimmed.dropFirst(2)) : Substring(trimmed)
        }
        if list.trimmingCharacters(in: .whitespaces) == "*" { return true }
        let ours = opaque(Substring(etag))
        return list.split(separator: ",").contains { opaque($0) == ours }
    }

    /// If-Range: the range applies only if the validator still matches (strong ETag or exact date).
    static func ifRangeAllows(_ ifRange: String?, etag: String, mtime: Int) -> Bool {
        guard let value = ifRange?.trimmingCharacters(in: .whitespaces) else { return true }
        if value.hasPrefix("\"") { return value == etag }
        if value.hasPrefix("W/") { return false }
        return HTTPDate.parse(value) == mtime
    }

    static func escapeHTML(_ text: String) -> String {
        var out = ""
        for character in text {
            switch character {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(character)
            }
        }
        return out
    }
}

/// Answers every request with its own body (`h3 serve --echo`), streamed back as it arrives.
struct EchoHandler: HTTPHandler {
    let log: AccessLog

    func handle(_ request: HTTPRequest, body: HTTPBody, context: HTTPRequestContext,
                response: HTTPResponseWriter) async throws {
        let started = ContinuousClock.now
        let out = CountingWriter(response)
        defer { log.record(request, context: context, status: out.status ?? 500, bytes: out.bytes, since: started) }
        var head = HTTPResponse(status: .ok)
        head.headerFields[.contentType] = request.headerFields[.contentType] ?? "application/octet-stream"
        if let length = request.headerFields[.contentLength] { head.headerFields[.contentLength] = length }
        try await out.head(head)
        for try await chunk in body { try await out.write(chunk) }
        try await out.finish()
    }
}

/// A response writer that counts body bytes for the access log.
/// `@unchecked Sendable`: the count and status are read and written under `lock`; the
/// writer is itself Sendable.
final class CountingWriter: @unchecked Sendable {
    private let writer: HTTPResponseWriter
    private let lock = NSLock()
    private var count: Int64 = 0
    private var sentStatus: Int?

    init(_ writer: HTTPResponseWriter) { self.writer = writer }

    var bytes: Int64 { lock.withLock { count } }
    /// The status of the head that was sent, if one was.
    var status: Int? { lock.withLock { sentStatus } }

    func head(_ head: HTTPResponse) async throws {
        try await writer.writeHead(head)
        lock.withLock { sentStatus = head.status.code }
    }

    func write(_ buffer: ByteBuffer) async throws {
        try await writer.write(buffer)
        lock.withLock { count += Int64(buffer.readableBytes) }
    }

    func finish() async throws { try await writer.finish() }

    /// A short text response (no body for HEAD); returns its status code.
    func text(_ head: HTTPResponse, _ text: String, method: HTTPRequest.Method) async throws -> Int {
        var head = head
        if head.headerFields[.contentType] == nil { head.headerFields[.contentType] = "text/plain; charset=utf-8" }
        head.headerFields[.contentLength] = String(text.utf8.count)
        try await self.head(head)
        if method != .head { try await write(ByteBuffer(string: text)) }
        try await writer.finish()
        return head.status.code
    }
}

/// One line per request on stderr: time, client, request line, status, body bytes, duration.
final class AccessLog: Sendable {
    let enabled: Bool

    init(enabled: Bool) { self.enabled = enabled }

    func record(_ request: HTTPRequest, context: HTTPRequestContext, status: Int, bytes: Int64,
                since started: ContinuousClock.Instant) {
        guard enabled else { return }
        let milliseconds = (ContinuousClock.now - started).seconds * 1000
        let path = (request.path ?? "-").unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7f ? "?" : String($0) }.joined()
        Console.error("\(HTTPDate.format(seconds: Int(time(nil)))) \(context.remoteAddress ?? "-") "
                      + "\"\(request.method) \(path) HTTP/\(context.protocolVersion.rawValue)\" \(status) \(bytes) "
                      + String(format: "%.1fms", milliseconds))
    }
}

/// Content types by file extension.
enum MIMEType {
    static let types: [String: String] = [
        "html": "text/html; charset=utf-8", "htm": "text/html; charset=utf-8", "css": "text/css; charset=utf-8",
        "js": "text/javascript; charset=utf-8", "mjs": "text/javascript; charset=utf-8",
        "json": "application/json", "txt": "text/plain; charset=utf-8", "md": "text/markdown; charset=utf-8",
        "csv": "text/csv; charset=utf-8", "xml": "application/xml", "svg": "image/svg+xml", "png": "image/png",
        "jpg": "image/jpeg", "jpeg": "image/jpeg", "gif": "image/gif", "webp": "image/webp", "avif": "image/avif",
        "ico": "image/x-icon", "pdf": "application/pdf", "zip": "application/zip", "gz": "application/gzip",
        "tar": "application/x-tar", "wasm": "application/wasm", "mp4": "video/mp4", "webm": "video/webm",
        "mp3": "audio/mpeg", "ogg": "audio/ogg", "woff": "font/woff", "woff2": "font/woff2",
    ]

    static func forPath(_ path: String) -> String {
        let name = (path as NSString).lastPathComponent
        guard let dot = name.lastIndex(of: "."), dot != name.startIndex else { return "application/octet-stream" }
        return types[name[name.index(after: dot)...].lowercased()] ?? "application/octet-stream"
    }
}
