import HTTPAPI
import HTTPTypes
import NIOCore
import QUIC

/// The rules of one HTTP/3 connection, without I/O: which request streams exist, which
/// requests wait for a stream, GOAWAY and draining, early data (0-RTT) and its refusal, the
/// header-section limit (431) and trailers, and the bookkeeping of bare FINs.
///
/// ``HTTP3Session`` feeds it the events it hears from nghttp3, ngtcp2 and its callers and
/// carries out the actions that come back (calls into nghttp3, stream resets, resuming the
/// `Waiter`s). Nothing here touches a socket, a C library or a continuation, so each rule
/// is tested directly (`HTTP3SessionStateMachineTests`).
///
/// `Waiter` is what a queued client request carries back to its caller (the session uses a
/// continuation; tests use plain values).
package struct HTTP3SessionStateMachine<Waiter> {
    /// Which end of the connection this is.
    package enum Role: Sendable { case client, server }

    /// A client request waiting for the peer's stream limit (MAX_STREAMS) or the handshake.
    package struct PendingRequest {
        /// Identifies the request for cancellation (``makeRequestToken()``).
        package var token: UInt64
        /// The request head to submit.
        package var head: HTTPRequest
        /// Whether a body follows the head.
        package var hasBody: Bool
        /// The request may go in 0-RTT (``EarlyDataPolicy``); otherwise it waits for the handshake.
        package var mayUseEarlyData: Bool
        /// Resumed by the session with the stream or an error.
        package var waiter: Waiter

        /// Creates a pending request.
        package init(token: UInt64, head: HTTPRequest, hasBody: Bool, mayUseEarlyData: Bool, waiter: Waiter) {
            self.token = token
            self.head = head
            self.hasBody = hasBody
            self.mayUseEarlyData = mayUseEarlyData
            self.waiter = waiter
        }
    }

    /// The header section being received on one stream (head or trailers).
    struct HeaderBlock {
        var fields: [(name: String, value: String)] = []
        /// RFC 9114, 4.2.2: name and value lengths plus 32 per field.
        var size = 0
        var tooLarge = false
        var isTrailers = false
    }

    /// What the machine knows about one open request stream.
    struct StreamState {
        var block = HeaderBlock()
        /// The (final) head was received.
        var headReceived = false
    }

    /// What to do with a request the caller wants to start.
    package enum StartRequestAction {
        /// Queued: the session asks ``requestsToSubmit(streamsLeft:sendingEarlyData:)`` next.
        case queued
        /// Fail the waiter at once with the error.
        case fail(Waiter, any Error)
    }

    /// What a completed header section means.
    package enum HeaderAction {
        /// Nothing to do (an unknown stream, an oversized trailer section).
        case none
        /// Server: a request head arrived; `early` if it came in 0-RTT.
        case request(HTTPRequest, fields: [(name: String, value: String)], early: Bool)
        /// Server: a malformed request head: reset the stream with H3_MESSAGE_ERROR.
        case malformedRequest(HTTPError)
        /// Server: the head exceeds the limit: answer 431 and stop reading.
        case respond431(limit: Int)
        /// Client: the response head exceeds the limit: reset with H3_EXCESSIVE_LOAD.
        case resetTooLarge(limit: Int)
        /// Client: an informational (1xx) head, skipped; the final one follows.
        case informational
        /// Client: the final response head arrived.
        case responseHead(fields: [(name: String, value: String)])
        /// Trailers arrived (regular fields only).
        case trailers(HTTPFields)
    }

    /// What the session does after a GOAWAY from the server (client).
    package struct GoawayActions {
        /// Streams at or above the GOAWAY ID: not processed, fail them with `requestRejected`.
        package var rejectedStreams: [Int64]
        /// Queued requests: fail them with `requestRejected`.
        package var pendingToFail: [Waiter]
        /// Nothing is in flight any more: close the connection (H3_NO_ERROR).
        package var closeConnection: Bool
    }

    /// What the session does when the connection closes.
    package struct CloseActions {
        /// Each open stream and the error its reader and writers get.
        package var streamFailures: [(streamID: Int64, error: HTTPError)]
        /// Queued requests, failed with `error`.
        package var pendingToFail: [Waiter]
        /// The connection's error as an HTTP error.
        package var error: HTTPError
    }

    package let role: Role
    /// SETTINGS_MAX_FIELD_SECTION_SIZE of our side.
    package let maxHeaderSectionSize: Int

    private(set) var streams: [Int64: StreamState] = [:]
    private var pendingRequests = CircularBuffer<PendingRequest>()
    private var cancelledTokens: Set<UInt64> = []
    private var nextToken: UInt64 = 0
    /// Open request streams (for draining and statistics).
    package private(set) var activeRequests = 0
    package var statistics = HTTP3SessionStatistics()
    /// Client: the server's GOAWAY stream ID; requests at or above it were not processed.
    package private(set) var goawayID: Int64?
    /// Server: shutting down gracefully.
    package private(set) var shuttingDown = false
    package private(set) var isClosed = false
    package private(set) var closeError: QUICError?
    /// The control and QPACK streams are open and bound to nghttp3.
    package private(set) var controlStreamsBound = false
    /// Client: the control streams went out in 0-RTT, so requests may follow them.
    package private(set) var earlyDataReady = false
    private var qpackEncoderStreamID: Int64 = -1
    /// Server: streams with data that arrived in 0-RTT, until their head is seen.
    private var earlyStreamIDs: Set<Int64> = []
    /// The stream whose bare FIN was offered last and not yet taken.
    private var lastBareFIN: Int64?
    private var finsToRetry: [Int64] = []
    /// The peer's unidirectional streams whose type byte has been seen.
    private var peerUniStreamTypes: [Int64: UInt8] = [:]

    /// Creates the state of a new connection.
    package init(role: Role, maxHeaderSectionSize: Int) {
        self.role = role
        self.maxHeaderSectionSize = maxHeaderSectionSize
    }

    /// Whether the stream is open (known to the machine).
    package func hasStream(_ streamID: Int64) -> Bool { streams[streamID] != nil }

    /// Requests waiting for a stream.
    package var pendingRequestCount: Int { pendingRequests.count }

    /// Whether new requests may be sent on this connection (the transport must also be open).
    package var acceptsRequests: Bool { !isClosed && goawayID == nil && !shuttingDown }

    // MARK: - Client requests

    /// A number identifying one waiting request (for cancellation).
    package mutating func makeRequestToken() -> UInt64 {
        nextToken += 1
        return nextToken
    }

    /// A caller wants to send a request.
    package mutating func startRequest(_ request: PendingRequest) -> StartRequestAction {
        if isClosed { return .fail(request.waiter, httpError(closeError)) }
        if goawayID != nil { return .fail(request.waiter, HTTPError.requestRejected) }
        if cancelledTokens.remove(request.token) != nil { return .fail(request.waiter, CancellationError()) }
        pendingRequests.append(request)
        return .queued
    }

    /// The requests to submit now, in order: at most `streamsLeft`, none before the control
    /// streams are bound, and while in 0-RTT only those that may go early (the others keep
    /// their place in the line until the handshake completes).
    package mutating func requestsToSubmit(streamsLeft: UInt64, sendingEarlyData: Bool) -> [PendingRequest] {
        if role == .client && !controlStreamsBound { return [] }
        if sendingEarlyData && !earlyDataReady { return [] }
        var ready: [PendingRequest] = []
        var waiting = CircularBuffer<PendingRequest>()
        while UInt64(ready.count) < streamsLeft, let pending = pendingRequests.popFirst() {
            if sendingEarlyData && !pending.mayUseEarlyData {
                waiting.append(pending)
            } else {
                ready.append(pending)
            }
        }
        if !waiting.isEmpty {
            waiting.append(contentsOf: pendingRequests)
            pendingRequests = waiting
        }
        return ready
    }

    /// The task waiting for a stream was cancelled: its waiter, if it was still in the line.
    package mutating func cancelPendingRequest(token: UInt64) -> Waiter? {
        if let index = pendingRequests.firstIndex(where: { $0.token == token }) {
            return pendingRequests.remove(at: index).waiter
        }
        // Not queued yet (the cancel overtook the request) or already submitted.
        cancelledTokens.insert(token)
        if cancelledTokens.count > 1024 { cancelledTokens.removeAll() }
        return nil
    }

    /// A request went out on `streamID` (client); `early` if in 0-RTT.
    package mutating func requestSubmitted(streamID: Int64, early: Bool) {
        if early { statistics.earlyRequestsSent += 1 }
    }

    /// Counts a request sent again after refused early data or a 425.
    package mutating func countRetry(tooEarly: Bool) {
        if tooEarly { statistics.tooEarlyRetries += 1 } else { statistics.earlyRequestsResent += 1 }
    }

    // MARK: - Streams

    /// A request stream opened (client: we opened it; server: its first header section began).
    package mutating func requestStreamOpened(_ streamID: Int64) {
        streams[streamID] = StreamState()
        activeRequests += 1
        statistics.requestStreamsOpened += 1
        statistics.peakConcurrentRequestStreams = max(statistics.peakConcurrentRequestStreams, activeRequests)
    }

    /// nghttp3 refused a request we opened a stream for: the stream is forgotten (it keeps
    /// counting as active, as it always did, until the connection ends).
    package mutating func requestSubmissionFailed(_ streamID: Int64) {
        streams[streamID] = nil
    }

    /// A request stream closed. `true` if the connection is drained and should close now.
    @discardableResult
    package mutating func requestStreamClosed(_ streamID: Int64) -> Bool {
        guard streams.removeValue(forKey: streamID) != nil else { return false }
        activeRequests -= 1
        return shouldCloseAfterDrain
    }

    /// The transport closed a stream (any kind): its early-data and FIN bookkeeping ends.
    package mutating func transportClosedStream(_ streamID: Int64) {
        earlyStreamIDs.remove(streamID)
        forgetFIN(streamID)
    }

    /// Whether a draining connection has nothing left in flight and should close (H3_NO_ERROR).
    package var shouldCloseAfterDrain: Bool {
        guard activeRequests == 0, !isClosed else { return false }
        return (role == .server && shuttingDown) || (role == .client && goawayID != nil)
    }

    // MARK: - Header sections

    /// A header section (head or trailers) begins. `true` if this opened a new request stream.
    @discardableResult
    package mutating func beginHeaders(streamID: Int64, trailers: Bool) -> Bool {
        var opened = false
        if streams[streamID] == nil {
            requestStreamOpened(streamID)
            opened = true
        }
        streams[streamID]?.block = HeaderBlock(isTrailers: trailers)
        return opened
    }

    /// A field of the current header section.
    package mutating func receivedHeader(streamID: Int64, name: String, value: String) {
        // Changed in place (through the index): a copy of the stream's state would copy its
        // field list for every field.
        guard let index = streams.index(forKey: streamID) else { return }
        streams.values[index].block.size += name.utf8.count + value.utf8.count + 32
        if streams.values[index].block.size > maxHeaderSectionSize {
            streams.values[index].block.tooLarge = true
        } else {
            streams.values[index].block.fields.append((name, value))
        }
    }

    /// The current header section is complete: what it means.
    package mutating func endHeaders(streamID: Int64) -> HeaderAction {
        guard let index = streams.index(forKey: streamID) else { return .none }
        let block = streams.values[index].block
        if block.isTrailers {
            guard !block.tooLarge else { return .none }
            var trailers = HTTPFields()
            for (name, value) in block.fields where !name.hasPrefix(":") {
                if let fieldName = HTTPField.Name(parsed: name) { trailers.append(HTTPField(name: fieldName, value: value)) }
            }
            return .trailers(trailers)
        }
        if block.tooLarge {
            return role == .server ? .respond431(limit: maxHeaderSectionSize) : .resetTooLarge(limit: maxHeaderSectionSize)
        }
        switch role {
        case .server:
            do throws(HTTPError) {
                let request = try HTTP3Session.makeRequest(block.fields)
                streams.values[index].headReceived = true
                let early = earlyStreamIDs.remove(streamID) != nil
                if early { statistics.earlyRequestsReceived += 1 }
                return .request(request, fields: block.fields, early: early)
            } catch {
                return .malformedRequest(error)
            }
        case .client:
            if let status = block.fields.first(where: { $0.name == ":status" }).flatMap({ Int($0.value) }),
               (100..<200).contains(status) {
                streams.values[index].block.fields.removeAll()
                return .informational
            }
            streams.values[index].headReceived = true
            return .responseHead(fields: block.fields)
        }
    }

    // MARK: - GOAWAY and graceful shutdown

    /// Client: the server sent GOAWAY with `id`. `nil` on a server.
    package mutating func goawayReceived(id: Int64) -> GoawayActions? {
        guard role == .client else { return nil }
        goawayID = id
        statistics.goawayReceived = true
        let rejected = streams.keys.filter { $0 >= id }.sorted()
        let pending = pendingRequests.map(\.waiter)
        pendingRequests.removeAll()
        return GoawayActions(rejectedStreams: rejected, pendingToFail: pending, closeConnection: shouldCloseAfterDrain)
    }

    /// Server: stop taking new requests. `true` if the GOAWAY goes out now (else it goes out
    /// as soon as the control stream is bound, see ``controlStreamsDidBind(encoderStreamID:)``).
    package mutating func beginGracefulShutdown() -> Bool {
        guard role == .server, !shuttingDown, !isClosed else { return false }
        shuttingDown = true
        return controlStreamsBound
    }

    /// The first GOAWAY of a graceful shutdown went out.
    package mutating func goawayNoticeSent() {
        statistics.goawaySent = true
    }

    // MARK: - Control streams and early data

    /// nghttp3's control and QPACK streams are bound. `true` if a shutdown that began before
    /// they existed now sends its GOAWAY.
    package mutating func controlStreamsDidBind(encoderStreamID: Int64) -> Bool {
        qpackEncoderStreamID = encoderStreamID
        controlStreamsBound = true
        return shuttingDown
    }

    /// Client: the control streams went out in 0-RTT; requests may follow them.
    package mutating func earlyDataStarted() {
        earlyDataReady = true
    }

    /// The handshake completed: data no longer arrives in 0-RTT.
    package mutating func handshakeCompleted() {
        earlyStreamIDs.removeAll()
    }

    /// Server: data on `streamID` arrived in 0-RTT.
    package mutating func receivedEarlyData(streamID: Int64) {
        // Only request streams (client-initiated, bidirectional) matter; bounded by MAX_STREAMS.
        guard role == .server, streamID & 0x3 == 0 else { return }
        earlyStreamIDs.insert(streamID)
    }

    /// Client: the server refused our 0-RTT data. ngtcp2 dropped every stream; HTTP/3 starts
    /// over (a new nghttp3 connection, control streams bound again). The streams sent early,
    /// to be failed with `requestRejected` so their requests go again; `nil` on a server.
    package mutating func earlyDataRejected() -> [Int64]? {
        guard role == .client else { return nil }
        let rejected = streams.keys.sorted()
        streams.removeAll()
        activeRequests = 0
        controlStreamsBound = false
        earlyDataReady = false
        qpackEncoderStreamID = -1
        lastBareFIN = nil
        finsToRetry.removeAll()
        peerUniStreamTypes.removeAll()
        return rejected
    }

    // MARK: - Closing

    /// The connection closed. `nil` if it was closed already.
    package mutating func connectionClosed(error: QUICError?) -> CloseActions? {
        guard !isClosed else { return nil }
        isClosed = true
        closeError = error
        let failure = httpError(error)
        // A server that sent GOAWAY closes gracefully (H3_NO_ERROR) only once every request it
        // accepted is answered (RFC 9114, 5.2): a request still without a response head was
        // not processed, and neither was one at or above the GOAWAY ID. Retrying them is safe.
        var gracefulAfterGoaway = false
        if role == .client, goawayID != nil, case .applicationClosed(let code, _, remote: true)? = error,
           code == HTTP3ErrorCode.noError {
            gracefulAfterGoaway = true
        }
        var failures: [(streamID: Int64, error: HTTPError)] = []
        for (id, state) in streams.sorted(by: { $0.key < $1.key }) {
            let unprocessed = role == .client
                && (goawayID.map { id >= $0 } == true || (gracefulAfterGoaway && !state.headReceived))
            failures.append((id, unprocessed ? .requestRejected : failure))
        }
        streams.removeAll()
        let pending = pendingRequests.map(\.waiter)
        pendingRequests.removeAll()
        return CloseActions(streamFailures: failures, pendingToFail: pending, error: failure)
    }

    // MARK: - Bare FINs

    // nghttp3 0.8 unschedules a stream as soon as it hands out a bare FIN, before knowing
    // whether the packet had room for it; if it had not, nghttp3 never offers it again. Such
    // FINs are kept and offered again until ngtcp2 takes them.

    /// Before asking nghttp3 for data: a bare FIN to offer again instead, if one is waiting.
    package mutating func bareFINToOffer() -> Int64? {
        if let offered = lastBareFIN {
            lastBareFIN = nil
            if !finsToRetry.contains(offered) { finsToRetry.append(offered) }
        }
        if let retry = finsToRetry.first {
            lastBareFIN = retry
            return retry
        }
        return nil
    }

    /// nghttp3 offered `vectorCount` vectors of `streamID`'s data.
    package mutating func offered(streamID: Int64, vectorCount: Int, fin: Bool) {
        if vectorCount == 0 && fin { lastBareFIN = streamID }
    }

    /// ngtcp2 took `bytes` of `streamID`'s data.
    package mutating func wrote(streamID: Int64, bytes: Int) {
        if streamID == lastBareFIN {
            lastBareFIN = nil
            finsToRetry.removeAll { $0 == streamID }
        }
        if streamID == qpackEncoderStreamID { statistics.qpackEncoderBytesSent += bytes }
    }

    /// The stream's sending side is closed: its FIN is no longer offered.
    package mutating func forgetFIN(_ streamID: Int64) {
        finsToRetry.removeAll { $0 == streamID }
        if lastBareFIN == streamID { lastBareFIN = nil }
    }

    // MARK: - QPACK statistics

    /// Counts bytes of the peer's QPACK encoder stream (the first byte of a peer
    /// unidirectional stream gives its type).
    package mutating func receivedStreamBytes(streamID: Int64, firstByte: UInt8?, count: Int) {
        let peerUni = streamID & 0x2 != 0 && (streamID & 0x1 == 1) == (role == .client)
        guard peerUni, let firstByte, count > 0 else { return }
        if let type = peerUniStreamTypes[streamID] {
            if type == 0x02 { statistics.qpackEncoderBytesReceived += count }
        } else {
            peerUniStreamTypes[streamID] = firstByte
            if firstByte == 0x02 { statistics.qpackEncoderBytesReceived += count }
        }
    }
}
