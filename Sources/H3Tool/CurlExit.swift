import HTTPAPI
import QUIC

/// An error that ends the `h3` process with curl's exit code for the situation and one line
/// on stderr.
public struct ToolError: Error, CustomStringConvertible, Sendable {
    /// The process exit code (curl's numbering where curl has one).
    public let code: Int32
    /// The message printed after `h3: `.
    public let message: String

    /// Creates an error with an exit code and a one-line message.
    public init(_ code: Int32, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }

    // curl's exit codes (curl(1), "EXIT CODES") that h3 produces.
    static let unsupportedProtocol: Int32 = 1
    static let usage: Int32 = 2
    static let malformedURL: Int32 = 3
    static let couldNotResolveHost: Int32 = 6
    static let couldNotConnect: Int32 = 7
    static let httpError: Int32 = 22
    static let writeError: Int32 = 23
    static let readError: Int32 = 26
    static let timeout: Int32 = 28
    static let tlsHandshake: Int32 = 35
    static let tooManyRedirects: Int32 = 47
    static let recvError: Int32 = 56
    static let clientCertificate: Int32 = 58
    static let peerVerification: Int32 = 60
    static let caFile: Int32 = 77
    static let http3: Int32 = 95

    /// Maps an error from a transfer to curl's exit code and a message.
    static func from(_ error: any Error) -> ToolError {
        if let error = error as? ToolError { return error }
        if let error = error as? HTTPError {
            switch error {
            case .unresolvableHost(let host): return ToolError(couldNotResolveHost, "could not resolve host: \(host)")
            case .connectionRefused(let why): return ToolError(couldNotConnect, "failed to connect: \(why)")
            case .connectTimeout: return ToolError(timeout, "connection timed out (QUIC handshake did not finish)")
            case .requestTimeout: return ToolError(timeout, "operation timed out")
            case .tlsHandshakeFailed(let why): return ToolError(tlsHandshake, "TLS handshake failed: \(why)")
            case .certificateVerificationFailed(let why):
                return ToolError(peerVerification, "server certificate verification failed: \(why)")
            case .invalidRequest(let why): return ToolError(malformedURL, why)
            case .streamReset, .protocolError, .requestRejected, .headerSectionTooLarge:
                return ToolError(http3, "HTTP/3 error: \(error)")
            case .connectionClosed, .bodyTooLarge, .bodyAlreadyConsumed, .responseHeadAlreadySent, .responseFinished:
                return ToolError(recvError, "\(error)")
            }
        }
        if let error = error as? QUICError {
            switch error {
            case .unresolvableHost(let host): return ToolError(couldNotResolveHost, "could not resolve host: \(host)")
            case .connectionRefused(let why): return ToolError(couldNotConnect, "failed to connect: \(why)")
            case .handshakeTimeout: return ToolError(timeout, "connection timed out")
            case .certificateVerificationFailed(let why):
                return ToolError(peerVerification, "server certificate verification failed: \(why)")
            case .tlsHandshakeFailed(_, let why): return ToolError(tlsHandshake, "TLS handshake failed: \(why)")
            case .fileError(let why): return ToolError(caFile, why)
            default: return ToolError(recvError, error.description)
            }
        }
        if error is CancellationError { return ToolError(timeout, "operation timed out") }
        return ToolError(recvError, "\(error)")
    }
}
