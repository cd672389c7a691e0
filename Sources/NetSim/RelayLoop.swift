import Glibc

/// Monotonic nanoseconds.
func monotonicNanoseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) &* 1_000_000_000 &+ UInt64(now.tv_nsec)
}

/// The state of one direction of the flow, confined to the relay thread.
final class FlowDirection {
    var pipeline: ImpairmentPipeline
    let receiveBatch: ReceiveBatch
    let sendBatch: SendBatch
    let pool: BufferPool
    let held: DepartureQueue
    var statistics = DirectionStatistics()
    /// Datagrams that passed the routing checks: the 1-based index of the last one.
    var index = 0

    init(impairments: Impairments, seed: UInt64, stream: UInt64, maxHeld: Int) {
        pipeline = ImpairmentPipeline(impairments: impairments, seed: seed, stream: stream)
        receiveBatch = ReceiveBatch(capacity: 32)
        sendBatch = SendBatch(capacity: 128)
        pool = BufferPool(smallCount: maxHeld, largeCount: min(maxHeld, 64))
        held = DepartureQueue(capacity: pool.slotCount)
    }
}

/// The relay: one thread polling the client-facing and server-facing sockets and a wake-up
/// pipe, forwarding in batches. Everything but `shared` is confined to that thread once it runs.
final class RelayLoop: @unchecked Sendable {
    let shared: SharedState
    private let start: UInt64
    private let listenSocket: DatagramSocket
    private var serverSocket: DatagramSocket
    private let serverAddress: SocketAddress
    private var clientAddress: SocketAddress?
    private let toServer: FlowDirection
    private let toClient: FlowDirection
    private let pcap: PcapWriter?
    private let wakeRead: Int32
    private let wakeWrite: Int32
    private var timedRebinds: [(at: UInt64, rebind: NetworkSimulator.Rebind)]
    private var countedRebinds: [(after: Int, rebind: NetworkSimulator.Rebind)]
    private var statistics = NetworkSimulator.Statistics()
    private var pollDescriptors: [pollfd]

    init(configuration: NetworkSimulator.Configuration, start: UInt64, listenSocket: DatagramSocket,
         serverSocket: DatagramSocket, pcap: PcapWriter?, shared: SharedState) throws {
        var pipeDescriptors: [Int32] = [0, 0]
        guard pipe(&pipeDescriptors) == 0 else {
            throw NetSimError(.socketFailure, "cannot create the wake-up pipe", errno: errno)
        }
        for fd in pipeDescriptors {
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        }
        wakeRead = pipeDescriptors[0]
        wakeWrite = pipeDescriptors[1]
        self.shared = shared
        self.start = start
        self.listenSocket = listenSocket
        self.serverSocket = serverSocket
        self.pcap = pcap
        serverAddress = SocketAddress(configuration.serverAddress)
        toServer = FlowDirection(impairments: configuration.toServer, seed: configuration.seed,
                                 stream: 1, maxHeld: configuration.maxHeldDatagrams)
        toClient = FlowDirection(impairments: configuration.toClient, seed: configuration.seed,
                                 stream: 2, maxHeld: configuration.maxHeldDatagrams)
        toServer.sendBatch.setDestination(serverAddress)
        timedRebinds = []
        countedRebinds = []
        for scheduled in configuration.scheduledRebinds {
            switch scheduled.trigger {
            case .after(let delay):
                timedRebinds.append((start + delay.nanosecondsClamped, scheduled.rebind))
            case .afterDatagrams(let count):
                countedRebinds.append((count, scheduled.rebind))
            }
        }
        timedRebinds.sort { $0.at < $1.at }
        pollDescriptors = [pollfd](repeating: pollfd(), count: 3)
        shared.publish(outgoing: serverSocket.localAddress.networkAddress)
    }

    deinit {
        _ = close(wakeRead)
        _ = close(wakeWrite)
    }

    /// Wakes the loop up to look at its commands.
    func wake() {
        var byte: UInt8 = 1
        _ = write(wakeWrite, &byte, 1)
    }

    // MARK: The loop

