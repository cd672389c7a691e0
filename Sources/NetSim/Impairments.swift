/// The impairments applied to one direction of the relayed flow (client→server or
/// server→client).
///
/// Each datagram goes through the stages in this order: drop by index, blackhole, random
/// loss, the rate-limited bottleneck queue, corruption, duplication, then the fixed delay with
/// jitter and, for reordered datagrams, the extra reordering delay. Random decisions come from
/// a generator seeded by ``NetworkSimulator/Configuration/seed``; every datagram consumes the
/// same number of random draws whatever happens to it, so the same seed and the same input
/// order give the same decisions.
public struct Impairments: Sendable, Equatable {
    /// A fixed one-way delay added to every datagram.
    public var delay: Duration = .zero
    /// A uniformly distributed variation of the delay, in `-jitter...+jitter` (the result is
    /// never negative). Jitter can reorder datagrams.
    public var jitter: Duration = .zero
    /// The bottleneck rate in bytes per second (UDP payload bytes); `nil` for no limit.
    public var rateBytesPerSecond: Int? = nil
    /// The bottleneck queue size in bytes. A datagram that would make the queue longer than
    /// this is dropped, like a router's tail drop. Only used with a rate limit.
    public var queueLimitBytes: Int = 256 * 1024
    /// The probability (0...1) that a datagram is dropped.
    public var lossProbability: Double = 0
    /// The probability (0...1) that one byte of a datagram's payload is flipped.
    public var corruptionProbability: Double = 0
    /// The probability (0...1) that a datagram is held back by ``reorderDelay`` so that later
    /// datagrams overtake it.
    public var reorderProbability: Double = 0
    /// The extra delay of a reordered datagram.
    public var reorderDelay: Duration = .milliseconds(10)
    /// The probability (0...1) that a datagram is sent twice.
    public var duplicationProbability: Double = 0
    /// Time ranges, measured from the simulator's start, during which every datagram is dropped.
    public var blackholes: [Range<Duration>] = []
    /// 1-based indices of datagrams within this direction's flow to drop (the first datagram the
    /// relay receives in this direction is index 1).
    public var dropIndices: [ClosedRange<Int>] = []

    /// No impairment: datagrams are forwarded as they come.
    public init() {}

    /// Whether datagram `index` (1-based) is in ``dropIndices``.
    public func dropsIndex(_ index: Int) -> Bool {
        dropIndices.contains { $0.contains(index) }
    }

    func validate(direction: String) throws {
        func probability(_ value: Double, _ name: String) throws {
            guard value >= 0, value <= 1 else {
                throw NetSimError(.invalidConfiguration,
                                  "\(direction) \(name) must be between 0 and 1, not \(value)")
            }
        }
        try probability(lossProbability, "loss probability")
        try probability(corruptionProbability, "corruption probability")
        try probability(reorderProbability, "reorder probability")
        try probability(duplicationProbability, "duplication probability")
        for (name, value) in [("delay", delay), ("jitter", jitter), ("reorder delay", reorderDelay)]
        where value < .zero || value > .seconds(3600) {
            throw NetSimError(.invalidConfiguration, "\(direction) \(name) must be within 0...3600 s")
        }
        if let rate = rateBytesPerSecond, rate <= 0 {
            throw NetSimError(.invalidConfiguration, "\(direction) rate must be positive, not \(rate)")
        }
        guard queueLimitBytes > 0 else {
            throw NetSimError(.invalidConfiguration, "\(direction) queue limit must be positive")
        }
        for range in blackholes where range.lowerBound < .zero {
            throw NetSimError(.invalidConfiguration, "\(direction) blackhole \(range) starts before 0")
        }
        for range in dropIndices where range.lowerBound < 1 {
            throw NetSimError(.invalidConfiguration,
                              "\(direction) drop indices are 1-based; \(range) includes \(range.lowerBound)")
        }
    }
}

extension Duration {
    /// Whole nanoseconds, clamped to zero for negative durations.
    var nanosecondsClamped: UInt64 {
        let (seconds, attoseconds) = components
        guard seconds >= 0 else { return 0 }
        return UInt64(seconds) &* 1_000_000_000 &+ UInt64(attoseconds / 1_000_000_000)
    }
}
