import Foundation
import HTTPAPI
import HTTPTypes
import NIOCore
import NIOPosix
import QUICTestSupport
import Testing

// What the HTTP test targets (HTTP/3, HTTP/2, the combined server) share: the test handler and
// its routes, body hashing and generated bodies.

/// Records what handlers saw, for tests to check.
public actor Observations {
    public init() {}
    public private(set) var errors: [String: String] = [:]
    public private(set) var inFlight = 0
    public private(set) var completed = 0

    public func record(_ key: String, _ value: String) { errors[key] = value }
    public func value(_ key: String) -> String? { errors[key] }
    public func begin() { inFlight += 1 }
    public func end() { inFlight -= 1; completed += 1 }
}

public func hex(_ bytes: [UInt8]) -> String { bytes.map { String($0, radix: 16).leftPad(2) }.joined() }

extension String {
    public func leftPad(_ width: Int) -> String { count >= width ? self : String(repeating: "0", count: width - count) + self }
}

/// Query parameter `name` of a path like `/bytes?n=100`.
public func query(_ path: String?, _ name: String) -> String? {
    guard let path, let question = path.firstIndex(of: "?") else { return nil }
    for pair in path[path.index(after: question)...].split(separator: "&") {
        let parts = pair.split(separator: "=", maxSplits: 1)
        if parts.count == 2 && parts[0] == name { return String(parts[1]) }
    }
    return nil
}

/// The test handler: a small set of routes exercising the API.
public struct TestHandler: HTTPHandler {
    public let observations: Observations

    public init(observations: Observations) {
        self.observations = observations
    }
    /// On `/context`: whether the handler ran on an event loop thread.
    public static let onEventLoop = HTTPField.Name("x-handler-on-event-loop")!

    public func handle(_ request: HTTPRequest, body: HTTPBody, context: HTTPRequestContext, response: HTTPResponseWriter) async throws {
        let path = request.path ?? "/"
        let route = path.split(separator: "?").first.map(String.init) ?? path
        switch route {
        case "/hello":
            var head = HTTPResponse(status: .ok)
            head.headerFields[.contentType] = "text/plain"
            head.headerFields[.contentLength] = "5"
            try await response.respond(head, body: ByteBuffer(string: "hello"))
        case "/context":
            let text = "\(context.protocolVersion.rawValue) \(context.tlsServerName ?? "-") \(context.remoteAddress != nil)"
            var head = HTTPResponse(status: .ok)
            head.headerFields[Self.onEventLoop] = MultiThreadedEventLoopGroup.currentEventLoop != nil ? "true" : "false"
            try await response.respond(head, body: ByteBuffer(string: text))
        case "/sha256":
            // Hashes the request body as it streams in.
            let (hash, count) = try await hashBody(body)
            try await response.respond(HTTPResponse(status: .ok), body: ByteBuffer(string: "\(count) \(hex(hash))"))
        case "/bytes":
            let total = Int(query(path, "n") ?? "0") ?? 0
            var head = HTTPResponse(status: .ok)
            head.headerFields[.contentLength] = String(total)
            try await response.writeHead(head)
            var generator = PatternGenerator(seed: UInt64(query(path, "seed") ?? "1") ?? 1)
            var sent = 0
            while sent < total {
                let chunk = generator.next(min(256 << 10, total - sent))
                try await response.write(chunk)
                sent += chunk.readableBytes
            }
            try await response.finish()
        case "/echo":
            var head = HTTPResponse(status: .ok)
            head.headerFields[HTTPField.Name("x-served-by")!] = "swift-h3 test server"
            head.headerFields[.cacheControl] = "no-store, private"
            try await response.writeHead(head)
            for try await chunk in body { try await response.write(chunk) }
            try await response.finish()
        case "/trailers":
            let received = try await body.collect(upTo: 1 << 20)
            let requestTrailers = try await body.trailers()
            var trailers = HTTPFields()
            trailers[HTTPField.Name("x-checksum")!] = String(received.readableBytes)
            trailers[HTTPField.Name("x-echo-trailer")!] = requestTrailers?[HTTPField.Name("x-client-trailer")!] ?? "none"
            try await response.respond(HTTPResponse(status: .ok), body: received, trailers: trailers)
        case "/throw":
            throw TestFailure("handler failed before the head")
        case "/throw-after-head":
            try await response.writeHead(HTTPResponse(status: .ok))
            try await response.write(ByteBuffer(string: "partial"))
            throw TestFailure("handler failed after the head")
        case "/stream-until-cancelled":
            try await response.writeHead(HTTPResponse(status: .ok))
            do {
                for _ in 0..<100_000 {
                    try await response.write(ByteBuffer(repeating: 0x41, count: 16 << 10))
                }
                await observations.record("cancel", "never cancelled")
            } catch {
                await observations.record("cancel", "\(error)")
                throw error
            }
        case "/late-fin":
            // Body first, the end of the stream a moment later: nghttp3 then sends a bare FIN.
            try await response.writeHead(HTTPResponse(status: .ok))
            try await response.write(ByteBuffer(string: "body"))
            try await Task.sleep(for: .milliseconds(5))
            try await response.finish()
        case "/ignore-body":
            // Answers without reading the request body (after it has had time to arrive whole).
            try await Task.sleep(for: .milliseconds(100))
            try await response.respond(HTTPResponse(status: .ok), body: ByteBuffer(string: "ignored"))
        case "/reject-upload":
            var head = HTTPResponse(status: .init(code: 413, reasonPhrase: "Content Too Large"))
            head.headerFields[.contentLength] = "9"
            try await response.respond(head, body: ByteBuffer(string: "too large"))
        case "/hints":
            // 103 Early Hints, then the final response.
            var hints = HTTPResponse(status: .init(code: 103, reasonPhrase: "Early Hints"))
            hints.headerFields[HTTPField.Name("link")!] = "</style.css>; rel=preload; as=style"
            try await response.writeHead(hints)
            try await response.respond(HTTPResponse(status: .ok), body: ByteBuffer(string: "hinted"))
        case "/slow":
            await observations.begin()
            let millis = Int(query(path, "ms") ?? "500") ?? 500
            try await Task.sleep(for: .milliseconds(millis))
            try await response.respond(HTTPResponse(status: .ok), body: ByteBuffer(string: "slow done"))
            await observations.end()
        default:
            try await response.respond(HTTPResponse(status: .notFound), body: ByteBuffer(string: "not found"))
        }
    }
}

