import HTTPTypes
import NIOCore

/// Serves HTTP requests, whatever the transport: one handler type serves HTTP/3 over QUIC and
/// HTTP/2 (or HTTP/1.1) over TCP.
///
/// A handler that throws before sending the response head yields a 500; after the head, the
/// stream is reset (HTTP/1.1: the connection is closed). Either way the server keeps serving
/// other requests.
public protocol HTTPHandler: Sendable {
    /// Handles one request: read `body` as needed and answer through `response`.
    func handle(_ request: HTTPRequest, body: HTTPBody, context: HTTPRequestContext,
                response: HTTPResponseWriter) async throws
}

/// A handler made from a closure.
public struct ClosureHTTPHandler: HTTPHandler {
    private let body: @Sendable (HTTPRequest, HTTPBody, HTTPRequestContext, HTTPResponseWriter) async throws -> Void

    /// Wraps a closure as a handler.
    public init(_ body: @escaping @Sendable (HTTPRequest, HTTPBody, HTTPRequestContext, HTTPResponseWriter) async throws -> Void) {
        self.body = body
    }

    public func handle(_ request: HTTPRequest, body: HTTPBody, context: HTTPRequestContext,
                       response: HTTPResponseWriter) async throws {
        try await self.body(request, body, context, response)
    }
}

/// What a handler knows about the connection a request came on.
public struct HTTPRequestContext: Sendable {
    /// The protocol version.
    public var protocolVersion: HTTPProtocolVersion
    /// The client's address (IP and port).
    public var remoteAddress: String?
    /// The server's address the request arrived on.
    public var localAddress: String?
    /// The server name the client asked for in TLS SNI.
    public var tlsServerName: String?
    /// The client's certificate (DER), when mutual TLS is on and the client sent one.
    public var clientCertificate: [UInt8]?
    /// Whether the request arrived in TLS early data (0-RTT) and may be a replay.
    public var isEarlyData: Bool

    /// Creates a context (transports do this; tests of handlers may too).
    public init(protocolVersion: HTTPProtocolVersion, remoteAddress: String? = nil, localAddress: String? = nil,
                tlsServerName: String? = nil, clientCertificate: [UInt8]? = nil, isEarlyData: Bool = false) {
        self.protocolVersion = protocolVersion
        self.remoteAddress = remoteAddress
        self.localAddress = localAddress
        self.tlsServerName = tlsServerName
        self.clientCertificate = clientCertificate
        self.isEarlyData = isEarlyData
    }
}

/// What a transport does with a handler's response.
package protocol HTTPResponseSink: Sendable {
    func writeHead(_ head: HTTPResponse) async throws
    func writeBody(_ buffer: ByteBuffer) async throws
    func finish(trailers: HTTPFields?) async throws
    /// A whole response at once; a transport may send it in one hand-off to its event loop.
    func respond(_ head: HTTPResponse, body: ByteBuffer, trailers: HTTPFields?) async throws
}

extension HTTPResponseSink {
    package func respond(_ head: HTTPResponse, body: ByteBuffer, trailers: HTTPFields?) async throws {
        try await respondInSteps(head, body: body, trailers: trailers)
    }

    /// A whole response through ``writeHead``, ``writeBody`` and ``finish``: the default, and the
    /// way a transport's one-step ``respond`` falls back to when it cannot take the response whole.
    package func respondInSteps(_ head: HTTPResponse, body: ByteBuffer, trailers: HTTPFields?) async throws {
        try await writeHead(head)
        if body.readableBytes > 0 { try await writeBody(body) }
        try await finish(trailers: trailers)
    }
}

/// Writes a response: the head, then body chunks (each write waits while the peer is slow),
/// then optional trailers.
public struct HTTPResponseWriter: Sendable {
    let sink: any HTTPResponseSink

    package init(sink: any HTTPResponseSink) {
        self.sink = sink
    }

    /// Sends the status and header fields. Call once, before any body.
    public func writeHead(_ head: HTTPResponse) async throws {
        try await sink.writeHead(head)
    }

    /// Sends body bytes; suspends while too many are unacknowledged.
    public func write(_ buffer: ByteBuffer) async throws {
        try await sink.writeBody(buffer)
    }

    /// Sends body bytes.
    public func write(_ bytes: some Sequence<UInt8>) async throws {
        try await sink.writeBody(ByteBuffer(bytes: bytes))
    }

    /// Ends the response, with trailers if given.
    public func finish(trailers: HTTPFields? = nil) async throws {
        try await sink.finish(trailers: trailers)
    }

    /// Sends a whole response: head, body and optional trailers.
    public func respond(_ head: HTTPResponse, body: ByteBuffer = ByteBuffer(), trailers: HTTPFields? = nil) async throws {
        try await sink.respond(head, body: body, trailers: trailers)
    }
}
