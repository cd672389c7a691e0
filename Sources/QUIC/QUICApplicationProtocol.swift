/// One contiguous run of bytes to send, as the writer hands it to ngtcp2 and nghttp3.
///
/// Laid out like `ngtcp2_vec` and `nghttp3_vec` (a pointer, then a length), so an array of
/// them is passed to either library without copying; `QUICIOVector.matchesCLayout` and a
/// unit test check that. Applications fill them without seeing a C type.
package struct QUICIOVector: Equatable {
    /// The first byte.
    package var base: UnsafePointer<UInt8>?
    /// The number of bytes.
    package var length: Int

    /// A vector of `length` bytes at `base`.
    package init(base: UnsafePointer<UInt8>?, length: Int) {
        self.base = base
        self.length = length
    }

    /// An empty vector.
    package init() {
        self.init(base: nil, length: 0)
    }
}

/// What the writer pulled from an application: stream data in the vectors it was given.
package struct PendingStreamData {
    /// The stream the data belongs to.
    package var streamID: Int64
    /// How many of the given vectors hold data (may be 0 for a bare FIN).
    package var vectorCount: Int
    /// Whether the stream ends after these bytes.
    package var fin: Bool

    package init(streamID: Int64, vectorCount: Int, fin: Bool) {
        self.streamID = streamID
        self.vectorCount = vectorCount
        self.fin = fin
    }
}

/// The synchronous interface between a QUIC connection and the application protocol on top
/// of it (HTTP/3 over nghttp3, or the async ``QUICStream`` API).
///
/// Every method is called on the connection's event loop, from inside ngtcp2 callbacks or the
/// connection's write loop. Implementations record what happened and return; they never call
/// user code directly (resuming a continuation is fine: the resumed task runs later).
///
/// The application drives the connection back through ``ConnectionCore``'s package methods:
/// `openStream`, `extendReceiveWindow`, `resetStream`, `stopSending`, `scheduleWrite`, `close`.
package protocol QUICApplicationProtocol: AnyObject {
    /// The TLS handshake completed (the connection can carry 1-RTT data).
    func handshakeCompleted() throws(QUICError)
    /// The peer opened a stream.
    func streamOpened(streamID: Int64)
    /// Stream data arrived in order. The application extends the receive window
    /// (``ConnectionCore/extendReceiveWindow(streamID:by:)``) once it has consumed the bytes.
    func received(streamID: Int64, data: UnsafeRawBufferPointer, fin: Bool) throws(QUICError)
    /// The peer acknowledged stream bytes `offset ..< offset + length`; they may be released.
    func acknowledged(streamID: Int64, offset: UInt64, length: UInt64) throws(QUICError)
    /// The stream is closed in both directions. `applicationErrorCode` is set if it was reset.
    func streamClosed(streamID: Int64, applicationErrorCode: UInt64?)
    /// The peer reset its sending side of the stream (RESET_STREAM).
    func streamReset(streamID: Int64, applicationErrorCode: UInt64)
    /// The peer raised the stream's flow-control limit: a blocked stream may send again.
    func streamCreditAvailable(streamID: Int64)
    /// The peer allows more streams to be opened.
    func streamLimitRaised(bidirectional: Bool)
    /// The writer asks for stream data to send: fill `vectors` and say which stream,
    /// or return `nil` when nothing is ready.
    func pendingStreamData(into vectors: UnsafeMutableBufferPointer<QUICIOVector>) -> PendingStreamData?
    /// ngtcp2 took `bytes` of the data (and the FIN, if `fin` was set and `bytes` covered it all).
    func wrote(streamID: Int64, bytes: Int, fin: Bool) throws(QUICError)
    /// The stream cannot send until the peer raises its limit.
    func streamBlocked(streamID: Int64)
    /// The stream's sending side is closed (the peer sent STOP_SENDING, to which ngtcp2 answers
    /// with RESET_STREAM itself; ngtcp2 0.12 reports the peer's code only in ``streamClosed``).
    /// Stop offering its data.
    func streamWriteClosed(streamID: Int64)
    /// The connection closed. `error` is `nil` for a clean close with no error.
    func connectionClosed(error: QUICError?)
    /// We raised the number of streams the peer may open (cumulative `maxStreams`).
    func peerStreamLimitRaised(bidirectional: Bool, maxStreams: UInt64)
    /// The server refused the 0-RTT data (client): ngtcp2 has discarded every stream opened
    /// so far; the application must send again what it wants delivered.
    func earlyDataRejected()
    /// Server: the stream data about to be delivered (``received(streamID:data:fin:)``) came,
    /// at least in part, in 0-RTT packets before the handshake completed: it may be a replay.
    func receivedEarlyData(streamID: Int64)
}

extension QUICApplicationProtocol {
    package func peerStreamLimitRaised(bidirectional: Bool, maxStreams: UInt64) {}
    package func earlyDataRejected() {}
    package func receivedEarlyData(streamID: Int64) {}
}
