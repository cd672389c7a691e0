import HTTP3
import HTTPAPI
import HTTPTypes
import QUIC
import Testing

/// The rules of an HTTP/3 connection, driven directly: no sockets, no nghttp3, no event loop.
/// Waiters are plain strings naming the request.
@Suite("HTTP/3 session state machine")
struct HTTP3SessionStateMachineTests {
    typealias Machine = HTTP3SessionStateMachine<String>

    static func request(_ path: String = "/") -> HTTPRequest {
        HTTPRequest(method: .get, scheme: "https", authority: "example.com", path: path)
    }

    /// A client whose control streams are bound (after the handshake).
    static func client(limit: Int = 1024) -> Machine {
        var machine = Machine(role: .client, maxHeaderSectionSize: limit)
        _ = machine.controlStreamsDidBind(encoderStreamID: 6)
        return machine
    }

    static func server(limit: Int = 1024) -> Machine {
        var machine = Machine(role: .server, maxHeaderSectionSize: limit)
        _ = machine.controlStreamsDidBind(encoderStreamID: 7)
        return machine
    }

    /// Queues a request; `true` if it was queued, not failed.
    @discardableResult
    static func enqueue(_ machine: inout Machine, _ name: String, token: UInt64, early: Bool = false) -> Bool {
        let pending = Machine.PendingRequest(token: token, head: request("/\(name)"), hasBody: false,
                                             mayUseEarlyData: early, waiter: name)
        if case .queued = machine.startRequest(pending) { return true }
        return false
    }

    static func headers(_ machine: inout Machine, stream: Int64, _ fields: [(String, String)],
                        trailers: Bool = false) -> Machine.HeaderAction {
        machine.beginHeaders(streamID: stream, trailers: trailers)
        for (name, value) in fields { machine.receivedHeader(streamID: stream, name: name, value: value) }
        return machine.endHeaders(streamID: stream)
    }

    // MARK: - GOAWAY

    struct GoawayCase: Sendable, CustomTestStringConvertible {
        var goawayID: Int64
        var open: [Int64]
        var rejected: [Int64]
        var closesAtOnce: Bool
        var testDescription: String { "GOAWAY \(goawayID) with streams \(open)" }
    }

    @Test("GOAWAY rejects streams at or above its ID and every queued request", arguments: [
        GoawayCase(goawayID: 4, open: [0, 4, 8], rejected: [4, 8], closesAtOnce: false),
        GoawayCase(goawayID: 0, open: [0, 4], rejected: [0, 4], closesAtOnce: false),
        GoawayCase(goawayID: 12, open: [0, 4, 8], rejected: [], closesAtOnce: false),
        GoawayCase(goawayID: 0, open: [], rejected: [], closesAtOnce: true),
    ])
    func goaway(_ test: GoawayCase) throws {
        var machine = Self.client()
        for id in test.open { machine.requestStreamOpened(id) }
        Self.enqueue(&machine, "queued", token: 1)
        #expect(machine.acceptsRequests)
        let goaway = machine.goawayReceived(id: test.goawayID)
        let actions = try #require(goaway)
        #expect(actions.rejectedStreams == test.rejected)
        #expect(actions.pendingToFail == ["queued"])
        #expect(actions.closeConnection == test.closesAtOnce)
        #expect(!machine.acceptsRequests)
        #expect(machine.statistics.goawayReceived)
        // A request after the GOAWAY fails at once, safe to retry elsewhere.
        let late = Machine.PendingRequest(token: 2, head: Self.request(), hasBody: false, mayUseEarlyData: false, waiter: "late")
        guard case .fail(let waiter, let error) = machine.startRequest(late) else {
            Issue.record("a request after GOAWAY was queued")
            return
        }
        #expect(waiter == "late")
        #expect(error as? HTTPError == .requestRejected)
        // The connection closes when the last stream in flight closes.
        for (index, id) in test.open.enumerated() {
            let closesNow = machine.requestStreamClosed(id)
            #expect(closesNow == (index == test.open.count - 1))
        }
    }

