/// Settings of the HTTP/3 layer.
public struct HTTP3Settings: Sendable, Hashable {
    /// The largest header section accepted (SETTINGS_MAX_FIELD_SECTION_SIZE); larger requests get 431.
    public var maxHeaderSectionSize: Int
    /// QPACK dynamic table capacity for both directions (nghttp3 0.8 defaults to 0).
    public var qpackTableCapacity: Int
    /// Streams that may be blocked waiting for QPACK table updates.
    public var qpackBlockedStreams: Int
    /// Body bytes buffered per stream, unacknowledged, before a writer waits.
    public var sendBufferLimit: Int

    /// Creates settings with defaults.
    public init(maxHeaderSectionSize: Int = 64 << 10, qpackTableCapacity: Int = 4096, qpackBlockedStreams: Int = 100,
                sendBufferLimit: Int = 1 << 20) {
        self.maxHeaderSectionSize = maxHeaderSectionSize
        self.qpackTableCapacity = qpackTableCapacity
        self.qpackBlockedStreams = qpackBlockedStreams
        self.sendBufferLimit = sendBufferLimit
    }
}

/// Counters of one HTTP/3 connection (for diagnostics and tests).
package struct HTTP3SessionStatistics: Sendable {
    package var requestStreamsOpened = 0
    package var peakConcurrentRequestStreams = 0
    /// Bytes we sent on our QPACK encoder stream (its type byte, table capacity, insertions).
    package var qpackEncoderBytesSent = 0
    /// Bytes the peer sent on its QPACK encoder stream (counted the same way).
    package var qpackEncoderBytesReceived = 0
    /// Server: whether this connection sent GOAWAY (graceful shutdown or GOAWAY chance).
    package var goawaySent = false
    /// Client: whether the server sent GOAWAY on this connection.
    package var goawayReceived = false
    /// Client: request streams that went in 0-RTT (at least their first bytes).
    package var earlyRequestsSent = 0
    /// Client: requests sent again after the server refused the early data they went in.
    package var earlyRequestsResent = 0
    /// Client: requests answered 425 (Too Early) and sent again after the handshake.
    package var tooEarlyRetries = 0
    /// Server: requests whose head arrived in 0-RTT.
    package var earlyRequestsReceived = 0
}
