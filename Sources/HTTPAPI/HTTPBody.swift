import HTTPTypes
import NIOCore

/// Where a streamed body's bytes come from: a transport's receive side, read once.
package protocol HTTPBodySource: Sendable {
    /// The next chunk, or `nil` at the end of the body.
    func next() async throws -> ByteBuffer?
    /// The trailers, once the body has been read to its end (`nil` if there were none).
    func trailers() async throws -> HTTPFields?
    /// The reader will not read on; the transport may discard the rest.
    func cancel()
}

/// A request or response body: a stream of byte buffers, with an optional known length and
/// optional trailers.
///
/// Bodies made from bytes can be read many times; streamed bodies (those received from the
/// network, or made from an async sequence) can be read once. Reading applies backpressure:
/// a received body is pulled from the network only as fast as it is read.
public struct HTTPBody: AsyncSequence, Sendable {
    public typealias Element = ByteBuffer

    package enum Storage: Sendable {
        case bytes(ByteBuffer)
        case source(any HTTPBodySource)
        case sequence(SequenceBox)
    }

    /// The length in bytes, if known in advance (sent as `content-length`).
    public let length: Int64?
    package let storage: Storage
    private let trailerProvider: (@Sendable () async throws -> HTTPFields?)?

    /// An empty body.
    public init() {
        self.init(ByteBuffer())
    }

    /// A body of these bytes.
    public init(_ buffer: ByteBuffer, trailers: HTTPFields? = nil) {
        self.length = Int64(buffer.readableBytes)
        self.storage = .bytes(buffer)
        self.trailerProvider = trailers.map { fields in { @Sendable in fields } }
    }

    /// A body of these bytes.
    public init(bytes: some Sequence<UInt8>, trailers: HTTPFields? = nil) {
        self.init(ByteBuffer(bytes: bytes), trailers: trailers)
    }

    /// A body of this string's UTF-8 bytes.
    public init(string: String, trailers: HTTPFields? = nil) {
        self.init(ByteBuffer(string: string), trailers: trailers)
    }

    /// A streamed body. The transport pulls the sequence as the network accepts bytes, so a
    /// lazy sequence (reading a file, say) is never buffered whole.
    ///
    /// - Parameters:
    ///   - length: the total length if known; a sequence that yields a different total fails the request.
    ///   - trailers: called after the sequence ends; the fields it returns are sent as trailers.
    public init<Chunks: AsyncSequence & Sendable>(_ chunks: Chunks, length: Int64? = nil,
                                                   trailers: (@Sendable () async throws -> HTTPFields?)? = nil)
        where Chunks.Element == ByteBuffer {
        self.length = length
        self.storage = .sequence(SequenceBox(chunks))
        self.trailerProvider = trailers
    }

    /// A body received by a transport.
    package init(source: any HTTPBodySource, length: Int64?) {
        self.length = length
        self.storage = .source(source)
        self.trailerProvider = nil
    }

    /// The trailers. For a received body, available once the body has been read to the end.
    public func trailers() async throws -> HTTPFields? {
        switch storage {
        case .source(let source): return try await source.trailers()
        case .bytes, .sequence: return try await trailerProvider?()
        }
    }

    /// Reads the whole body into one buffer.
    ///
    /// - Throws: ``HTTPError/bodyTooLarge(limit:)`` past `limit` bytes.
    public func collect(upTo limit: Int) async throws -> ByteBuffer {
        if case .bytes(let buffer) = storage {
            guard buffer.readableBytes <= limit else { throw HTTPError.bodyTooLarge(limit: limit) }
            return buffer
        }
        var result = ByteBuffer()
        for try await var chunk in self {
            guard result.readableBytes + chunk.readableBytes <= limit else {
                cancelSource()
                throw HTTPError.bodyTooLarge(limit: limit)
            }
            result.writeBuffer(&chunk)
        }
        return result
    }

    /// Tells a received body's transport that nobody will read the rest.
    public func discard() {
        cancelSource()
    }

    private func cancelSource() {
        if case .source(let source) = storage { source.cancel() }
    }

