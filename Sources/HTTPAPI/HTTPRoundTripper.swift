import HTTPTypes
import NIOCore

/// Sends one HTTP request and returns its response: the client side of every transport
/// (Go's `http.RoundTripper` idea, with swift-http-types).
///
/// Implementations pool connections; a caller just sends requests. Cancelling the calling
/// task cancels the request on the wire.
public protocol HTTPRoundTripper: Sendable {
    /// Sends `request` with an optional `body` and returns the response head, with the body
    /// streaming behind it.
    func roundTrip(_ request: HTTPRequest, body: HTTPBody?, options: HTTPRequestOptions) async throws -> HTTPClientResponse
}

extension HTTPRoundTripper {
    /// Sends a request with default options.
    public func roundTrip(_ request: HTTPRequest, body: HTTPBody? = nil) async throws -> HTTPClientResponse {
        try await roundTrip(request, body: body, options: HTTPRequestOptions())
    }
}

/// Per-request settings. Every value has a default.
public struct HTTPRequestOptions: Sendable, Hashable {
    /// The longest the request may take until the response head arrives; `nil` for no limit.
    public var timeout: Duration?
    /// The largest response header section accepted.
    public var maxResponseHeaderSize: Int
    /// Whether this request may be sent in TLS early data (0-RTT). Off by default: only
    /// idempotent requests should ever be replayable.
    public var allowEarlyData: Bool

    /// Creates options.
    public init(timeout: Duration? = nil, maxResponseHeaderSize: Int = 64 << 10, allowEarlyData: Bool = false) {
        self.timeout = timeout
        self.maxResponseHeaderSize = maxResponseHeaderSize
        self.allowEarlyData = allowEarlyData
    }
}

/// The HTTP protocol version an exchange used.
public enum HTTPProtocolVersion: String, Sendable, Hashable {
    case http2 = "2"
    case http3 = "3"
}

/// When the phases of an exchange happened, measured from the start of `roundTrip`.
public struct HTTPTimings: Sendable, Hashable {
    /// Connection set-up done (QUIC: handshake done), or zero when a pooled connection was reused.
    public var connected: Duration = .zero
    /// TLS handshake done (equal to ``connected`` for QUIC).
    public var tlsHandshakeDone: Duration = .zero
    /// The request head was handed to the transport.
    public var requestSent: Duration = .zero
    /// The response head arrived.
    public var firstResponseByte: Duration = .zero

    /// All phases at zero.
    public init() {}
}

/// Facts about an exchange that do not depend on the protocol underneath.
public struct HTTPResponseMetadata: Sendable, Hashable {
    /// The protocol version used.
    public var protocolVersion: HTTPProtocolVersion
    /// The server's address (IP and port), if known.
    public var remoteAddress: String?
    /// Whether an existing connection carried the request.
    public var connectionReused: Bool
    /// Request bytes sent in TLS early data (0-RTT).
    public var earlyDataBytes: Int
    /// Phase timings.
    public var timings: HTTPTimings

    /// Creates metadata (transports do this).
    public init(protocolVersion: HTTPProtocolVersion, remoteAddress: String? = nil, connectionReused: Bool = false,
                earlyDataBytes: Int = 0, timings: HTTPTimings = HTTPTimings()) {
        self.protocolVersion = protocolVersion
        self.remoteAddress = remoteAddress
        self.connectionReused = connectionReused
        self.earlyDataBytes = earlyDataBytes
        self.timings = timings
    }
}

/// A response: its head, its streaming body, and transport-neutral metadata.
public struct HTTPClientResponse: Sendable {
    /// Status and header fields.
    public var head: HTTPResponse
    /// The body; read it (or ``HTTPBody/discard()`` it) to release the stream.
    public var body: HTTPBody
    /// How the exchange went.
    public var metadata: HTTPResponseMetadata

    /// Creates a response (transports do this; test doubles of a round tripper may too).
    public init(head: HTTPResponse, body: HTTPBody, metadata: HTTPResponseMetadata) {
        self.head = head
        self.body = body
        self.metadata = metadata
    }
}
