@testable import HTTP2
import HTTPAPI
import HTTPTypes
import NIOCore
import NIOHTTP2
import Testing

/// The HTTP/2 client's retry decisions, without I/O: what became of a failed attempt, and
/// whether it goes again.
@Suite("HTTP/2 retry policy: which failed attempts are sent again")
struct HTTP2RetryPolicyTests {
    typealias Policy = HTTP2RetryPolicy

    /// `shouldRetry` as a function (`#expect` takes no mutating call).
    func retry(_ policy: inout Policy, _ fate: HTTP2AttemptFate, replayable: Bool, bodyStarted: Bool,
               idempotent: Bool) -> Bool {
        policy.shouldRetry(fate, replayable: replayable, bodyStarted: bodyStarted, idempotent: idempotent)
    }

    @Test("a request that never left is not sent; one above GOAWAY's last-stream-ID or refused after GOAWAY was not processed")
    func fates() {
        // Created after GOAWAY, or written on a connection NIOHTTP2 considers closed: never sent.
        #expect(Policy.fate(of: NIOHTTP2Errors.createdStreamAfterGoaway(), streamID: 5, headersWritten: false,
                            goAwayLastStreamID: .max) == .notSent)
        #expect(Policy.fate(of: NIOHTTP2Errors.ioOnClosedConnection(), streamID: 7, headersWritten: false,
                            goAwayLastStreamID: .max) == .notSent)
        // The connection closed before the stream got an ID.
        #expect(Policy.fate(of: ChannelError.ioOnClosedChannel, streamID: nil, headersWritten: false,
                            goAwayLastStreamID: nil) == .notSent)
        // Above the last-stream-ID: NIOHTTP2 closes such streams with CANCEL.
        let cancelled = NIOHTTP2Errors.streamClosed(streamID: HTTP2StreamID(9), errorCode: .cancel)
        #expect(Policy.fate(of: cancelled, streamID: 9, headersWritten: true, goAwayLastStreamID: 7) == .goingAway)
        // At or below it the server may have processed it: only the connection's end, no verdict.
        #expect(Policy.fate(of: cancelled, streamID: 7, headersWritten: true, goAwayLastStreamID: 7) == .unknown)
        // REFUSED_STREAM: after GOAWAY it is the server draining; without one, a refusal.
        let refused = NIOHTTP2Errors.streamClosed(streamID: HTTP2StreamID(3), errorCode: .refusedStream)
        #expect(Policy.fate(of: refused, streamID: 3, headersWritten: true, goAwayLastStreamID: .max) == .goingAway)
        #expect(Policy.fate(of: refused, streamID: 3, headersWritten: true, goAwayLastStreamID: nil) == .refused)
        // An answer (a reset with an error code), a timeout or cancellation: final.
        let reset = NIOHTTP2Errors.streamClosed(streamID: HTTP2StreamID(3), errorCode: .internalError)
        #expect(Policy.fate(of: reset, streamID: 3, headersWritten: true, goAwayLastStreamID: nil) == .final)
        #expect(Policy.fate(of: CancellationError(), streamID: nil, headersWritten: false, goAwayLastStreamID: nil) == .final)
        #expect(Policy.fate(of: HTTPError.requestTimeout, streamID: 3, headersWritten: true, goAwayLastStreamID: 1) == .final)
        // Sent, then the connection closed with no GOAWAY: unknown.
        #expect(Policy.fate(of: HTTPError.connectionClosed("gone"), streamID: 3, headersWritten: true,
                            goAwayLastStreamID: nil) == .unknown)
    }

    @Test("GOAWAY retries do not use the rejection budget, which is per request; both are bounded")
    func budgets() {
        var policy = Policy(maxRejectedRetries: 2, maxGoingAwayRetries: 5)
        for _ in 0..<5 {
            #expect(retry(&policy, .goingAway, replayable: true, bodyStarted: true, idempotent: false))
        }
        #expect(!retry(&policy, .notSent, replayable: true, bodyStarted: false, idempotent: true),
                "a request cannot loop for ever on connections that go away at once")
        #expect(policy.rejectedRetries == 0, "GOAWAY retries left the rejection budget alone")
        #expect(retry(&policy, .refused, replayable: true, bodyStarted: false, idempotent: false))
        #expect(retry(&policy, .unknown, replayable: true, bodyStarted: false, idempotent: true))
        #expect(!retry(&policy, .refused, replayable: true, bodyStarted: false, idempotent: true))
        // A new request starts with a full budget.
        var next = Policy(maxRejectedRetries: 2, maxGoingAwayRetries: 5)
        #expect(retry(&next, .refused, replayable: true, bodyStarted: false, idempotent: false))
    }

    @Test("a request the server may have processed goes again only if idempotent; a consumed streamed body never does")
    func processedOrStreamed() {
        var policy = Policy(maxRejectedRetries: 8)
        #expect(!retry(&policy, .unknown, replayable: true, bodyStarted: true, idempotent: false), "POST is not resent")
        #expect(retry(&policy, .unknown, replayable: true, bodyStarted: true, idempotent: true))
        #expect(!retry(&policy, .unknown, replayable: false, bodyStarted: true, idempotent: true))
        #expect(!retry(&policy, .goingAway, replayable: false, bodyStarted: true, idempotent: true))
        #expect(!retry(&policy, .final, replayable: true, bodyStarted: false, idempotent: true))
        // A streamed body not yet read may go again when nothing was processed.
        #expect(retry(&policy, .goingAway, replayable: false, bodyStarted: false, idempotent: false))
        #expect(retry(&policy, .notSent, replayable: false, bodyStarted: false, idempotent: false))
        let error = Policy.finalError(.goingAway, underlying: HTTPError.requestRejected, bodyStarted: true, replayable: false)
        #expect("\(error)".contains("cannot be sent again"), "\(error)")
        #expect(Policy.isIdempotent(.get) && Policy.isIdempotent(.put) && !Policy.isIdempotent(.post))
    }
}
