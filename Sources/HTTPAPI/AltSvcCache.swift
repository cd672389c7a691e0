/// An https origin as the Alt-Svc cache keys it: host (lower-cased) and port.
public struct AltSvcOrigin: Sendable, Hashable, CustomStringConvertible {
    /// The host name or IP literal (IPv6 without brackets), lower-cased.
    public let host: String
    /// The port.
    public let port: Int

    /// Creates an origin.
    public init(host: String, port: Int) {
        self.host = host.lowercased()
        self.port = port
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// A cached alternative: where to go, over which protocol, until when.
public struct AltSvcEntry: Sendable, Hashable {
    /// The ALPN protocol id (`h3`).
    public var protocolID: String
    /// The host to connect to (the origin's host when the header left it empty).
    public var host: String
    /// The port to connect to.
    public var port: Int
    /// When the entry expires, in seconds since 1970.
    public var expires: Double
    /// Whether it survives network changes.
    public var persist: Bool

    /// Creates an entry.
    public init(protocolID: String, host: String, port: Int, expires: Double, persist: Bool = false) {
        self.protocolID = protocolID
        self.host = host
        self.port = port
        self.expires = expires
        self.persist = persist
    }
}

/// What the client knows about origins' alternative services (RFC 7838, section 2.2):
/// bounded, per origin, each entry expiring after its `ma`. An I/O-free value: the caller
/// passes the time in (seconds since 1970, so that a saved cache means the same after a restart).
public struct AltSvcCache: Sendable, Hashable {
    /// The most origins kept; the least recently updated one goes first.
    public let maxOrigins: Int
    /// The most alternatives kept per origin (the server's first ones).
    public let maxEntriesPerOrigin: Int
    /// Only these protocol ids are kept (nil keeps every protocol).
    public let protocols: Set<String>?
    private var entries: [AltSvcOrigin: [AltSvcEntry]] = [:]
    /// Update order of the origins, oldest first, for eviction.
    private var order: [AltSvcOrigin] = []

    /// Creates an empty cache. By default it keeps `h3` alternatives only: the one protocol
    /// this client can move to.
    public init(maxOrigins: Int = 1000, maxEntriesPerOrigin: Int = 8, protocols: Set<String>? = ["h3"]) {
        self.maxOrigins = max(1, maxOrigins)
        self.maxEntriesPerOrigin = max(1, maxEntriesPerOrigin)
        self.protocols = protocols
    }

    /// The number of origins with entries (expired ones included until looked up or pruned).
    public var originCount: Int { entries.count }

    /// Applies a field received from `origin` at `now`: `clear` forgets the origin; a list of
    /// alternatives replaces everything cached for it (RFC 7838, section 3).
    public mutating func update(origin: AltSvcOrigin, with field: AltSvcField, now: Double) {
        switch field {
        case .clear:
            remove(origin)
        case .alternatives(let alternatives):
            var kept: [AltSvcEntry] = []
            for alternative in alternatives where protocols?.contains(alternative.protocolID) ?? true {
                guard alternative.maxAge > 0, kept.count < maxEntriesPerOrigin else { continue }
                let host = alternative.host.isEmpty ? origin.host : alternative.host.lowercased()
                let entry = AltSvcEntry(protocolID: alternative.protocolID, host: host, port: alternative.port,
                                        expires: now + Double(alternative.maxAge), persist: alternative.persist)
                if !kept.contains(where: { $0.protocolID == entry.protocolID && $0.host == entry.host && $0.port == entry.port }) {
                    kept.append(entry)
                }
            }
            if kept.isEmpty { remove(origin) } else { store(kept, for: origin) }
        }
    }

    /// The unexpired alternatives of `origin`, in the server's order of preference.
    public func alternatives(for origin: AltSvcOrigin, now: Double) -> [AltSvcEntry] {
        (entries[origin] ?? []).filter { $0.expires > now }
    }

    /// Every origin's unexpired entries, oldest update first (what ``AltSvcCacheFile`` saves).
    public func allEntries(now: Double) -> [(origin: AltSvcOrigin, entry: AltSvcEntry)] {
        order.flatMap { origin in alternatives(for: origin, now: now).map { (origin, $0) } }
    }

    /// Adds one entry as loaded from a file, keeping the bounds.
    public mutating func insert(_ entry: AltSvcEntry, for origin: AltSvcOrigin) {
        guard protocols?.contains(entry.protocolID) ?? true else { return }
        var list = entries[origin] ?? []
        list.removeAll { $0.protocolID == entry.protocolID && $0.host == entry.host && $0.port == entry.port }
        guard list.count < maxEntriesPerOrigin else { return }
        list.append(entry)
        store(list, for: origin)
    }

    /// Forgets every entry of `origin`.
    public mutating func remove(_ origin: AltSvcOrigin) {
        if entries.removeValue(forKey: origin) != nil {
            order.removeAll { $0 == origin }
        }
    }

    /// Drops expired entries.
    public mutating func prune(now: Double) {
        for origin in order {
            let live = alternatives(for: origin, now: now)
            if live.isEmpty { remove(origin) } else { entries[origin] = live }
        }
    }

    private mutating func store(_ list: [AltSvcEntry], for origin: AltSvcOrigin) {
        if entries.updateValue(list, forKey: origin) != nil {
            order.removeAll { $0 == origin }
        }
        order.append(origin)
        while order.count > maxOrigins {
            entries[order.removeFirst()] = nil
        }
    }
}

/// Alternatives that failed, not tried again for a while (as Chromium's broken alternative
/// services): the first failure blocks one for `initialDelay`, each further failure doubles
/// that, up to `maxDelay`. A success forgets the history. I/O-free: time is passed in.
public struct BrokenAlternatives: Sendable, Hashable {
    /// One alternative endpoint: protocol, host and port.
    public struct Key: Sendable, Hashable {
        /// The protocol id.
        public var protocolID: String
        /// The host connected to.
        public var host: String
        /// The port connected to.
        public var port: Int

        /// Creates a key.
        public init(protocolID: String, host: String, port: Int) {
            self.protocolID = protocolID
            self.host = host.lowercased()
            self.port = port
        }
    }

    private struct Record: Sendable, Hashable {
        var failures: Int
        var until: Double
    }

    /// How long the first failure blocks an alternative, in seconds.
    public let initialDelay: Double
    /// The longest block, in seconds.
    public let maxDelay: Double
    /// The most alternatives remembered (the one blocked for the shortest time goes first).
    public let capacity: Int
    private var records: [Key: Record] = [:]

    /// Creates an empty memory. Chromium's defaults: 5 minutes, doubling up to 2 days.
    public init(initialDelay: Double = 300, maxDelay: Double = 172_800, capacity: Int = 1000) {
        self.initialDelay = max(0, initialDelay)
        self.maxDelay = max(self.initialDelay, maxDelay)
        self.capacity = max(1, capacity)
    }

    /// Records a failure at `now`; returns how long the alternative is now blocked, in seconds.
    @discardableResult
    public mutating func markBroken(_ key: Key, now: Double) -> Double {
        let failures = (records[key]?.failures ?? 0) + 1
        // 2^(failures-1), without overflowing for a long history.
        let delay = min(maxDelay, initialDelay * Double(1 << min(failures - 1, 40)))
        records[key] = Record(failures: failures, until: now + delay)
        if records.count > capacity, let victim = records.min(by: { $0.value.until < $1.value.until })?.key {
            records[victim] = nil
        }
        return delay
    }

    /// Whether the alternative is blocked at `now`.
    public func isBroken(_ key: Key, now: Double) -> Bool {
        guard let record = records[key] else { return false }
        return record.until > now
    }

    /// How many times in a row the alternative failed (0 when it never did, or worked since).
    public func failures(_ key: Key) -> Int { records[key]?.failures ?? 0 }

    /// The alternative worked: forget its failures.
    public mutating func markWorking(_ key: Key) {
        records[key] = nil
    }
}
