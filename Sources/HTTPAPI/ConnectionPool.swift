import NIOConcurrencyHelpers

/// A connection a ``ConnectionPool`` can hold.
package protocol PooledConnection: AnyObject, Sendable {
    /// Whether it takes new requests (false once draining after GOAWAY, or closed).
    var isUsable: Bool { get }
    /// Closes the connection (requests on it end).
    func close() async
}

/// The number of requests a pooled connection carries (or will carry, while it is being opened).
package final class ConnectionLoad: Sendable {
    private let count: NIOLockedValueBox<Int>

    package init(_ initial: Int) { count = NIOLockedValueBox(initial) }

    package var value: Int { count.withLockedValue { $0 } }
    package func increment() { count.withLockedValue { $0 += 1 } }
    package func decrement() { count.withLockedValue { $0 = max(0, $0 - 1) } }
}

/// Decides which connection carries a request, for both transports: up to
/// `maxConnectionsPerKey` per origin, the least loaded first; a new one while every open one is
/// busy and the limit allows; a new one when the current ones are draining (GOAWAY) or closed.
/// Callers that find a connection being opened wait for it instead of opening another.
///
/// Every connection handed out counts one more in its ``ConnectionLoad``; the caller takes it
/// back (``ConnectionLoad/decrement()``) when its request ends.
package actor ConnectionPool<Key: Hashable & Sendable, Connection: PooledConnection> {
    /// One connection of an origin, open or being opened.
    private final class Entry {
        let load: ConnectionLoad
        var connection: Connection?
        var task: Task<Connection, any Error>?

        init(load: ConnectionLoad) { self.load = load }

        /// Open but no longer taking requests: leaves the pool (it finishes what it carries).
        var isDead: Bool { connection.map { !$0.isUsable } ?? false }
    }

    package let maxConnectionsPerKey: Int
    private var entries: [Key: [Entry]] = [:]
    /// Set by ``removeAll()``: the owner shut down, so no connection is handed out or kept.
    private var isShutDown = false
    package private(set) var connectionsOpened = 0

    package init(maxConnectionsPerKey: Int = 1) {
        self.maxConnectionsPerKey = max(1, maxConnectionsPerKey)
    }

    /// A connection for one request to `key`, counted in the returned load.
    package func connection(for key: Key, connect: @escaping @Sendable (ConnectionLoad) async throws -> Connection)
        async throws -> (connection: Connection, load: ConnectionLoad, reused: Bool, connectTime: Duration) {
        guard !isShutDown else { throw HTTPError.connectionClosed("the client was shut down") }
        var list = entries[key] ?? []
        list.removeAll { $0.isDead }
        entries[key] = list.isEmpty ? nil : list
        if let best = list.min(by: { $0.load.value < $1.load.value }),
           best.load.value == 0 || list.count >= maxConnectionsPerKey {
            best.load.increment()
            if let connection = best.connection { return (connection, best.load, true, .zero) }
            guard let task = best.task else { throw HTTPError.connectionClosed("the pooled connection vanished") }
            do {
                return (try await task.value, best.load, true, .zero)
            } catch {
                best.load.decrement()
                throw error
            }
        }
        let entry = Entry(load: ConnectionLoad(1))
        let started = ContinuousClock.now
        let load = entry.load
        let task = Task { try await connect(load) }
        entry.task = task
        entries[key, default: []].append(entry)
        do {
            let connection = try await task.value
            if isShutDown {
                // Opened while the owner shut down: not kept, so nothing outlives the shutdown.
                await connection.close()
                throw HTTPError.connectionClosed("the client was shut down")
            }
            entry.connection = connection
            entry.task = nil
            connectionsOpened += 1
            return (connection, load, false, ContinuousClock.now - started)
        } catch {
            entries[key]?.removeAll { $0 === entry }
            if entries[key]?.isEmpty == true { entries[key] = nil }
            throw error
        }
    }

    /// Takes `connection` out of the pool (requests in flight on it carry on).
    package func remove(_ connection: Connection) {
        for (key, list) in entries {
            let kept = list.filter { $0.connection !== connection }
            entries[key] = kept.isEmpty ? nil : kept
        }
    }

    /// Empties the pool for good (the owner is shutting down), returning the open connections
    /// for the caller to close. Later requests fail with ``HTTPError/connectionClosed(_:)``, and
    /// a connection still being opened is closed as soon as it is up.
    package func removeAll() -> [Connection] {
        isShutDown = true
        let all = entries.values.flatMap { $0.compactMap(\.connection) }
        entries.removeAll()
        return all
    }

    /// The open connections.
    package func connections() -> [Connection] {
        entries.values.flatMap { $0.compactMap(\.connection) }
    }

    /// An open, usable connection to `key` (the least loaded), without counting a request.
    package func existing(for key: Key) -> Connection? {
        (entries[key] ?? []).filter { $0.connection != nil && !$0.isDead }
            .min(by: { $0.load.value < $1.load.value })?.connection
    }

    /// The usable open connections per key, with their loads.
    package func loads() -> [Key: [Int]] {
        var result: [Key: [Int]] = [:]
        for (key, list) in entries {
            let loads = list.filter { $0.connection != nil && !$0.isDead }.map(\.load.value)
            if !loads.isEmpty { result[key] = loads }
        }
        return result
    }
}