    @Test("A server ignores GOAWAY frames (only clients act on them)")
    func goawayOnServer() {
        var machine = Self.server()
        machine.requestStreamOpened(0)
        let goaway = machine.goawayReceived(id: 0)
        #expect(goaway == nil)
        #expect(machine.acceptsRequests)
    }

    @Test("Graceful shutdown: GOAWAY at once or when the control stream is bound; close when drained",
          arguments: [true, false])
    func gracefulShutdown(boundFirst: Bool) {
        var machine = Machine(role: .server, maxHeaderSectionSize: 1024)
        if boundFirst {
            let goawayOnBind = machine.controlStreamsDidBind(encoderStreamID: 7)
            #expect(!goawayOnBind)
        }
        machine.requestStreamOpened(0)
        let sendsGoaway = machine.beginGracefulShutdown()
        #expect(sendsGoaway == boundFirst)
        let sendsGoaway2 = machine.beginGracefulShutdown()
        #expect(!sendsGoaway2)  // once only
        if !boundFirst {
            let goawayOnBind2 = machine.controlStreamsDidBind(encoderStreamID: 7)
            #expect(goawayOnBind2)
        }
        #expect(!machine.acceptsRequests)
        #expect(!machine.shouldCloseAfterDrain)
        let closesNow = machine.requestStreamClosed(0)
        #expect(closesNow)
        let closesNow2 = machine.requestStreamClosed(0)
        #expect(!closesNow2)  // an unknown stream changes nothing
    }

    @Test("Closing after a graceful GOAWAY: requests without a response head were not processed")
    func gracefulCloseAfterGoaway() throws {
        var machine = Self.client()
        for id: Int64 in [0, 4, 8] { machine.requestStreamOpened(id) }
        _ = Self.headers(&machine, stream: 0, [(":status", "200")])
        _ = machine.goawayReceived(id: 8)
        let graceful = QUICError.applicationClosed(code: HTTP3ErrorCode.noError, reason: "", remote: true)
        let closing = machine.connectionClosed(error: graceful)
        let actions = try #require(closing)
        let failures = Dictionary(uniqueKeysWithValues: actions.streamFailures.map { ($0.streamID, $0.error) })
        #expect(failures[0] == .connectionClosed("the connection closed"))
        #expect(failures[4] == .requestRejected)
        #expect(failures[8] == .requestRejected)
        let closing2 = machine.connectionClosed(error: nil)
        #expect(closing2 == nil)  // once only
        #expect(!machine.acceptsRequests)
    }

    @Test("An abrupt close fails every stream with the connection's error and the queue with it")
    func abruptClose() throws {
        var machine = Self.client()
        machine.requestStreamOpened(0)
        Self.enqueue(&machine, "queued", token: 1)
        let closing = machine.connectionClosed(error: .idleTimeout)
        let actions = try #require(closing)
        #expect(actions.streamFailures.map(\.streamID) == [0])
        #expect(actions.streamFailures.first?.error == actions.error)
        #expect(actions.pendingToFail == ["queued"])
        let late = Machine.PendingRequest(token: 2, head: Self.request(), hasBody: false, mayUseEarlyData: false, waiter: "late")
        guard case .fail(_, let error) = machine.startRequest(late) else {
            Issue.record("a request on a closed connection was queued")
            return
        }
        #expect(error as? HTTPError == actions.error)
    }

    // MARK: - Queue and cancellation

    @Test("Requests leave the queue in order, as many as the stream limit allows", arguments: [0, 1, 2, 5])
    func streamLimit(streamsLeft: Int) {
        var machine = Self.client()
        for (index, name) in ["a", "b", "c"].enumerated() { Self.enqueue(&machine, name, token: UInt64(index + 1)) }
        let ready = machine.requestsToSubmit(streamsLeft: UInt64(streamsLeft), sendingEarlyData: false)
        #expect(ready.map(\.waiter) == Array(["a", "b", "c"].prefix(streamsLeft)))
        #expect(machine.pendingRequestCount == max(0, 3 - streamsLeft))
    }

