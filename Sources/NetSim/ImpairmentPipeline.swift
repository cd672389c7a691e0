/// Why a datagram was dropped.
enum DropReason {
    case index
    case blackhole
    case loss
    case queueOverflow
}

/// What happens to one datagram.
struct Verdict: Equatable {
    /// Non-nil when the datagram is dropped; the other fields are then meaningless.
    var drop: DropReason?
    /// When to send it, in nanoseconds since the simulator's start.
    var deliverAt: UInt64 = 0
    /// The payload offset of the byte to flip, and the bits to flip, when corrupted.
    var corruptOffset: Int?
    var corruptMask: UInt8 = 0
    var duplicate = false
    var reordered = false
}

/// The decisions for one direction: an I/O-free state machine fed with each datagram's index,
/// size and arrival time, returning what to do with it. Time is nanoseconds since the start.
struct ImpairmentPipeline {
    private let impairments: Impairments
    private var random: SeededGenerator
    private let delay: UInt64
    private let jitter: UInt64
    private let reorderDelay: UInt64
    private let blackholes: [Range<UInt64>]
    /// When the bottleneck link finishes sending what is queued on it.
    private var linkFreeAt: UInt64 = 0

    init(impairments: Impairments, seed: UInt64, stream: UInt64) {
        self.impairments = impairments
        random = SeededGenerator(seed: seed, stream: stream)
        delay = impairments.delay.nanosecondsClamped
        jitter = impairments.jitter.nanosecondsClamped
        reorderDelay = impairments.reorderDelay.nanosecondsClamped
        blackholes = impairments.blackholes.map {
            $0.lowerBound.nanosecondsClamped..<$0.upperBound.nanosecondsClamped
        }
    }

    /// Whether every datagram is forwarded at once and untouched (no decision needed).
    var isTransparent: Bool { impairments == Impairments() }

    /// Decides the fate of datagram `index` (1-based) of `size` bytes arriving at `now`.
    mutating func decide(index: Int, size: Int, now: UInt64) -> Verdict {
        // A fixed number of draws per datagram, whatever the outcome, so that each decision
        // depends only on the seed and the datagram's position in the flow.
        let lossDraw = random.nextUnit()
        let corruptDraw = random.nextUnit()
        let corruptBits = random.next()
        let duplicateDraw = random.nextUnit()
        let reorderDraw = random.nextUnit()
        let jitterDraw = random.nextUnit()

        var verdict = Verdict()
        if impairments.dropsIndex(index) {
            verdict.drop = .index
            return verdict
        }
        if blackholes.contains(where: { $0.contains(now) }) {
            verdict.drop = .blackhole
            return verdict
        }
        if lossDraw < impairments.lossProbability {
            verdict.drop = .loss
            return verdict
        }
        var departure = now
        if let rate = impairments.rateBytesPerSecond {
            let rate = UInt64(rate)
            let backlogBytes = linkFreeAt > now ? Double(linkFreeAt - now) * Double(rate) / 1e9 : 0
            if backlogBytes + Double(size) > Double(impairments.queueLimitBytes) {
                verdict.drop = .queueOverflow
                return verdict
            }
            let transmission = UInt64(size) * 1_000_000_000 / rate
            linkFreeAt = max(linkFreeAt, now) + transmission
            departure = linkFreeAt
        }
        if corruptDraw < impairments.corruptionProbability, size > 0 {
            verdict.corruptOffset = Int((corruptBits >> 8) % UInt64(size))
            verdict.corruptMask = UInt8(truncatingIfNeeded: corruptBits) | 1
        }
        verdict.duplicate = duplicateDraw < impairments.duplicationProbability
        var latency = delay
        if jitter > 0 {
            let offset = Int64(jitterDraw * Double(2 * jitter)) - Int64(jitter)
            latency = UInt64(max(0, Int64(delay) + offset))
        }
        if reorderDraw < impairments.reorderProbability {
            verdict.reordered = true
            latency += reorderDelay
        }
        verdict.deliverAt = departure + latency
        return verdict
    }
}
