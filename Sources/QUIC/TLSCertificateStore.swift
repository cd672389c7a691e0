import NIOConcurrencyHelpers

/// A server's certificates, chosen per handshake by SNI, replaceable while it runs.
///
/// Put a store in ``QUICTLSConfiguration/serverCertificates``; every server built from that
/// configuration (HTTP/3 over QUIC, HTTP/2 over TCP, or both) serves its current set. After
/// ``replace(with:)`` returns, new handshakes use the new set; connections already open keep
/// the certificate they were given. A replacement is all or nothing: if any file is unreadable
/// or malformed, or any server cannot use it, it throws and the previous set keeps serving.
/// Safe to use from any thread.
///
/// ```swift
/// let store = try TLSCertificateStore(set)
/// tls.serverCertificates = store
/// ...
/// try store.replace(with: renewedSet)   // for example on SIGHUP
/// ```
public final class TLSCertificateStore: Sendable, Hashable {
    private struct State {
        var loaded: LoadedCertificateSet
        var set: TLSCertificateSet
        var consumers: [WeakConsumer] = []
        var generation = 0
    }

    private let state: NIOLockedValueBox<State>
    /// Serializes replacements (each prepares every consumer, then commits them all).
    private let replacing = NIOLock()

    /// Creates a store serving `set`.
    ///
    /// - Throws: ``QUICError`` when a file cannot be read or a certificate or key is unusable.
    public init(_ set: TLSCertificateSet) throws(QUICError) {
        state = NIOLockedValueBox(State(loaded: try LoadedCertificateSet(set), set: set))
    }

    /// The set being served.
    public var certificateSet: TLSCertificateSet { state.withLockedValue { $0.set } }

    /// How many times the set was replaced.
    public var generation: Int { state.withLockedValue { $0.generation } }

    /// The names each entry of the current set serves (given, or from its certificate), in entry order.
    public var servedNames: [[String]] { state.withLockedValue { $0.loaded.entries.map(\.names) } }

    /// Replaces the set for new handshakes. Reads every file first; if any is unreadable or
    /// malformed, or a running server cannot use the set, throws and changes nothing.
    public func replace(with set: TLSCertificateSet) throws(QUICError) {
        let loaded = try LoadedCertificateSet(set)
        // NIOLock.withLock rethrows untyped errors: lock and unlock by hand to keep QUICError.
        replacing.lock()
        defer { replacing.unlock() }
        let consumers = state.withLockedValue { state -> [any TLSCertificateConsumer] in
            state.consumers.removeAll { $0.consumer == nil }
            return state.consumers.compactMap(\.consumer)
        }
        var commits: [() -> Void] = []
        for consumer in consumers {
            do {
                commits.append(try consumer.prepare(loaded))
            } catch {
                throw .invalidArgument("certificate set refused: \(error)")
            }
        }
        commits.forEach { $0() }
        state.withLockedValue {
            $0.loaded = loaded
            $0.set = set
            $0.generation += 1
        }
    }

    /// Registers a transport that serves this store: it builds its form of the current set now
    /// (throwing if it cannot) and of every replacement. Held weakly.
    package func attach(_ consumer: any TLSCertificateConsumer) throws(QUICError) {
        replacing.lock()
        defer { replacing.unlock() }
        let loaded = state.withLockedValue { $0.loaded }
        do {
            try consumer.prepare(loaded)()
        } catch {
            throw .invalidArgument("certificate set refused: \(error)")
        }
        state.withLockedValue { $0.consumers.append(WeakConsumer(consumer: consumer)) }
    }

    public static func == (lhs: TLSCertificateStore, rhs: TLSCertificateStore) -> Bool { lhs === rhs }

    public func hash(into hasher: inout Hasher) { hasher.combine(ObjectIdentifier(self)) }
}

/// A transport's compiled form of a certificate set (GnuTLS credentials, NIOSSL contexts).
package protocol TLSCertificateConsumer: AnyObject, Sendable {
    /// Builds this transport's form of `set` without serving it yet, and returns what makes it
    /// the one served. Throws when the transport cannot use the set.
    func prepare(_ set: LoadedCertificateSet) throws -> () -> Void
}

private struct WeakConsumer {
    weak var consumer: (any TLSCertificateConsumer)?
}