    @Test("A client sends nothing before its control streams are bound")
    func waitsForControlStreams() {
        var machine = Machine(role: .client, maxHeaderSectionSize: 1024)
        Self.enqueue(&machine, "a", token: 1)
        let ready = machine.requestsToSubmit(streamsLeft: 10, sendingEarlyData: false)
        #expect(ready.isEmpty)
        _ = machine.controlStreamsDidBind(encoderStreamID: 2)
        let ready2 = machine.requestsToSubmit(streamsLeft: 10, sendingEarlyData: false)
        #expect(ready2.map(\.waiter) == ["a"])
    }

    enum CancelTiming: String, CaseIterable, Sendable { case whileQueued, beforeQueued, afterSubmitted }

    @Test("Cancelling a waiting request", arguments: CancelTiming.allCases)
    func cancellation(_ timing: CancelTiming) {
        var machine = Self.client()
        switch timing {
        case .whileQueued:
            Self.enqueue(&machine, "a", token: 1)
            Self.enqueue(&machine, "b", token: 2)
            let cancelled = machine.cancelPendingRequest(token: 1)
            #expect(cancelled == "a")
            let ready = machine.requestsToSubmit(streamsLeft: 10, sendingEarlyData: false)
            #expect(ready.map(\.waiter) == ["b"])
        case .beforeQueued:
            // The cancel overtook the request: the request fails as soon as it arrives.
            let cancelled2 = machine.cancelPendingRequest(token: 1)
            #expect(cancelled2 == nil)
            let pending = Machine.PendingRequest(token: 1, head: Self.request(), hasBody: false, mayUseEarlyData: false, waiter: "a")
            guard case .fail(let waiter, let error) = machine.startRequest(pending) else {
                Issue.record("a cancelled request was queued")
                return
            }
            #expect(waiter == "a")
            #expect(error is CancellationError)
        case .afterSubmitted:
            Self.enqueue(&machine, "a", token: 1)
            let ready2 = machine.requestsToSubmit(streamsLeft: 1, sendingEarlyData: false)
            #expect(ready2.count == 1)
            let cancelled3 = machine.cancelPendingRequest(token: 1)
            #expect(cancelled3 == nil)
            #expect(machine.pendingRequestCount == 0)
        }
    }

    // MARK: - Early data

    @Test("In 0-RTT only requests that may go early leave the queue; the others keep their place")
    func earlyDataQueue() {
        var machine = Machine(role: .client, maxHeaderSectionSize: 1024)
        _ = machine.controlStreamsDidBind(encoderStreamID: 6)
        Self.enqueue(&machine, "post", token: 1, early: false)
        Self.enqueue(&machine, "get", token: 2, early: true)
        Self.enqueue(&machine, "put", token: 3, early: false)
        // Control streams bound, but the early-data start was not confirmed: nothing goes early.
        let ready = machine.requestsToSubmit(streamsLeft: 10, sendingEarlyData: true)
        #expect(ready.isEmpty)
        machine.earlyDataStarted()
        let ready2 = machine.requestsToSubmit(streamsLeft: 10, sendingEarlyData: true)
        #expect(ready2.map(\.waiter) == ["get"])
        let ready3 = machine.requestsToSubmit(streamsLeft: 10, sendingEarlyData: false)
        #expect(ready3.map(\.waiter) == ["post", "put"])
    }

