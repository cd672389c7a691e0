import HTTP2
import HTTPAPI

/// What the choosing client did, in order: connection attempts and their outcomes, Alt-Svc
/// learned, alternatives marked broken, responses. Tests and logs read these instead of
/// timing the client.
public enum HTTPClientEvent: Sendable, Hashable, CustomStringConvertible {
    /// A QUIC (HTTP/3) connection attempt to `endpoint` (`host:port`) started.
    case quicStarted(endpoint: String)
    /// The QUIC attempt completed its handshake.
    case quicConnected(endpoint: String)
    /// The QUIC attempt failed (refused, handshake timeout, TLS failure, ...).
    case quicFailed(endpoint: String, reason: String)
    /// A TCP (HTTP/2) connection attempt to the origin started.
    case tcpStarted(endpoint: String)
    /// The TCP + TLS connection is up.
    case tcpConnected(endpoint: String)
    /// The TCP attempt failed.
    case tcpFailed(endpoint: String, reason: String)
    /// A response from `origin` carried an Alt-Svc field that was applied.
    case altSvcReceived(origin: String, value: String)
    /// An Alt-Svc field was malformed and ignored.
    case altSvcIgnored(origin: String, reason: String)
    /// An HTTP/3 endpoint is not tried again for `seconds`.
    case alternativeMarkedBroken(endpoint: String, seconds: Double)
    /// A request that failed over HTTP/3 before any response is being sent over HTTP/2.
    case fellBack(origin: String, reason: String)
    /// A response head arrived from `origin` over `protocolVersion`.
    case responseReceived(origin: String, protocolVersion: HTTPProtocolVersion)

    public var description: String {
        switch self {
        case .quicStarted(let endpoint): return "quicStarted \(endpoint)"
        case .quicConnected(let endpoint): return "quicConnected \(endpoint)"
        case .quicFailed(let endpoint, let reason): return "quicFailed \(endpoint): \(reason)"
        case .tcpStarted(let endpoint): return "tcpStarted \(endpoint)"
        case .tcpConnected(let endpoint): return "tcpConnected \(endpoint)"
        case .tcpFailed(let endpoint, let reason): return "tcpFailed \(endpoint): \(reason)"
        case .altSvcReceived(let origin, let value): return "altSvcReceived \(origin): \(value)"
        case .altSvcIgnored(let origin, let reason): return "altSvcIgnored \(origin): \(reason)"
        case .alternativeMarkedBroken(let endpoint, let seconds): return "alternativeMarkedBroken \(endpoint) for \(seconds) s"
        case .fellBack(let origin, let reason): return "fellBack \(origin): \(reason)"
        case .responseReceived(let origin, let version): return "responseReceived \(origin) over HTTP/\(version.rawValue)"
        }
    }
}

/// The TCP side of an ``HTTPClient``: an HTTP/2 round tripper that can also open a connection
/// ahead of a request, so that the client can race it against QUIC.
public protocol PreconnectingRoundTripper: HTTPRoundTripper {
    /// Opens (or finds) a pooled connection to `host:port`, so that the next request there
    /// goes out at once.
    func prepareConnection(host: String, port: Int) async throws
    /// Closes every connection.
    func shutdown() async
}

extension HTTP2Transport: PreconnectingRoundTripper {}
