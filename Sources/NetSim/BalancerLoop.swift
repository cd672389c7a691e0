import Glibc
import QUICLB

/// A client address as a dictionary key.
struct EndpointKey: Hashable {
    var family: Int32
    var port: UInt16
    var address: [UInt8]

    init(_ address: SocketAddress) {
        family = address.family
        port = address.port
        self.address = address.withAddressBytes { Array($0) }
    }
}

/// The balancer's thread: polls the listening socket and one backend-facing socket per client
/// address, routes and relays. Everything but `shared` is confined to that thread.
final class BalancerLoop: @unchecked Sendable {
    let shared = BalancerShared()
    private let configuration: QUICLoadBalancer.Configuration
    private let decoder: QUICLBDecoder?
    private let listen: DatagramSocket
    private let backendAddresses: [SocketAddress]
    private var backendByServerID: [[UInt8]: Int] = [:]

    /// One client address and its backend-facing socket.
    private final class Flow {
        let socket: DatagramSocket
        let client: SocketAddress
        var lastActive: UInt64
        init(socket: DatagramSocket, client: SocketAddress, now: UInt64) {
            self.socket = socket
            self.client = client
            self.lastActive = now
        }
    }

    private var flows: [EndpointKey: Flow] = [:]
    private var flowsByDescriptor: [Int32: Flow] = [:]
    /// Server-chosen connection IDs (long-header source IDs of backend packets) → backend index.
    private var learnedOwners: [[UInt8]: Int] = [:]
    private var learnedLength: Int?
    private var statistics = QUICLoadBalancer.Statistics()
    private var buffer = [UInt8](repeating: 0, count: 65_536)
    private static let maxLearned = 200_000

    init(configuration: QUICLoadBalancer.Configuration, decoder: QUICLBDecoder?, listen: DatagramSocket) {
        self.configuration = configuration
        self.decoder = decoder
        self.listen = listen
        backendAddresses = configuration.backends.map { SocketAddress($0.address) }
        for (index, backend) in configuration.backends.enumerated() { backendByServerID[backend.serverID] = index }
        statistics.perBackend = Array(repeating: 0, count: configuration.backends.count)
    }

    /// FNV-1a over the address family, bytes and port, modulo the backend count.
    static func fourTupleIndex(_ address: SocketAddress, backendCount: Int) -> Int {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix(_ byte: UInt8) { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 }
        mix(UInt8(truncatingIfNeeded: address.family))
        address.withAddressBytes { for byte in $0 { mix(byte) } }
        mix(UInt8(address.port >> 8))
        mix(UInt8(address.port & 0xff))
        return Int(hash % UInt64(max(backendCount, 1)))
    }

