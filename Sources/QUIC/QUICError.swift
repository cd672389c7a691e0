/// An error from the QUIC layer.
///
/// Every case carries enough to act on (the protocol error code where there is one) and
/// ``description`` gives a sentence a user understands, for example
/// "certificate verify failed: hostname mismatch".
public enum QUICError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Nothing listens at the peer's address (ICMP port unreachable), or the server
    /// refused the connection (CONNECTION_REFUSED, for example over its connection limit).
    case connectionRefused(String)
    /// The host name did not resolve to an address.
    case unresolvableHost(String)
    /// The handshake did not finish within the configured handshake timeout.
    case handshakeTimeout
    /// The connection was idle for longer than the idle timeout and closed silently.
    case idleTimeout
    /// The peer's certificate was not accepted. The string says why
    /// ("hostname mismatch", "certificate signer not trusted", ...).
    case certificateVerificationFailed(String)
    /// The TLS handshake failed (a TLS alert, for example `no_application_protocol`).
    case tlsHandshakeFailed(alert: UInt8, String)
    /// A QUIC transport error closed the connection. `remote` tells which side closed it.
    case transportError(code: UInt64, reason: String, remote: Bool)
    /// The application closed the connection with an error code. `remote` tells which side closed it.
    case applicationClosed(code: UInt64, reason: String, remote: Bool)
    /// The peer sent a stateless reset: it has lost the connection's state.
    case statelessReset
    /// The server's Retry token was rejected (INVALID_TOKEN).
    case invalidToken
    /// The peer reset the stream (RESET_STREAM) with this application error code.
    case streamReset(code: UInt64)
    /// The peer asked us to stop sending on the stream (STOP_SENDING) with this code.
    case streamStopSending(code: UInt64)
    /// The operation is not possible on a stream in this state (for example a write after finish).
    case streamClosed
    /// The server refused the 0-RTT data: the stream was discarded before the handshake
    /// finished. Nothing of it was processed; send it again on a new stream.
    case earlyDataRejected
    /// The connection is closed; the operation cannot be carried out.
    case connectionClosed
    /// A configuration value or argument was not valid.
    case invalidArgument(String)
    /// A file (certificate, key, trust store) could not be loaded.
    case fileError(String)
    /// An error from the underlying libraries that has no better mapping.
    case internalError(String)

    public var description: String {
        switch self {
        case .connectionRefused(let why): return "connection refused: \(why)"
        case .unresolvableHost(let host): return "could not resolve host: \(host)"
        case .handshakeTimeout: return "handshake timed out"
        case .idleTimeout: return "connection closed after idle timeout"
        case .certificateVerificationFailed(let why): return "certificate verify failed: \(why)"
        case .tlsHandshakeFailed(let alert, let why): return "TLS handshake failed (alert \(alert)): \(why)"
        case .transportError(let code, let reason, let remote):
            let name = TransportErrorCode.name(code)
            let by = remote ? "peer" : "local endpoint"
            return "connection closed by \(by) with transport error \(name)" + (reason.isEmpty ? "" : ": \(reason)")
        case .applicationClosed(let code, let reason, let remote):
            let by = remote ? "peer" : "local endpoint"
            return "connection closed by \(by) with application error \(code)" + (reason.isEmpty ? "" : ": \(reason)")
        case .statelessReset: return "connection reset by peer (stateless reset)"
        case .invalidToken: return "server rejected the address validation token (INVALID_TOKEN)"
        case .streamReset(let code): return "stream reset by peer with application error \(code)"
        case .streamStopSending(let code): return "peer stopped reading the stream (STOP_SENDING \(code))"
        case .streamClosed: return "stream is closed for this operation"
        case .earlyDataRejected: return "the server refused the 0-RTT data; send it again"
        case .connectionClosed: return "connection is closed"
        case .invalidArgument(let why): return "invalid argument: \(why)"
        case .fileError(let why): return why
        case .internalError(let why): return "internal error: \(why)"
        }
    }
}

/// QUIC transport error codes (RFC 9000, section 20.1).
public enum TransportErrorCode {
    public static let noError: UInt64 = 0x0
    public static let internalError: UInt64 = 0x1
    public static let connectionRefused: UInt64 = 0x2
    public static let flowControlError: UInt64 = 0x3
    public static let streamLimitError: UInt64 = 0x4
    public static let streamStateError: UInt64 = 0x5
    public static let finalSizeError: UInt64 = 0x6
    public static let frameEncodingError: UInt64 = 0x7
    public static let transportParameterError: UInt64 = 0x8
    public static let connectionIDLimitError: UInt64 = 0x9
    public static let protocolViolation: UInt64 = 0xa
    public static let invalidToken: UInt64 = 0xb
    public static let applicationError: UInt64 = 0xc
    public static let cryptoBufferExceeded: UInt64 = 0xd
    public static let keyUpdateError: UInt64 = 0xe
    public static let aeadLimitReached: UInt64 = 0xf
    public static let noViablePath: UInt64 = 0x10
    /// CRYPTO_ERROR codes are 0x100 + the TLS alert.
    public static let cryptoErrorBase: UInt64 = 0x100

    /// The RFC name of a transport error code, e.g. `PROTOCOL_VIOLATION`.
    public static func name(_ code: UInt64) -> String {
        let names: [UInt64: String] = [
            0x0: "NO_ERROR", 0x1: "INTERNAL_ERROR", 0x2: "CONNECTION_REFUSED", 0x3: "FLOW_CONTROL_ERROR",
            0x4: "STREAM_LIMIT_ERROR", 0x5: "STREAM_STATE_ERROR", 0x6: "FINAL_SIZE_ERROR",
            0x7: "FRAME_ENCODING_ERROR", 0x8: "TRANSPORT_PARAMETER_ERROR", 0x9: "CONNECTION_ID_LIMIT_ERROR",
            0xa: "PROTOCOL_VIOLATION", 0xb: "INVALID_TOKEN", 0xc: "APPLICATION_ERROR",
            0xd: "CRYPTO_BUFFER_EXCEEDED", 0xe: "KEY_UPDATE_ERROR", 0xf: "AEAD_LIMIT_REACHED",
            0x10: "NO_VIABLE_PATH",
        ]
        if let name = names[code] { return name }
        if code >= 0x100 && code <= 0x1ff {
            let alert = UInt8(code - 0x100)
            return "CRYPTO_ERROR(\(TLSAlert.name(alert)))"
        }
        return "0x" + String(code, radix: 16)
    }
}

/// TLS alert names (RFC 8446, section 6).
enum TLSAlert {
    static func name(_ alert: UInt8) -> String {
        switch alert {
        case 10: return "unexpected_message"
        case 20: return "bad_record_mac"
        case 40: return "handshake_failure"
        case 42: return "bad_certificate"
        case 43: return "unsupported_certificate"
        case 44: return "certificate_revoked"
        case 45: return "certificate_expired"
        case 46: return "certificate_unknown"
        case 47: return "illegal_parameter"
        case 48: return "unknown_ca"
        case 50: return "decode_error"
        case 51: return "decrypt_error"
        case 70: return "protocol_version"
        case 80: return "internal_error"
        case 109: return "missing_extension"
        case 110: return "unsupported_extension"
        case 112: return "unrecognized_name"
        case 116: return "certificate_required"
        case 120: return "no_application_protocol"
        default: return "alert \(alert)"
        }
    }
}
