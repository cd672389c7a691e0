import Glibc

/// A UDP relay between one QUIC client and a server that delays, drops, corrupts, reorders,
/// duplicates and rate-limits datagrams, and rebinds its server-facing socket to emulate NAT
/// rebinding.
///
/// The client sends to ``listenAddress``; the relay forwards to the server from its own
/// server-facing socket and sends the server's replies back to the last client address it has
/// seen (so a client that migrates is followed). ECN marks are carried across. It runs on a
/// thread of its own from ``start(_:)`` until ``stop()``.
///
/// ```swift
/// var configuration = NetworkSimulator.Configuration(
///     listen: try NetworkAddress(parsing: "127.0.0.1:0"),
///     server: try NetworkAddress(parsing: "127.0.0.1:4433"))
/// configuration.toServer.lossProbability = 0.05
/// let relay = try NetworkSimulator.start(configuration)
/// // point the client at relay.listenAddress …
/// relay.stop()
/// print(relay.statistics)
/// ```
public final class NetworkSimulator: Sendable {
    /// The address the relay listens on for the client (with the actual port).
    public let listenAddress: NetworkAddress
    /// The configuration it was started with.
    public let configuration: Configuration
    private let shared: SharedState
    private let loop: RelayLoop
    private let thread: ThreadHandle

    /// Binds the sockets, opens the pcap file and starts the relay thread.
    /// - Throws: ``NetSimError`` for an invalid configuration, a socket that cannot be bound,
    ///   or a pcap file that cannot be opened.
    public static func start(_ configuration: Configuration) throws -> NetworkSimulator {
        try configuration.validate()
        guard GNUCalls.recvmmsg != nil, GNUCalls.sendmmsg != nil else {
            throw NetSimError(.socketFailure, "recvmmsg/sendmmsg are not available on this system")
        }
        let listenSocket = try DatagramSocket(binding: configuration.listenAddress)
        let serverSocket: DatagramSocket
        do {
            let host = configuration.outgoingHost
                ?? (configuration.serverAddress.isIPv6 ? "::1" : "127.0.0.1")
            let outgoing = try NetworkAddress(host: host, port: 0)
            guard outgoing.isIPv6 == configuration.serverAddress.isIPv6 else {
                throw NetSimError(.invalidAddress,
                                  "the outgoing address \(host) is not of the server's address family")
            }
            serverSocket = try DatagramSocket(binding: outgoing)
        } catch {
            listenSocket.close()
            throw error
        }
        let pcap: PcapWriter?
        let shared = SharedState()
        let loop: RelayLoop
        do {
            pcap = try configuration.pcapPath.map { try PcapWriter(path: $0) }
            loop = try RelayLoop(configuration: configuration, start: monotonicNanoseconds(),
                                 listenSocket: listenSocket, serverSocket: serverSocket, pcap: pcap,
                                 shared: shared)
        } catch {
            listenSocket.close()
            serverSocket.close()
            throw error
        }
        let listenAddress = listenSocket.localAddress.networkAddress ?? configuration.listenAddress
        let thread = try ThreadHandle.spawn(loop)
        return NetworkSimulator(listenAddress: listenAddress, configuration: configuration,
                                shared: shared, loop: loop, thread: thread)
    }

    private init(listenAddress: NetworkAddress, configuration: Configuration, shared: SharedState,
                 loop: RelayLoop, thread: ThreadHandle) {
        self.listenAddress = listenAddress
        self.configuration = configuration
        self.shared = shared
        self.loop = loop
        self.thread = thread
    }

    deinit {
        stop()
    }

    /// A snapshot of the counters. The relay publishes them after each round of batches, so they
    /// may trail what a peer has already received by a few batches; after ``stop()`` they are final.
    public var statistics: Statistics {
        shared.currentStatistics
    }

    /// The current local address of the server-facing socket: the client's address as the
    /// server sees it.
    public var outgoingAddress: NetworkAddress? {
        shared.currentOutgoingAddress
    }

    /// Moves the server-facing socket to a new port or local address, as a NAT rebinding would;
    /// the client is not told. Datagrams the server sends to the old address are lost.
    /// - Returns: The new local address of the server-facing socket.
    /// - Throws: ``NetSimError`` when the new socket cannot be bound or the relay has stopped.
    @discardableResult
    public func rebind(_ rebind: Rebind) throws -> NetworkAddress {
        if case .address(let host) = rebind {
            let address = try NetworkAddress(host: host, port: 0)
            guard address.isIPv6 == configuration.serverAddress.isIPv6 else {
                throw NetSimError(.invalidAddress, "\(host) is not of the server's address family")
            }
        }
        guard let id = shared.enqueue({ .rebind(rebind, id: $0) }) else {
            throw NetSimError(.stopped, "the simulator has been stopped")
        }
        loop.wake()
        return try shared.waitForResult(id).get()
    }

    /// Stops the relay: the thread is joined, the sockets closed and the pcap file completed.
    /// Datagrams still held back are dropped. Calling it again does nothing.
    public func stop() {
        guard shared.requestStop() else {
            thread.join()
            return
        }
        loop.wake()
        thread.join()
    }
}

/// A joinable pthread running a relay loop; `join()` may be called from several threads and
/// more than once.
/// `@unchecked Sendable`: `thread` is immutable; `joined` is read and written under `mutex`.
final class ThreadHandle: @unchecked Sendable {
    private let thread: pthread_t
    private var mutex = pthread_mutex_t()
    private var joined = false

    init(thread: pthread_t) {
        self.thread = thread
        pthread_mutex_init(&mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(&mutex)
    }

    static func spawn(_ loop: RelayLoop) throws -> ThreadHandle {
        var thread = pthread_t()
        let context = Unmanaged.passRetained(loop).toOpaque()
        let result = pthread_create(&thread, nil, { context in
            guard let context else { return nil }
            let loop = Unmanaged<RelayLoop>.fromOpaque(context).takeRetainedValue()
            loop.run()
            return nil
        }, context)
        guard result == 0 else {
            Unmanaged<RelayLoop>.fromOpaque(context).release()
            throw NetSimError(.socketFailure, "cannot start the relay thread", errno: result)
        }
        return ThreadHandle(thread: thread)
    }

    func join() {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        guard !joined else { return }
        // Never join from the relay thread itself (a deinit running there).
        if pthread_equal(pthread_self(), thread) != 0 {
            _ = pthread_detach(thread)
        } else {
            _ = pthread_join(thread, nil)
        }
        joined = true
    }
}
