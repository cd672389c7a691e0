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
    /// HTTP/1.1 (an HTTP/2 server's fallback for clients that do not offer h2).
    case http1_1 = "1.1"
    /// HTTP/2 over TCP + TLS.
    case http2 = "2"
    /// HTTP/3 over QUIC.
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
    /// The server's address as `IP:port` (`[IPv6]:port`), if known.
    public var remoteAddress: String?
    /// Whether an existing connection carried the request.
    public var connectionReused: Bool
    /// Request bytes sent in TLS early data (0-RTT).
    public var earlyDataBytes: Int
    /// Phase timings.
    public var timings: HTTPTimings
    /// The connection that carried the exchange, when the transport can tell.
    public var connection: HTTPConnectionInfo?

    /// Creates metadata (transports do this).
    public init(protocolVersion: HTTPProtocolVersion, remoteAddress: String? = nil, connectionReused: Bool = false,
                earlyDataBytes: Int = 0, timings: HTTPTimings = HTTPTimings(), connection: HTTPConnectionInfo? = nil) {
        self.protocolVersion = protocolVersion
        self.remoteAddress = remoteAddress
        self.connectionReused = connectionReused
        self.earlyDataBytes = earlyDataBytes
        self.timings = timings
        self.connection = connection
    }
}

/// Facts about a connection, for logs and `curl -v`-style output.
public struct HTTPConnectionInfo: Sendable, Hashable {
    /// The transport underneath: "QUIC v1" for HTTP/3, "tcp" for HTTP/2 and HTTP/1.1.
    public var transport: String
    /// The local address as `IP:port`, if known.
    public var localAddress: String?
    /// The peer's address as `IP:port`, if known.
    public var remoteAddress: String?
    /// The negotiated TLS parameters in one line (version, key exchange, signature, cipher).
    public var tlsParameters: String?
    /// The ALPN protocol the handshake selected.
    public var applicationProtocol: String?
    /// Whether the TLS session was resumed from a ticket.
    public var sessionResumed: Bool
    /// The subject of the peer's certificate (RFC 4514 text), if it sent one.
    public var peerCertificateSubject: String?
    /// The issuer of the peer's certificate.
    public var peerCertificateIssuer: String?
    /// When the peer's certificate expires, in seconds since 1970.
    public var peerCertificateNotAfter: Int?

    /// Creates connection facts (transports do this).
    public init(transport: String, localAddress: String? = nil, remoteAddress: String? = nil,
                tlsParameters: String? = nil, applicationProtocol: String? = nil, sessionResumed: Bool = false,
                peerCertificateSubject: String? = nil, peerCertificateIssuer: String? = nil,
                peerCertificateNotAfter: Int? = nil) {
        self.transport = transport
        self.localAddress = localAddress
        self.remoteAddress = remoteAddress
        self.tlsParameters = tlsParameters
        self.applicationProtocol = applicationProtocol
        self.sessionResumed = sessionResumed
        self.peerCertificateSubject = peerCertificateSubject
        self.peerCertificateIssuer = peerCertificateIssuer
        self.peerCertificateNotAfter = peerCertificateNotAfter
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

extension HTTPField.Name {
    /// `Alt-Svc` (RFC 7838). A constant, valid field name: the initializer cannot fail.
    package static let altSvc = HTTPField.Name("alt-svc")!
}