    @Test("Early data refused: every stream is failed for a retry and HTTP/3 starts over")
    func earlyDataRefused() throws {
        var machine = Machine(role: .client, maxHeaderSectionSize: 1024)
        _ = machine.controlStreamsDidBind(encoderStreamID: 6)
        machine.earlyDataStarted()
        for id: Int64 in [4, 0] {
            machine.requestStreamOpened(id)
            machine.requestSubmitted(streamID: id, early: true)
        }
        Self.enqueue(&machine, "later", token: 1)
        #expect(machine.statistics.earlyRequestsSent == 2)
        let refusal = machine.earlyDataRejected()
        let rejected = try #require(refusal)
        #expect(rejected == [0, 4])
        #expect(machine.activeRequests == 0)
        #expect(!machine.controlStreamsBound && !machine.earlyDataReady)
        #expect(!machine.hasStream(0) && !machine.hasStream(4))
        // The queued request waits for the new control streams.
        let ready = machine.requestsToSubmit(streamsLeft: 10, sendingEarlyData: false)
        #expect(ready.isEmpty)
        _ = machine.controlStreamsDidBind(encoderStreamID: 2)
        let ready2 = machine.requestsToSubmit(streamsLeft: 10, sendingEarlyData: false)
        #expect(ready2.map(\.waiter) == ["later"])
        machine.countRetry(tooEarly: false)
        machine.countRetry(tooEarly: true)
        #expect(machine.statistics.earlyRequestsResent == 1 && machine.statistics.tooEarlyRetries == 1)
    }

    @Test("A server refuses nothing itself and marks request heads that came in 0-RTT",
          arguments: [(Int64(0), true), (Int64(4), false), (Int64(2), false)])
    func earlyRequestOnServer(stream: Int64, early: Bool) {
        var machine = Self.server()
        let rejected = machine.earlyDataRejected()
        #expect(rejected == nil)
        machine.receivedEarlyData(streamID: 0)
        machine.receivedEarlyData(streamID: 2)  // a unidirectional stream: not a request
        let action = Self.headers(&machine, stream: stream,
                                  [(":method", "GET"), (":scheme", "https"), (":authority", "a"), (":path", "/")])
        guard case .request(_, _, let wasEarly) = action else {
            Issue.record("expected a request, got \(action)")
            return
        }
        #expect(wasEarly == early)
        #expect(machine.statistics.earlyRequestsReceived == (early ? 1 : 0))
        machine.handshakeCompleted()
    }

    // MARK: - Header sections

    struct LimitCase: Sendable, CustomTestStringConvertible {
        var role: Machine.Role
        var valueLength: Int
        var testDescription: String { "\(role), a value of \(valueLength) bytes" }
    }

    @Test("Header sections over the limit: 431 from a server, H3_EXCESSIVE_LOAD from a client", arguments: [
        LimitCase(role: .server, valueLength: 10), LimitCase(role: .server, valueLength: 500),
        LimitCase(role: .client, valueLength: 10), LimitCase(role: .client, valueLength: 500),
    ])
    func headerLimit(_ test: LimitCase) {
        let limit = 300
        var machine = test.role == .server ? Self.server(limit: limit) : Self.client(limit: limit)
        if test.role == .client { machine.requestStreamOpened(0) }
        let fields: [(String, String)] = test.role == .server
            ? [(":method", "GET"), (":scheme", "https"), (":authority", "a"), (":path", "/"),
               ("x-big", String(repeating: "v", count: test.valueLength))]
            : [(":status", "200"), ("x-big", String(repeating: "v", count: test.valueLength))]
        let action = Self.headers(&machine, stream: 0, fields)
        let tooLarge = test.valueLength > 100
        switch (test.role, action) {
        case (.server, .respond431(let reported)), (.client, .resetTooLarge(let reported)):
            #expect(tooLarge)
            #expect(reported == limit)
        case (.server, .request(let request, _, _)):
            #expect(!tooLarge)
            #expect(request.headerFields[HTTPField.Name("x-big")!]?.count == test.valueLength)
        case (.client, .responseHead(let received)):
            #expect(!tooLarge)
            #expect(received.count == 2)
        default:
            Issue.record("unexpected \(action)")
        }
    }