    func run() {
        var listenReadable = false
        var serverReadable = false
        while true {
            let (commands, stop) = shared.takeCommands()
            if stop { break }
            for command in commands {
                switch command {
                case .rebind(let rebind, let id):
                    shared.answer(id, Result { try self.rebind(rebind) }.mapError { error in
                        error as? NetSimError ?? NetSimError(.socketFailure, "\(error)")
                    })
                }
            }
            var now = monotonicNanoseconds()
            while let next = timedRebinds.first, next.at <= now {
                timedRebinds.removeFirst()
                scheduledRebind(next.rebind)
            }
            if listenReadable { receive(on: listenSocket.descriptor, into: toServer) }
            if serverReadable { receive(on: serverSocket.descriptor, into: toClient) }
            now = monotonicNanoseconds()
            releaseAndFlush(toServer, now: now)
            releaseAndFlush(toClient, now: now)
            shared.publish(statistics(with: pcap?.writeErrors ?? 0))

            // Read a side only while the batch it feeds is empty (back-pressure); wait for a
            // side to become writable while its batch is blocked.
            let serverOut = toServer.sendBatch
            let clientOut = toClient.sendBatch
            pollDescriptors[0] = pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0)
            pollDescriptors[1] = pollfd(
                fd: listenSocket.descriptor,
                events: Int16((serverOut.isEmpty ? POLLIN : 0) | (clientOut.isEmpty ? 0 : POLLOUT)),
                revents: 0)
            pollDescriptors[2] = pollfd(
                fd: serverSocket.descriptor,
                events: Int16((clientOut.isEmpty ? POLLIN : 0) | (serverOut.isEmpty ? 0 : POLLOUT)),
                revents: 0)
            var deadline = UInt64.max
            if serverOut.isEmpty, let first = toServer.held.first { deadline = min(deadline, first.deliverAt + start) }
            if clientOut.isEmpty, let first = toClient.held.first { deadline = min(deadline, first.deliverAt + start) }
            if let next = timedRebinds.first { deadline = min(deadline, next.at) }
            let ready = wait(until: deadline)
            if ready > 0, pollDescriptors[0].revents != 0 {
                var drain = [UInt8](repeating: 0, count: 64)
                while read(wakeRead, &drain, drain.count) > 0 {}
            }
            let readMask = Int16(POLLIN | POLLERR)
            listenReadable = ready > 0 && pollDescriptors[1].revents & readMask != 0
            serverReadable = ready > 0 && pollDescriptors[2].revents & readMask != 0
        }
        finish()
    }

    private func wait(until deadline: UInt64) -> Int32 {
        let result: Int32 = pollDescriptors.withUnsafeMutableBufferPointer { fds in
            if deadline == UInt64.max {
                return poll(fds.baseAddress, nfds_t(fds.count), -1)
            }
            let now = monotonicNanoseconds()
            let remaining = deadline > now ? deadline - now : 0
            if let ppoll = GNUCalls.ppoll {
                var timeout = timespec(tv_sec: Int(remaining / 1_000_000_000),
                                       tv_nsec: Int(remaining % 1_000_000_000))
                return ppoll(fds.baseAddress, nfds_t(fds.count), &timeout, nil)
            }
            return poll(fds.baseAddress, nfds_t(fds.count), Int32(clamping: (remaining + 999_999) / 1_000_000))
        }
        return result
    }

    private func finish() {
        // Datagrams still held are dropped with the relay; the counters say what was sent.
        pcap?.close()
        listenSocket.close()
        serverSocket.close()
        shared.markExited(statistics(with: pcap?.writeErrors ?? 0))
    }

    private func statistics(with pcapErrors: Int) -> NetworkSimulator.Statistics {
        var snapshot = statistics
        snapshot.toServer = toServer.statistics
        snapshot.toClient = toClient.statistics
        snapshot.pcapWriteErrors = pcapErrors
        return snapshot
    }

    // MARK: Receiving

    private func receive(on descriptor: Int32, into direction: FlowDirection) {
        let batch = direction.receiveBatch
        // A few rounds per wake-up, each only once the previous round has been sent.
        for _ in 0..<8 {
            guard direction.sendBatch.isEmpty else { return }
            let count = batch.receive(from: descriptor)
            guard count > 0 else { return }
            let now = monotonicNanoseconds() - start
            for i in 0..<count {
                handle(i, of: batch, in: direction, now: now)
            }
            releaseAndFlush(direction, now: now + start)
            if count < batch.capacity { return }
        }
    }

    private func handle(_ i: Int, of batch: ReceiveBatch, in direction: FlowDirection, now: UInt64) {
        let length = batch.length(i)
        direction.statistics.received += 1
        direction.statistics.receivedBytes += length
        let source = batch.source(i)
        if direction === toServer {
            if clientAddress.map({ !$0.sameEndpoint(as: source) }) ?? true {
                clientAddress = source
                toClient.sendBatch.setDestination(source)
            }
            if !countedRebinds.isEmpty {
                while let position = countedRebinds.firstIndex(where: { $0.after <= direction.index }) {
                    let rebind = countedRebinds.remove(at: position).rebind
                    // What was received before the rebinding leaves from the old socket.
                    _ = toServer.sendBatch.flush(through: serverSocket.descriptor) { entry, ok in
                        sent(entry, ok: ok, direction: toServer)
                    }
                    scheduledRebind(rebind)
                }
            }
        } else {
            guard clientAddress != nil, source.sameEndpoint(as: serverAddress) else {
                direction.statistics.droppedUnroutable += 1
                return
            }
        }
        direction.index += 1
        let verdict = direction.pipeline.decide(index: direction.index, size: length, now: now)
        if let reason = verdict.drop {
            switch reason {
            case .index: direction.statistics.droppedByIndex += 1
            case .blackhole: direction.statistics.droppedByBlackhole += 1
            case .loss: direction.statistics.droppedByLoss += 1
            case .queueOverflow: direction.statistics.droppedByQueueOverflow += 1
            }
            return
        }
        let bytes = batch.bytes(i)
        if let offset = verdict.corruptOffset {
            bytes.storeBytes(of: bytes.load(fromByteOffset: offset, as: UInt8.self) ^ verdict.corruptMask,
                             toByteOffset: offset, as: UInt8.self)
            direction.statistics.corrupted += 1
        }
        if verdict.duplicate { direction.statistics.duplicated += 1 }
        if verdict.reordered { direction.statistics.reordered += 1 }
        let copies = verdict.duplicate ? 2 : 1
        let trafficClass = batch.trafficClass(i)
        if verdict.deliverAt <= now, direction.held.isEmpty, !direction.sendBatch.isFull {
            // Fast path: straight from the receive buffer, which stays untouched until the
            // batch has been sent.
            for _ in 0..<copies {
                direction.sendBatch.append(bytes, length: length, trafficClass: trafficClass, slot: -1)
            }
            return
        }
        for _ in 0..<copies {
            guard let slot = direction.pool.acquire(length: length) else {
                direction.statistics.droppedByQueueOverflow += 1
                return
            }
            direction.pool.bytes(slot).copyMemory(from: bytes, byteCount: length)
            direction.held.push(deliverAt: verdict.deliverAt, slot: slot, length: length,
                                trafficClass: trafficClass)
        }
    }

    // MARK: Sending

    private func releaseAndFlush(_ direction: FlowDirection, now: UInt64) {
        let batch = direction.sendBatch
        let relativeNow = now - start
        while !batch.isFull, let first = direction.held.first, first.deliverAt <= relativeNow {
            _ = direction.held.popFirst()
            batch.append(direction.pool.bytes(first.slot), length: Int(first.length),
                         trafficClass: first.trafficClass, slot: first.slot)
        }
        guard !batch.isEmpty else { return }
        let descriptor = direction === toServer ? serverSocket.descriptor : listenSocket.descriptor
        _ = batch.flush(through: descriptor) { entry, ok in
            sent(entry, ok: ok, direction: direction)
        }
    }

    private func sent(_ entry: Int, ok: Bool, direction: FlowDirection) {
        let batch = direction.sendBatch
        let length = batch.length(entry)
        if ok {
            direction.statistics.forwarded += 1
            direction.statistics.forwardedBytes += length
            if let pcap {
                let toServerLeg = direction === toServer
                let source = toServerLeg ? serverSocket.localAddress : listenSocket.localAddress
                var destination = serverAddress
                if !toServerLeg {
                    destination.storage = batch.destination.pointee
                    destination.length = batch.destinationLength
                }
                pcap.record(payload: batch.bytes(entry), length: length,
                            trafficClass: batch.trafficClass(entry), source: source,
                            destination: destination)
            }
        } else {
            direction.statistics.droppedBySendError += 1
        }
        let slot = batch.slot(entry)
        if slot >= 0 { direction.pool.release(slot) }
    }

    // MARK: Rebinding

    private func scheduledRebind(_ rebind: NetworkSimulator.Rebind) {
        do {
            _ = try self.rebind(rebind)
        } catch {
            statistics.failedRebinds += 1
        }
    }

    /// Replaces the server-facing socket; returns its new local address.
    private func rebind(_ rebind: NetworkSimulator.Rebind) throws -> NetworkAddress {
        guard let current = serverSocket.localAddress.networkAddress else {
            throw NetSimError(.socketFailure, "the server-facing socket has no readable address")
        }
        let host: String
        switch rebind {
        case .port: host = current.host
        case .address(let address): host = address
        }
        let local = try NetworkAddress(host: host, port: 0)
        guard local.isIPv6 == serverAddress.isIPv6 else {
            throw NetSimError(.invalidAddress, "\(host) is not of the server's address family")
        }
        let replacement = try DatagramSocket(binding: local)
        serverSocket.close()
        serverSocket = replacement
        statistics.rebinds += 1
        let address = replacement.localAddress.networkAddress ?? local
        shared.publish(outgoing: address)
        shared.publish(statistics(with: pcap?.writeErrors ?? 0))
        return address
    }
}