    public func makeAsyncIterator() -> AsyncIterator {
        switch storage {
        case .bytes(let buffer): return AsyncIterator(state: .bytes(buffer.readableBytes > 0 ? buffer : nil))
        case .source(let source): return AsyncIterator(state: .source(source))
        case .sequence(let box): return AsyncIterator(state: .sequence(box.makeNext()))
        }
    }

    /// Iterates the chunks of a body.
    public struct AsyncIterator: AsyncIteratorProtocol {
        enum State {
            case bytes(ByteBuffer?)
            case source(any HTTPBodySource)
            case sequence(@Sendable () async throws -> ByteBuffer?)
        }
        var state: State

        public mutating func next() async throws -> ByteBuffer? {
            switch state {
            case .bytes(let buffer):
                state = .bytes(nil)
                return buffer
            case .source(let source):
                return try await source.next()
            case .sequence(let next):
                return try await next()
            }
        }
    }
}

/// Type-erases an async sequence of buffers.
package final class SequenceBox: Sendable {
    private let make: @Sendable () -> (@Sendable () async throws -> ByteBuffer?)

    init<Chunks: AsyncSequence & Sendable>(_ chunks: Chunks) where Chunks.Element == ByteBuffer {
        make = {
            let iterator = IteratorBox(chunks.makeAsyncIterator())
            return { try await iterator.next() }
        }
    }

    func makeNext() -> @Sendable () async throws -> ByteBuffer? { make() }
}

/// Holds an iterator that is used by one task at a time (the transport's body writer).
private final class IteratorBox<Iterator: AsyncIteratorProtocol>: @unchecked Sendable where Iterator.Element == ByteBuffer {
    private var iterator: Iterator
    init(_ iterator: Iterator) { self.iterator = iterator }
    func next() async throws -> ByteBuffer? {
        var copy = iterator
        defer { iterator = copy }
        return try await copy.next()
    }
}

extension HTTPBody {
    /// Whether the body is bytes in memory (or empty), so that it can be sent again.
    package var isReplayable: Bool {
        switch storage {
        case .bytes: return true
        case .source, .sequence: return false
        }
    }
}

extension HTTPRequest {
    /// The request as both transports send it: scheme `https` when none is set, and a
    /// `Content-Length` from the body's known length (not for an empty GET).
    package func preparedForSending(body: HTTPBody?) -> HTTPRequest {
        var request = self
        if request.scheme == nil { request.scheme = "https" }
        if let length = body?.length, request.headerFields[.contentLength] == nil, request.method != .get || length > 0 {
            request.headerFields[.contentLength] = String(length)
        }
        return request
    }

    /// Host and port of an https request's authority (`host`, `host:port`, `[v6]`,
    /// `[v6]:port`; 443 when none is given), or an error naming what is wrong.
    /// - Parameter transportName: how errors name the transport ("HTTP/3", "HTTP/2").
    package func httpsOrigin(transportName: String) throws(HTTPError) -> (host: String, port: Int) {
        if let scheme, scheme.lowercased() != "https" {
            throw .invalidRequest("\(transportName) needs an https URL, not \(scheme)")
        }
        guard let authority, !authority.isEmpty else {
            throw .invalidRequest("the request has no authority (host)")
        }
        var host = authority
        var portText: Substring?
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { throw .invalidRequest("bad IPv6 authority \(authority)") }
            host = String(authority[authority.index(after: authority.startIndex)..<close])
            let rest = authority[authority.index(after: close)...]
            if rest.hasPrefix(":") {
                portText = rest.dropFirst()
            } else if !rest.isEmpty {
                throw .invalidRequest("bad authority \(authority)")
            }
        } else if let colon = authority.lastIndex(of: ":") {
            host = String(authority[..<colon])
            portText = authority[authority.index(after: colon)...]
        }
        var port = 443
        if let portText {
            guard let value = Int(portText), (1...65535).contains(value) else { throw .invalidRequest("bad port in \(authority)") }
            port = value
        }
        guard !host.isEmpty else { throw .invalidRequest("empty host in \(authority)") }
        return (host, port)
    }
}