    func run() {
        var descriptors: [pollfd] = []
        var lastSweep = monotonicNanoseconds()
        while !shared.shouldStop {
            descriptors.removeAll(keepingCapacity: true)
            descriptors.append(pollfd(fd: listen.descriptor, events: Int16(POLLIN), revents: 0))
            for fd in flowsByDescriptor.keys { descriptors.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0)) }
            let ready = poll(&descriptors, nfds_t(descriptors.count), 20)
            let now = monotonicNanoseconds()
            if ready > 0 {
                for entry in descriptors where entry.revents != 0 {
                    if entry.fd == listen.descriptor {
                        receiveFromClients(now: now)
                    } else if let flow = flowsByDescriptor[entry.fd] {
                        receiveFromBackends(flow)
                    }
                }
            }
            if now - lastSweep > 1_000_000_000 {
                expireFlows(now: now)
                lastSweep = now
            }
            shared.publish(statistics)
        }
        for flow in flows.values { flow.socket.close() }
        flows.removeAll()
        flowsByDescriptor.removeAll()
        listen.close()
        shared.publish(statistics)
    }

    // MARK: Client → backend

    private func receiveFromClients(now: UInt64) {
        for _ in 0..<256 {
            var from = SocketAddress()
            guard let count = receive(on: listen.descriptor, from: &from) else { return }
            statistics.clientDatagrams += 1
            let key = EndpointKey(from)
            let flow: Flow
            if let existing = flows[key] {
                flow = existing
            } else {
                do {
                    let host = from.isIPv6 ? "::1" : "127.0.0.1"
                    flow = Flow(socket: try DatagramSocket(binding: try NetworkAddress(host: host, port: 0)), client: from, now: now)
                } catch {
                    statistics.dropped += 1
                    continue
                }
                flows[key] = flow
                flowsByDescriptor[flow.socket.descriptor] = flow
                statistics.flows += 1
            }
            flow.lastActive = now
            let backend = route(count: count, client: from)
            statistics.perBackend[backend] += 1
            checkOwnership(count: count, chosen: backend)
            if !send(count: count, on: flow.socket.descriptor, to: backendAddresses[backend]) {
                statistics.dropped += 1
            }
        }
    }

    private func route(count: Int, client: SocketAddress) -> Int {
        if configuration.routing == .connectionID, let decoder {
            switch decoder.route(datagram: buffer[0..<count]) {
            case .server(let id, _):
                if let index = backendByServerID[id] {
                    statistics.routedByConnectionID += 1
                    return index
                }
                statistics.unknownServerID += 1
            case .fourTuple:
                break
            }
        }
        statistics.routedByFourTuple += 1
        return Self.fourTupleIndex(client, backendCount: backendAddresses.count)
    }

    /// Counts the datagram as misrouted when its connection belongs to another backend, as far
    /// as the balancer can tell: by the decoded server ID, or by a learned server-chosen ID.
    private func checkOwnership(count: Int, chosen: Int) {
        var owner: Int?
        if let decoder, case .server(let id, _) = decoder.route(datagram: buffer[0..<count]) {
            owner = backendByServerID[id]
        }
        var learnedOwner: Int?
        if let id = destinationID(count: count) { learnedOwner = learnedOwners[id] }
        if let learnedOwner, learnedOwner != chosen { statistics.misroutedByLearnedID += 1 }
        if (owner.map { $0 != chosen } ?? false) || (learnedOwner.map { $0 != chosen } ?? false) {
            statistics.misrouted += 1
        }
    }

    /// The destination ID of a client datagram: a long header's, or a short header's at the
    /// length the backends' IDs were seen to have.
    private func destinationID(count: Int) -> [UInt8]? {
        guard count > 0 else { return nil }
        if buffer[0] & 0x80 != 0 {
            guard count > 6 else { return nil }
            let length = Int(buffer[5])
            guard count >= 6 + length else { return nil }
            return Array(buffer[6..<(6 + length)])
        }
        guard let learnedLength, count > learnedLength else { return nil }
        return Array(buffer[1...learnedLength])
    }

    // MARK: Backend → client

    private func receiveFromBackends(_ flow: Flow) {
        for _ in 0..<256 {
            var from = SocketAddress()
            guard let count = receive(on: flow.socket.descriptor, from: &from) else { return }
            statistics.backendDatagrams += 1
            learnSourceID(count: count, from: from)
            if !send(count: count, on: listen.descriptor, to: flow.client) {
                statistics.dropped += 1
            }
        }
    }

    private func learnSourceID(count: Int, from: SocketAddress) {
        // Long header: flags, version (4), DCID length, DCID, SCID length, SCID.
        guard count > 7, buffer[0] & 0x80 != 0 else { return }
        let dcidLength = Int(buffer[5])
        guard count > 6 + dcidLength else { return }
        let scidLength = Int(buffer[6 + dcidLength])
        let start = 7 + dcidLength
        guard scidLength > 0, count >= start + scidLength,
              let backend = backendAddresses.firstIndex(where: { $0.sameEndpoint(as: from) }) else { return }
        let id = Array(buffer[start..<(start + scidLength)])
        if learnedOwners[id] == nil {
            if learnedOwners.count >= Self.maxLearned { learnedOwners.removeAll() }
            learnedOwners[id] = backend
            learnedLength = scidLength
            statistics.learnedConnectionIDs += 1
        }
    }

    private func expireFlows(now: UInt64) {
        let idle = UInt64(configuration.flowIdleTimeout.components.seconds) * 1_000_000_000
            + UInt64(configuration.flowIdleTimeout.components.attoseconds / 1_000_000_000)
        for (key, flow) in flows where now - flow.lastActive > idle {
            flows[key] = nil
            flowsByDescriptor[flow.socket.descriptor] = nil
            flow.socket.close()
        }
    }

    // MARK: Socket calls

    private func receive(on descriptor: Int32, from: inout SocketAddress) -> Int? {
        from.length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let count = buffer.withUnsafeMutableBytes { raw in
            withUnsafeMutablePointer(to: &from.storage) { storage in
                storage.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    recvfrom(descriptor, raw.baseAddress, raw.count, Int32(MSG_DONTWAIT), $0, &from.length)
                }
            }
        }
        return count >= 0 ? count : nil
    }

    private func send(count: Int, on descriptor: Int32, to address: SocketAddress) -> Bool {
        var address = address
        let sent = buffer.withUnsafeBytes { raw in
            withUnsafePointer(to: &address.storage) { storage in
                storage.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(descriptor, raw.baseAddress, count, 0, $0, address.length)
                }
            }
        }
        return sent == count
    }
}
