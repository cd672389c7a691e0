/// Counters of one direction of the relayed flow.
public struct DirectionStatistics: Sendable, Equatable, CustomStringConvertible {
    /// Datagrams the relay received in this direction.
    public var received = 0
    /// Payload bytes the relay received in this direction.
    public var receivedBytes = 0
    /// Datagrams sent on (duplicates included).
    public var forwarded = 0
    /// Payload bytes sent on (duplicates included).
    public var forwardedBytes = 0
    /// Dropped because their index was in ``Impairments/dropIndices``.
    public var droppedByIndex = 0
    /// Dropped during a blackhole period.
    public var droppedByBlackhole = 0
    /// Dropped by random loss.
    public var droppedByLoss = 0
    /// Dropped because the bottleneck queue or the relay's held-datagram pool was full.
    public var droppedByQueueOverflow = 0
    /// Dropped because the socket refused them (`sendmmsg` failed other than by blocking).
    public var droppedBySendError = 0
    /// Dropped because they could not be routed: a server→client datagram before any client
    /// was seen, or from an address other than the server's.
    public var droppedUnroutable = 0
    /// Datagrams with one flipped byte.
    public var corrupted = 0
    /// Datagrams sent twice (each counts once here; both copies count in ``forwarded``).
    public var duplicated = 0
    /// Datagrams held back by the reordering delay.
    public var reordered = 0

    /// Creates zeroed counters.
    public init() {}

    /// All drops, whatever the reason.
    public var dropped: Int {
        droppedByIndex + droppedByBlackhole + droppedByLoss + droppedByQueueOverflow
            + droppedBySendError + droppedUnroutable
    }

    /// One line: every counter of this direction.
    public var description: String {
        "received \(received) (\(receivedBytes) B), forwarded \(forwarded) (\(forwardedBytes) B), "
            + "dropped \(dropped) [index \(droppedByIndex), blackhole \(droppedByBlackhole), "
            + "loss \(droppedByLoss), queue \(droppedByQueueOverflow), send error \(droppedBySendError), "
            + "unroutable \(droppedUnroutable)], corrupted \(corrupted), duplicated \(duplicated), "
            + "reordered \(reordered)"
    }
}

extension NetworkSimulator {
    /// A snapshot of the relay's counters.
    public struct Statistics: Sendable, Equatable, CustomStringConvertible {
        /// Client→server counters.
        public var toServer = DirectionStatistics()
        /// Server→client counters.
        public var toClient = DirectionStatistics()
        /// Rebindings carried out (commanded and scheduled).
        public var rebinds = 0
        /// Scheduled rebindings that failed (the socket could not be made); the old socket stays.
        public var failedRebinds = 0
        /// pcap records that could not be written.
        public var pcapWriteErrors = 0

        /// Creates zeroed counters.
        public init() {}

        /// Both directions' counters and the rebindings, one line each.
        public var description: String {
            "client→server: \(toServer)\nserver→client: \(toClient)\nrebinds: \(rebinds)"
                + (failedRebinds > 0 ? ", failed rebinds: \(failedRebinds)" : "")
                + (pcapWriteErrors > 0 ? ", pcap write errors: \(pcapWriteErrors)" : "")
        }
    }
}
