import Glibc
import QUICLB

/// A stateless QUIC load balancer in front of several server instances: it routes every client
/// datagram by the server ID that QUIC-LB encodes in its destination connection ID
/// (``QUICLBDecoder``), falling back to a hash of the client's address and port only for
/// datagrams without a routable ID (a client's first Initials), as Katran- or Envoy-style QUIC
/// balancers do. With ``Routing/fourTuple`` it is a plain L4 balancer instead, to show what
/// goes wrong when a client's address changes.
///
/// Each client address gets a backend-facing socket of its own, so that a backend sees a
/// distinct address per client (and a client that migrates or is rebound appears at a new
/// address, as behind a real balancer); the backends' replies go back to that client from
/// the listening socket. It keeps no per-connection routing state: the only state is those
/// sockets and, for the statistics, the server-chosen IDs it sees.
///
/// ```swift
/// let balancer = try QUICLoadBalancer.start(.init(listen: try NetworkAddress(parsing: "127.0.0.1:0"),
///     backends: [.init(serverID: [1], address: a), .init(serverID: [2], address: b)],
///     quicLB: [try QUICLBConfiguration(configID: 0, serverIDLength: 1, nonceLength: 8)]))
/// // clients connect to balancer.listenAddress …
/// balancer.stop()
/// print(balancer.statistics)
/// ```
public final class QUICLoadBalancer: Sendable {
    /// The address clients send to (with the actual port).
    public let listenAddress: NetworkAddress
    /// The configuration it was started with.
    public let configuration: Configuration
    private let loop: BalancerLoop
    private let thread: ThreadHandle

    /// Binds the listening socket and starts the balancer thread.
    /// - Throws: ``NetSimError`` for an invalid configuration or a socket that cannot be bound.
    public static func start(_ configuration: Configuration) throws -> QUICLoadBalancer {
        try configuration.validate()
        let decoder: QUICLBDecoder?
        do {
            decoder = configuration.quicLB.isEmpty ? nil : try QUICLBDecoder(configuration.quicLB)
        } catch {
            throw NetSimError(.invalidConfiguration, error.description)
        }
        if configuration.routing == .connectionID && decoder == nil {
            throw NetSimError(.invalidConfiguration, "routing by connection ID needs a QUIC-LB configuration")
        }
        let listen = try DatagramSocket(binding: configuration.listenAddress)
        let loop = BalancerLoop(configuration: configuration, decoder: decoder, listen: listen)
        let thread: ThreadHandle
        do {
            thread = try ThreadHandle.spawn { loop.run() }
        } catch {
            listen.close()
            throw error
        }
        return QUICLoadBalancer(listenAddress: listen.localAddress.networkAddress ?? configuration.listenAddress,
                                configuration: configuration, loop: loop, thread: thread)
    }

    private init(listenAddress: NetworkAddress, configuration: Configuration, loop: BalancerLoop, thread: ThreadHandle) {
        self.listenAddress = listenAddress
        self.configuration = configuration
        self.loop = loop
        self.thread = thread
    }

    deinit {
        stop()
    }

    /// A snapshot of the counters (published after each round of datagrams; final after ``stop()``).
    public var statistics: Statistics {
        loop.shared.statistics
    }

    /// The backend index the 4-tuple hash gives a client address (what ``Routing/fourTuple``
    /// does with all its datagrams, and ``Routing/connectionID`` with unroutable ones).
    public func fourTupleBackend(for client: NetworkAddress) -> Int {
        BalancerLoop.fourTupleIndex(SocketAddress(client), backendCount: configuration.backends.count)
    }

    /// Stops the balancer: the thread is joined and the sockets closed. Calling it again does
    /// nothing.
    public func stop() {
        loop.shared.requestStop()
        thread.join()
    }
}

/// The balancer's counters and stop flag, shared between its thread and the API.
final class BalancerShared: @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    private var published = QUICLoadBalancer.Statistics()
    private var stopRequested = false

    init() { pthread_mutex_init(&mutex, nil) }
    deinit { pthread_mutex_destroy(&mutex) }

    private func locked<R>(_ body: () -> R) -> R {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return body()
    }

    var statistics: QUICLoadBalancer.Statistics { locked { published } }
    var shouldStop: Bool { locked { stopRequested } }
    func requestStop() { locked { stopRequested = true } }
    func publish(_ statistics: QUICLoadBalancer.Statistics) { locked { published = statistics } }
}

extension ThreadHandle {
    /// Starts a joinable thread running `body`.
    static func spawn(_ body: @escaping () -> Void) throws -> ThreadHandle {
        final class Box { let body: () -> Void; init(_ body: @escaping () -> Void) { self.body = body } }
        var thread = pthread_t()
        let context = Unmanaged.passRetained(Box(body)).toOpaque()
        let result = pthread_create(&thread, nil, { context in
            guard let context else { return nil }
            Unmanaged<Box>.fromOpaque(context).takeRetainedValue().body()
            return nil
        }, context)
        guard result == 0 else {
            Unmanaged<Box>.fromOpaque(context).release()
            throw NetSimError(.socketFailure, "cannot start the balancer thread", errno: result)
        }
        return ThreadHandle(thread: thread)
    }
}
