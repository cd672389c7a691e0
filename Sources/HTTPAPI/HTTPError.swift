/// An error from an HTTP transport (HTTP/3 or HTTP/2), independent of the protocol underneath.
/// ``description`` is a sentence a user understands.
public enum HTTPError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Nothing listens at the server's address, or the server refused the connection.
    case connectionRefused(String)
    /// The server's host name did not resolve to an address.
    case unresolvableHost(String)
    /// Connecting (including the TLS handshake) took longer than allowed.
    case connectTimeout
    /// The request took longer than its timeout.
    case requestTimeout
    /// The TLS handshake failed.
    case tlsHandshakeFailed(String)
    /// The server's certificate was not accepted ("hostname mismatch", ...).
    case certificateVerificationFailed(String)
    /// The connection closed before the exchange completed.
    case connectionClosed(String)
    /// The peer reset the stream with this application error code: an HTTP/3 code
    /// (``HTTP3ErrorCode``); HTTP/2's RST_STREAM codes are mapped to their HTTP/3 equivalents
    /// (RFC 9114, appendix A.4: CANCEL is H3_REQUEST_CANCELLED, INTERNAL_ERROR is H3_INTERNAL_ERROR, ...),
    /// so one check serves both transports.
    case streamReset(code: UInt64)
    /// The server did not process the request (GOAWAY or H3_REQUEST_REJECTED): it is safe to retry.
    case requestRejected
    /// A header section was larger than the limit.
    case headerSectionTooLarge(limit: Int)
    /// A body was larger than the caller's limit.
    case bodyTooLarge(limit: Int)
    /// The peer broke the HTTP protocol.
    case protocolError(String)
    /// The request cannot be sent as given (a missing authority, an unsupported scheme, ...).
    case invalidRequest(String)
    /// The body was already consumed (streamed bodies can be read once).
    case bodyAlreadyConsumed
    /// The response head was already sent; this call is not possible any more.
    case responseHeadAlreadySent
    /// A write after the response was finished.
    case responseFinished

    public var description: String {
        switch self {
        case .connectionRefused(let why): return "connection refused: \(why)"
        case .unresolvableHost(let host): return "could not resolve host: \(host)"
        case .connectTimeout: return "connection timed out"
        case .requestTimeout: return "request timed out"
        case .tlsHandshakeFailed(let why): return "TLS handshake failed: \(why)"
        case .certificateVerificationFailed(let why): return "certificate verify failed: \(why)"
        case .connectionClosed(let why): return "connection closed: \(why)"
        case .streamReset(let code): return "stream reset by peer with error \(HTTP3ErrorCode.name(code))"
        case .requestRejected: return "the server did not process the request (safe to retry)"
        case .headerSectionTooLarge(let limit): return "header section larger than \(limit) bytes"
        case .bodyTooLarge(let limit): return "body larger than \(limit) bytes"
        case .protocolError(let why): return "protocol error: \(why)"
        case .invalidRequest(let why): return "invalid request: \(why)"
        case .bodyAlreadyConsumed: return "the body was already consumed"
        case .responseHeadAlreadySent: return "the response head was already sent"
        case .responseFinished: return "the response is already finished"
        }
    }
}

/// HTTP/3 error codes (RFC 9114, section 8.1).
public enum HTTP3ErrorCode {
    public static let noError: UInt64 = 0x100
    public static let generalProtocolError: UInt64 = 0x101
    public static let internalError: UInt64 = 0x102
    public static let streamCreationError: UInt64 = 0x103
    public static let closedCriticalStream: UInt64 = 0x104
    public static let frameUnexpected: UInt64 = 0x105
    public static let frameError: UInt64 = 0x106
    public static let excessiveLoad: UInt64 = 0x107
    public static let idError: UInt64 = 0x108
    public static let settingsError: UInt64 = 0x109
    public static let missingSettings: UInt64 = 0x10a
    public static let requestRejected: UInt64 = 0x10b
    public static let requestCancelled: UInt64 = 0x10c
    public static let requestIncomplete: UInt64 = 0x10d
    public static let messageError: UInt64 = 0x10e
    public static let connectError: UInt64 = 0x10f
    public static let versionFallback: UInt64 = 0x110

    /// The RFC name of a code, e.g. `H3_REQUEST_CANCELLED (0x10c)`.
    public static func name(_ code: UInt64) -> String {
        let names = ["H3_NO_ERROR", "H3_GENERAL_PROTOCOL_ERROR", "H3_INTERNAL_ERROR", "H3_STREAM_CREATION_ERROR",
                     "H3_CLOSED_CRITICAL_STREAM", "H3_FRAME_UNEXPECTED", "H3_FRAME_ERROR", "H3_EXCESSIVE_LOAD",
                     "H3_ID_ERROR", "H3_SETTINGS_ERROR", "H3_MISSING_SETTINGS", "H3_REQUEST_REJECTED",
                     "H3_REQUEST_CANCELLED", "H3_REQUEST_INCOMPLETE", "H3_MESSAGE_ERROR", "H3_CONNECT_ERROR",
                     "H3_VERSION_FALLBACK"]
        let hex = "0x" + String(code, radix: 16)
        if code >= 0x100 && code < 0x100 + UInt64(names.count) { return "\(names[Int(code - 0x100)]) (\(hex))" }
        return hex
    }
}
