import HTTPAPI
import HTTPTypes
import NIOCore
import NIOHTTP2

/// How far a request got on one connection before that attempt failed, as far as the
/// server's processing goes. ``HTTP2RetryPolicy`` decides from it whether to send again.
enum HTTP2AttemptFate: Equatable, Sendable {
    /// The request never left this client: the connection was going away (GOAWAY, closed)
    /// before a stream could be opened, or NIOHTTP2 refused its HEADERS (created after
    /// GOAWAY, connection closing). Nothing of it reached the server; its body was not touched.
    case notSent
    /// The server did not process it because the connection was going away: its stream was
    /// above a GOAWAY's last-stream-ID, or refused (REFUSED_STREAM) after a GOAWAY (a server
    /// that has sent GOAWAY refuses streams that cross it on the wire; RFC 9113, section 8.7).
    case goingAway
    /// The server refused it (REFUSED_STREAM) on a connection it had not asked to leave: it
    /// did not process it, but declined to (overload, limits).
    case refused
    /// The connection ended after the request left, with no word from the server on whether it
    /// processed it (only an idempotent request may go again).
    case unknown
    /// An answer from the server (a reset with an error code, a protocol error), or the caller
    /// gave up: never sent again.
    case final
}

/// The failure of one attempt of a request on one connection: what became of it, and the error
/// the caller sees if it is not sent again.
struct HTTP2AttemptFailure: Error, Sendable {
    let fate: HTTP2AttemptFate
    let underlying: any Error
}

/// Classifies failed attempts and keeps one request's retry budget. A value type with no I/O:
/// the connection reports facts, this decides.
struct HTTP2RetryPolicy: Sendable {
    /// Retries after the server refused the request (``HTTP2AttemptFate/refused``), or after
    /// its connection ended before an idempotent request was answered (``HTTP2AttemptFate/unknown``).
    let maxRejectedRetries: Int
    /// Retries of requests that never left, or that the server turned away only because the
    /// connection was going away (GOAWAY): these are what a server's GOAWAY costs, and a
    /// long-lived client sees many, so they do not use the rejection budget. They are bounded
    /// too, so that a server that sends GOAWAY on every new connection at once cannot keep a
    /// request looping.
    let maxGoingAwayRetries: Int
    private(set) var rejectedRetries = 0
    private(set) var goingAwayRetries = 0

    init(maxRejectedRetries: Int, maxGoingAwayRetries: Int = 32) {
        self.maxRejectedRetries = max(0, maxRejectedRetries)
        self.maxGoingAwayRetries = max(0, maxGoingAwayRetries)
    }

    /// What became of an attempt that failed with `error`.
    /// - Parameters:
    ///   - streamID: the request stream's ID, `nil` if it never got one.
    ///   - headersWritten: whether the request's HEADERS frame was written out.
    ///   - goAwayLastStreamID: the lowest last-stream-ID of the GOAWAY frames the connection
    ///     received before the failure was seen, `nil` if none.
    static func fate(of error: any Error, streamID: Int?, headersWritten: Bool,
                     goAwayLastStreamID: Int?) -> HTTP2AttemptFate {
        let error = unwrapped(error)
        if error is CancellationError { return .final }
        if case HTTPError.requestTimeout? = error as? HTTPError { return .final }
        if !headersWritten {
            // NIOHTTP2 refused the HEADERS before they reached the wire.
            if error is NIOHTTP2Errors.CreatedStreamAfterGoaway || error is NIOHTTP2Errors.IOOnClosedConnection {
                return .notSent
            }
            if streamID == nil { return .notSent }
        }
        if let goAwayLastStreamID, let streamID, streamID > goAwayLastStreamID { return .goingAway }
        if isRefusal(error) { return goAwayLastStreamID == nil ? .refused : .goingAway }
        if isConnectionEnd(error) { return .unknown }
        return .final
    }

    /// Whether to send the request again after an attempt with `fate`; counts the retry.
    /// - Parameters:
    ///   - replayable: its body (if any) can be sent again (bytes in memory).
    ///   - bodyStarted: reading its body began (a streamed body cannot be read again).
    ///   - idempotent: its method is idempotent (RFC 9110, section 9.2.2).
    mutating func shouldRetry(_ fate: HTTP2AttemptFate, replayable: Bool, bodyStarted: Bool, idempotent: Bool) -> Bool {
        let bodyAvailable = replayable || !bodyStarted
        switch fate {
        case .notSent, .goingAway:
            guard bodyAvailable, goingAwayRetries < maxGoingAwayRetries else { return false }
            goingAwayRetries += 1
            return true
        case .refused:
            guard bodyAvailable, rejectedRetries < maxRejectedRetries else { return false }
            rejectedRetries += 1
            return true
        case .unknown:
            guard idempotent, bodyAvailable, rejectedRetries < maxRejectedRetries else { return false }
            rejectedRetries += 1
            return true
        case .final:
            return false
        }
    }

    /// The error the caller sees when an attempt with `fate` is not sent again.
    static func finalError(_ fate: HTTP2AttemptFate, underlying: any Error, bodyStarted: Bool, replayable: Bool) -> any Error {
        switch fate {
        case .notSent, .goingAway, .refused:
            if !replayable && bodyStarted {
                return HTTPError.connectionClosed("the server did not process the request, and its streamed body "
                                                  + "cannot be sent again (GOAWAY or REFUSED_STREAM)")
            }
            return HTTPError.requestRejected
        case .unknown, .final:
            return HTTP2Errors.map(underlying)
        }
    }

    /// Whether `method` is idempotent (RFC 9110, section 9.2.2).
    static func isIdempotent(_ method: HTTPRequest.Method) -> Bool {
        switch method {
        case .get, .head, .options, .trace, .put, .delete: return true
        default: return false
        }
    }

    /// The error inside NIOHTTP2's stream-error wrapper.
    private static func unwrapped(_ error: any Error) -> any Error {
        if let streamError = error as? NIOHTTP2Errors.StreamError { return streamError.baseError }
        return error
    }

    /// REFUSED_STREAM from the server.
    private static func isRefusal(_ error: any Error) -> Bool {
        if let closed = error as? NIOHTTP2Errors.StreamClosed { return closed.errorCode == .refusedStream }
        if case HTTPError.streamReset(let code)? = error as? HTTPError { return code == HTTP3ErrorCode.requestRejected }
        return false
    }

    /// The connection or stream ended without an answer (closed, reset by the network).
    private static func isConnectionEnd(_ error: any Error) -> Bool {
        switch error {
        case let error as ChannelError:
            switch error {
            case .ioOnClosedChannel, .alreadyClosed, .eof, .outputClosed, .inputClosed: return true
            default: return false
            }
        case HTTPError.connectionClosed:
            return true
        case let closed as NIOHTTP2Errors.StreamClosed:
            // The connection's end closes its streams with CANCEL.
            return closed.errorCode == .cancel
        case is IOError, is NIOHTTP2Errors.IOOnClosedConnection:
            return true
        default:
            return false
        }
    }
}