public struct TestFailure: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// SHA-256 and length of a body, read as it streams.
public func hashBody(_ body: HTTPBody) async throws -> (hash: [UInt8], count: Int) {
    var hash = SHA256()
    var count = 0
    for try await chunk in body {
        hash.update(chunk)
        count += chunk.readableBytes
    }
    return (hash.finalize(), count)
}

/// A lazily generated body: a pattern of `total` bytes in 256 KiB chunks.
public struct LazyPattern: AsyncSequence, Sendable {
    public typealias Element = ByteBuffer
    public let seed: UInt64
    public let total: Int

    public init(seed: UInt64, total: Int) {
        self.seed = seed
        self.total = total
    }

    public struct AsyncIterator: AsyncIteratorProtocol {
        var generator: PatternGenerator
        var remaining: Int
        public mutating func next() async -> ByteBuffer? {
            guard remaining > 0 else { return nil }
            let chunk = generator.next(Swift.min(256 << 10, remaining))
            remaining -= chunk.readableBytes
            return chunk
        }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(generator: PatternGenerator(seed: seed), remaining: total) }
}

/// Serves files under a directory (GET, HEAD) and echoes POST bodies: what the peers fetch.
public struct DirectoryHandler: HTTPHandler {
    public let root: URL

    public init(root: URL) {
        self.root = root
    }

    public func handle(_ request: HTTPRequest, body: HTTPBody, context: HTTPRequestContext, response: HTTPResponseWriter) async throws {
        if request.method == .post {
            let data = try await body.collect(upTo: 64 << 20)
            var head = HTTPResponse(status: .ok)
            head.headerFields[.contentLength] = String(data.readableBytes)
            try await response.respond(head, body: data)
            return
        }
        let name = (request.path ?? "/").split(separator: "?").first.map(String.init) ?? "/"
        let file = root.appendingPathComponent(String(name.drop(while: { $0 == "/" }))).standardizedFileURL
        guard file.path.hasPrefix(root.standardizedFileURL.path + "/"), let data = FileManager.default.contents(atPath: file.path) else {
            try await response.respond(HTTPResponse(status: .notFound), body: ByteBuffer(string: "not found\n"))
            return
        }
        var head = HTTPResponse(status: .ok)
        head.headerFields[.contentLength] = String(data.count)
        try await response.writeHead(head)
        var offset = 0
        while offset < data.count {
            let end = min(offset + (256 << 10), data.count)
            try await response.write(ByteBuffer(bytes: data[offset..<end]))
            offset = end
        }
        try await response.finish()
    }
}

/// Test files made once: name -> SHA-256.
public struct InteropFiles: Sendable {
    public let directory: URL
    public let hashes: [String: [UInt8]]

    public static let shared: InteropFiles = {
        let directory = TestPKI.shared.directory.appendingPathComponent("htdocs")
        try? FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var hashes: [String: [UInt8]] = [:]
        for (name, size, seed) in [("file-1m", 1 << 20, UInt64(11)), ("file-50m", 50 << 20, UInt64(12)), ("small.txt", 1000, UInt64(13))] {
            var generator = PatternGenerator(seed: seed)
            let buffer = generator.next(size)
            hashes[name] = sha256(buffer)
            _ = FileManager.default.createFile(atPath: directory.appendingPathComponent(name).path,
                                           contents: Data(buffer.readableBytesView))
        }
        return InteropFiles(directory: directory, hashes: hashes)
    }()
}

public func sha256(_ data: Data) -> [UInt8] {
    var hash = SHA256()
    hash.update(ByteBuffer(bytes: data))
    return hash.finalize()
}

public func sha256(_ buffer: ByteBuffer) -> [UInt8] {
    var hash = SHA256()
    hash.update(buffer)
    return hash.finalize()
}

/// The package's root directory (for the peer scripts and the aioquic virtualenv).
public let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// The Python of the aioquic virtualenv that `scripts/install-deps` makes.
public func aioquicPython() -> String? {
    let python = packageRoot.appendingPathComponent(".venv/bin/python").path
    if FileManager.default.isExecutableFile(atPath: python) { return python }
    if runningInCI { Issue.record("aioquic is not installed: run scripts/install-deps") }
    return nil
}

/// The path of the peer program `name`; `nil` (and, in CI, a recorded issue) when it is missing.
public func requirePeer(_ name: String) -> String? {
    if let path = findExecutable(name) { return path }
    if runningInCI { Issue.record("\(name) is not installed; CI must provide it") }
    return nil
}