    @Test("Malformed request heads are refused", arguments: [
        [(":method", "GET"), (":path", "/")],  // no :scheme
        [(":method", "GET"), (":scheme", "https")],  // no :path
        [("x-a", "1"), (":method", "GET"), (":scheme", "https"), (":path", "/")],  // pseudo after regular
        [(":method", "GET"), (":method", "GET"), (":scheme", "https"), (":path", "/")],  // repeated
    ])
    func malformedRequest(fields: [(String, String)]) {
        var machine = Self.server()
        let action = Self.headers(&machine, stream: 0, fields)
        guard case .malformedRequest = action else {
            Issue.record("expected a refusal, got \(action)")
            return
        }
    }

    @Test("A client skips informational heads and keeps the final one")
    func informationalHeads() {
        var machine = Self.client()
        machine.requestStreamOpened(0)
        guard case .informational = Self.headers(&machine, stream: 0, [(":status", "103"), ("link", "</a>")]) else {
            Issue.record("103 not skipped")
            return
        }
        guard case .responseHead(let fields) = Self.headers(&machine, stream: 0, [(":status", "200")]) else {
            Issue.record("final head not delivered")
            return
        }
        #expect(fields.map(\.name) == [":status"])
    }

    @Test("Trailers: regular fields kept, pseudo-headers dropped, an oversized section ignored",
          arguments: [20, 400])
    func trailers(valueLength: Int) {
        var machine = Self.client(limit: 200)
        machine.requestStreamOpened(0)
        _ = Self.headers(&machine, stream: 0, [(":status", "200")])
        let action = Self.headers(&machine, stream: 0, [(":path", "/x"), ("x-checksum", String(repeating: "c", count: valueLength))],
                                  trailers: true)
        if valueLength > 100 {
            guard case .none = action else { Issue.record("oversized trailers delivered: \(action)"); return }
        } else {
            guard case .trailers(let fields) = action else { Issue.record("trailers not delivered: \(action)"); return }
            #expect(fields.count == 1)
            #expect(fields[HTTPField.Name("x-checksum")!]?.count == valueLength)
        }
    }

    // MARK: - Bare FINs and QPACK statistics

    @Test("A bare FIN nghttp3 offered and ngtcp2 did not take is offered again until written")
    func bareFINRetry() {
        var machine = Self.client()
        let offered = machine.bareFINToOffer()
        #expect(offered == nil)
        machine.offered(streamID: 0, vectorCount: 0, fin: true)
        let offered2 = machine.bareFINToOffer()
        #expect(offered2 == 0)  // not taken: again
        let offered3 = machine.bareFINToOffer()
        #expect(offered3 == 0)
        machine.wrote(streamID: 0, bytes: 0)
        let offered4 = machine.bareFINToOffer()
        #expect(offered4 == nil)
        machine.offered(streamID: 4, vectorCount: 0, fin: true)
        machine.forgetFIN(4)  // the peer stopped the stream
        let offered5 = machine.bareFINToOffer()
        #expect(offered5 == nil)
    }

    @Test("QPACK encoder bytes are counted in both directions")
    func qpackStatistics() {
        var machine = Self.client()
        machine.wrote(streamID: 6, bytes: 10)
        machine.wrote(streamID: 0, bytes: 99)
        #expect(machine.statistics.qpackEncoderBytesSent == 10)
        machine.receivedStreamBytes(streamID: 3, firstByte: 0x02, count: 5)  // server's encoder stream
        machine.receivedStreamBytes(streamID: 3, firstByte: 0x00, count: 7)  // later bytes, same stream
        machine.receivedStreamBytes(streamID: 7, firstByte: 0x00, count: 9)  // server's control stream
        machine.receivedStreamBytes(streamID: 1, firstByte: 0x02, count: 9)  // a bidirectional stream
        #expect(machine.statistics.qpackEncoderBytesReceived == 12)
    }
}
