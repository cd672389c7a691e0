import Glibc

/// What the API threads and the relay thread share, behind one mutex: commands going in,
/// counters and results coming out.
final class SharedState: @unchecked Sendable {
    enum Command {
        case rebind(NetworkSimulator.Rebind, id: Int)
    }

    private var mutex = pthread_mutex_t()
    private var condition = pthread_cond_t()

    // Guarded by `mutex`.
    private var commands: [Command] = []
    private var results: [Int: Result<NetworkAddress, NetSimError>] = [:]
    private var nextCommandID = 0
    private var statistics = NetworkSimulator.Statistics()
    private var outgoingAddress: NetworkAddress?
    private var stopRequested = false
    private var exited = false

    init() {
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&condition, nil)
    }

    deinit {
        pthread_cond_destroy(&condition)
        pthread_mutex_destroy(&mutex)
    }

    private func locked<R>(_ body: () throws -> R) rethrows -> R {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return try body()
    }

    // MARK: API side

    var currentStatistics: NetworkSimulator.Statistics { locked { statistics } }
    var currentOutgoingAddress: NetworkAddress? { locked { outgoingAddress } }

    /// Queues a command; returns its id, or nil when the loop has stopped.
    func enqueue(_ make: (Int) -> Command) -> Int? {
        locked {
            guard !stopRequested, !exited else { return nil }
            nextCommandID += 1
            commands.append(make(nextCommandID))
            return nextCommandID
        }
    }

    /// Waits until the loop has answered command `id` (or exited).
    func waitForResult(_ id: Int) -> Result<NetworkAddress, NetSimError> {
        locked {
            while results[id] == nil, !exited {
                pthread_cond_wait(&condition, &mutex)
            }
            return results.removeValue(forKey: id)
                ?? .failure(NetSimError(.stopped, "the simulator stopped"))
        }
    }

    /// Marks the loop as asked to stop; returns false when it already was.
    func requestStop() -> Bool {
        locked {
            defer { stopRequested = true }
            return !stopRequested
        }
    }

    // MARK: Loop side

    /// Takes the queued commands and whether to stop.
    func takeCommands() -> (commands: [Command], stop: Bool) {
        locked {
            guard !commands.isEmpty else { return ([], stopRequested) }
            let taken = commands
            commands.removeAll(keepingCapacity: true)
            return (taken, stopRequested)
        }
    }

    func answer(_ id: Int, _ result: Result<NetworkAddress, NetSimError>) {
        locked {
            results[id] = result
            pthread_cond_broadcast(&condition)
        }
    }

    func publish(_ snapshot: NetworkSimulator.Statistics) {
        locked { statistics = snapshot }
    }

    func publish(outgoing: NetworkAddress?) {
        locked { outgoingAddress = outgoing }
    }

    func markExited(_ snapshot: NetworkSimulator.Statistics) {
        locked {
            statistics = snapshot
            exited = true
            pthread_cond_broadcast(&condition)
        }
    }
}
