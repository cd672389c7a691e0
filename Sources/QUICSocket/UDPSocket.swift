#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import NIOConcurrencyHelpers
import NIOPosix

/// A datagram on its way out: the bytes of one or more QUIC packets and where they go.
///
/// The transport hands the socket layer whole batches of these, so that one flush (and,
/// with GSO, one `sendmsg`) carries many packets.
package struct OutboundDatagram: Sendable {
    /// The packet bytes.
    package var buffer: ByteBuffer
    /// Where the packet goes.
    package var remoteAddress: SocketAddress
    /// ECN codepoint to mark the packet with, if any.
    package var ecn: NIOExplicitCongestionNotificationState?
    /// The local address the packet leaves from, when the sender has more than one socket
    /// (a server with a preferred address); `nil`: the usual socket.
    package var localAddress: SocketAddress?

    package init(buffer: ByteBuffer, remoteAddress: SocketAddress, ecn: NIOExplicitCongestionNotificationState? = nil,
                 localAddress: SocketAddress? = nil) {
        self.buffer = buffer
        self.remoteAddress = remoteAddress
        self.ecn = ecn
        self.localAddress = localAddress
    }
}

/// A datagram that arrived, with the local address it arrived on when known.
package struct InboundDatagram {
    package var buffer: ByteBuffer
    package var remoteAddress: SocketAddress
    package var ecn: NIOExplicitCongestionNotificationState

    /// Creates a received datagram (the socket does; so does the datagram fuzz target, which
    /// hands its inputs to an endpoint without a network).
    package init(buffer: ByteBuffer, remoteAddress: SocketAddress,
                 ecn: NIOExplicitCongestionNotificationState = .transportNotCapable) {
        self.buffer = buffer
        self.remoteAddress = remoteAddress
        self.ecn = ecn
    }
}

/// Receives what a ``UDPSocket`` reads. All calls happen on the socket's event loop.
package protocol UDPSocketDelegate: AnyObject {
    /// A datagram arrived.
    func socket(_ socket: UDPSocket, didReceive datagram: InboundDatagram)
    /// The socket reported an error that did not close it (for example `ECONNREFUSED`
    /// after an ICMP port-unreachable on a connected socket).
    func socket(_ socket: UDPSocket, didReceiveError error: any Error)
    /// The socket closed.
    func socketDidClose(_ socket: UDPSocket)
}

/// Socket options for the UDP layer.
public struct UDPSocketOptions: Sendable, Hashable {
    /// Size of the kernel receive buffer in bytes (`SO_RCVBUF`), or `nil` for the system default.
    public var receiveBufferSize: Int?
    /// Size of the kernel send buffer in bytes (`SO_SNDBUF`), or `nil` for the system default.
    public var sendBufferSize: Int?
    /// Whether ECN codepoints are read from and written to the IP header.
    public var explicitCongestionNotification: Bool
    /// Whether runs of equal-sized packets leave in one `sendmsg` with `UDP_SEGMENT` (generic
    /// segmentation offload). Also off when the environment variable `SWIFT_H3_DISABLE_GSO` is
    /// set (to anything but `0`), or when the kernel refuses the option.
    public var segmentationOffload: Bool
    /// Whether the kernel may merge arriving datagrams of one flow into one read (`UDP_GRO`,
    /// generic receive offload); they are split again by their segment size. Also off when the
    /// environment variable `SWIFT_H3_DISABLE_GRO` is set (to anything but `0`), or when the
    /// kernel refuses the option.
    public var receiveOffload: Bool
    /// How many datagrams one `recvmmsg` reads (each into its own 64 KiB slot, so that a GRO
    /// read is never truncated); 1 reads one datagram per `recvmsg`. `nil`: 8 for an unconnected
    /// (server) socket, 1 for a connected (client) socket, which GRO already batches.
    public var receiveBatchSize: Int?
    /// Whether several sockets may bind the same address and port (`SO_REUSEPORT`): the
    /// kernel then spreads flows over them by their addresses, as a layer-4 load balancer
    /// spreads them over server instances. Every socket sharing the port must set it.
    public var reusePort: Bool

    /// Options with sensible defaults: 4 MiB buffers, ECN, GSO and GRO on, no port sharing.
    public init(receiveBufferSize: Int? = 4 << 20, sendBufferSize: Int? = 4 << 20,
                explicitCongestionNotification: Bool = true, segmentationOffload: Bool = true,
                receiveOffload: Bool = true, receiveBatchSize: Int? = nil, reusePort: Bool = false) {
        self.receiveBufferSize = receiveBufferSize
        self.sendBufferSize = sendBufferSize
        self.explicitCongestionNotification = explicitCongestionNotification
        self.segmentationOffload = segmentationOffload
        self.receiveOffload = receiveOffload
        self.receiveBatchSize = receiveBatchSize
        self.reusePort = reusePort
    }

    /// Whether the environment variable `name` asks to turn a feature off (set, and not `0` or empty).
    package static func environmentDisables(_ name: String) -> Bool {
        #if canImport(Glibc)
        guard let value = getenv(name) else { return false }
        let text = String(cString: value)
        return !text.isEmpty && text != "0"
        #else
        return false
        #endif
    }

    /// Whether GSO is wanted: the option, unless the environment turns it off.
    var wantsSegmentationOffload: Bool {
        segmentationOffload && !Self.environmentDisables("SWIFT_H3_DISABLE_GSO")
    }

    /// Whether GRO is wanted: the option, unless the environment turns it off.
    var wantsReceiveOffload: Bool {
        receiveOffload && !Self.environmentDisables("SWIFT_H3_DISABLE_GRO")
    }
}

/// Counters of what a ``UDPSocket`` handed to and got from the kernel.
package struct UDPSocketStatistics: Sendable, Equatable {
    /// Messages written (`sendmsg`/`sendmmsg` entries): with GSO, one message carries many datagrams.
    package var sentMessages = 0
    /// Datagrams (QUIC packets, GSO segments) in those messages.
    package var sentDatagrams = 0
    /// Reads delivered by the kernel (with GRO, one read may hold many datagrams).
    package var receivedMessages = 0
    /// Datagrams in those reads, after splitting GRO reads.
    package var receivedDatagrams = 0

    package init() {}

    /// The counts of several sockets (a multi-loop server's), added up.
    package static func summing(_ all: [UDPSocketStatistics]) -> UDPSocketStatistics {
        var total = UDPSocketStatistics()
        for one in all {
            total.sentMessages += one.sentMessages
            total.sentDatagrams += one.sentDatagrams
            total.receivedMessages += one.receivedMessages
            total.receivedDatagrams += one.receivedDatagrams
        }
        return total
    }
}

/// Receives a ``UDPSocket``'s traffic counts as they happen (a server's metrics). Called on the
/// socket's event loop; implementations must be cheap.
package protocol UDPSocketMetrics: AnyObject {
    /// One message went to the kernel: `bytes` in all, `segments` datagrams (more than 1 with GSO).
    func socketSent(bytes: Int, segments: Int)
    /// One read came from the kernel: `bytes` in all, `segments` datagrams (more than 1 with GRO).
    func socketReceived(bytes: Int, segments: Int)
}

/// One UDP socket on a NIO event loop: the bottom layer of the stack.
///
/// A socket is either *unconnected* (a server, or any endpoint that talks to many peers)
/// or *connected* to one peer (a client: the kernel then reports ICMP port-unreachable
/// as `ECONNREFUSED`, so a closed port is detected at once).
///
/// Not thread-safe: every method must be called on ``eventLoop``.
package final class UDPSocket {
    package let channel: any Channel
    package var eventLoop: any EventLoop { channel.eventLoop }
    private let handler: UDPSocketHandler
    /// The most packets per GSO message (1 when GSO is off or refused by the kernel).
    package private(set) var segmentLimit: Int
    /// Whether GRO is on (the kernel accepted `UDP_GRO`).
    package var receiveOffloadEnabled: Bool { handler.splitsReceiveOffload }
    /// What this socket sent and received so far.
    package var statistics: UDPSocketStatistics {
        var stats = sendStatistics
        stats.receivedMessages = handler.receivedMessages
        stats.receivedDatagrams = handler.receivedDatagrams
        return stats
    }
    private var sendStatistics = UDPSocketStatistics()
    /// Where traffic counts go as they happen (`nil`: nowhere). Set on the event loop.
    package var metrics: (any UDPSocketMetrics)?
    /// The reusable buffer that write passes lay their packets out in (see ``withSendBuffer(minimumCapacity:_:)``).
    private var sendBuffer = ByteBuffer()
    /// The reusable batch (its message list keeps its storage between passes).
    private var sendBatchStorage: GSOBatch<SocketAddress>?
    /// Whether a GSO message went out: from then on GSO writes are not watched.
    private var gsoVerified = false
    /// The error of a failed write, when one closed the socket. NIO closes a datagram channel on
    /// a write error without passing the error up the pipeline: an ICMP port unreachable that
    /// surfaces in `sendmsg` as `ECONNREFUSED` is only visible here.
    package private(set) var writeFailure: (any Error)?
    /// Set once a GSO send failed with EIO/EINVAL: later sockets of this process do not try GSO.
    private static let refusedAtRunTime = NIOLockedValueBox(false)

    private init(channel: any Channel, handler: UDPSocketHandler, segmentLimit: Int) {
        self.channel = channel
        self.handler = handler
        self.segmentLimit = segmentLimit
    }

    /// Whether GSO is on for this socket.
    package var segmentationOffloadEnabled: Bool { segmentLimit > 1 }

    /// The address this socket is bound to.
    package var localAddress: SocketAddress? { channel.localAddress }

    /// Sets the receiver of inbound datagrams. Call on the event loop.
    package func setDelegate(_ delegate: (any UDPSocketDelegate)?) {
        eventLoop.preconditionInEventLoop()
        handler.delegate = delegate
        handler.socket = self
    }

    /// Binds an unconnected socket.
    package static func bind(host: String, port: Int, options: UDPSocketOptions = .init(),
                             on eventLoop: any EventLoop) async throws -> UDPSocket {
        let handler = UDPSocketHandler()
        let batch = options.receiveBatchSize ?? 8
        let channel = try await bootstrap(handler: handler, options: options, receiveBatch: batch, on: eventLoop)
            .bind(host: host, port: port).get()
        return UDPSocket(channel: channel, handler: handler, segmentLimit: segmentLimit(handler))
    }

    /// Opens a socket connected to `remote`, bound to `localHost`:`localPort` (0 = any).
    package static func connect(to remote: SocketAddress, localHost: String? = nil, localPort: Int = 0,
                                options: UDPSocketOptions = .init(),
                                on eventLoop: any EventLoop) async throws -> UDPSocket {
        let handler = UDPSocketHandler()
        let host = localHost ?? (remote.protocol == .inet6 ? "::" : "0.0.0.0")
        let batch = options.receiveBatchSize ?? 1
        let channel = try await bootstrap(handler: handler, options: options, receiveBatch: batch, on: eventLoop)
            .bind(host: host, port: localPort).get()
        do {
            try await channel.connect(to: remote).get()
        } catch {
            try? await channel.close().get()
            throw error
        }
        return UDPSocket(channel: channel, handler: handler, segmentLimit: segmentLimit(handler))
    }

    /// Opens a socket connected to `remote` at once, without waiting for the event loop: the
    /// caller learns its local address now (ngtcp2 asks for a path inside a callback) and
    /// hands the descriptor to ``adopt(descriptor:options:on:)``.
    package static func openConnectedDescriptor(to remote: SocketAddress) throws -> (descriptor: CInt, local: SocketAddress) {
        let family = remote.protocol == .inet6 ? AF_INET6 : AF_INET
        let fd = Glibc.socket(family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw IOError(errnoCode: errno, reason: "socket") }
        let connected = remote.withSockAddr { addr, length in Glibc.connect(fd, addr, socklen_t(length)) }
        guard connected == 0 else {
            let code = errno
            Glibc.close(fd)
            throw IOError(errnoCode: code, reason: "connect")
        }
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let named = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        let local: SocketAddress?
        switch Int32(storage.ss_family) {
        case AF_INET:
            local = withUnsafePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { SocketAddress($0.pointee) } }
        case AF_INET6:
            local = withUnsafePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { SocketAddress($0.pointee) } }
        default:
            local = nil
        }
        guard named == 0, let local else {
            Glibc.close(fd)
            throw IOError(errnoCode: EINVAL, reason: "getsockname")
        }
        return (fd, local)
    }

    /// Wraps a descriptor from ``openConnectedDescriptor(to:)`` (the socket owns it from now on,
    /// also when this fails).
    package static func adopt(descriptor: CInt, options: UDPSocketOptions = .init(),
                              on eventLoop: any EventLoop) -> EventLoopFuture<UDPSocket> {
        let handler = UDPSocketHandler()
        return bootstrap(handler: handler, options: options, receiveBatch: options.receiveBatchSize ?? 1, on: eventLoop)
            .withBoundSocket(descriptor)
            .map { UDPSocket(channel: $0, handler: handler, segmentLimit: segmentLimit(handler)) }
    }

    private static func bootstrap(handler: UDPSocketHandler, options: UDPSocketOptions, receiveBatch: Int,
                                  on eventLoop: any EventLoop) -> DatagramBootstrap {
        // No SO_REUSEADDR: on Linux it lets the kernel hand an ephemeral UDP port that another
        // SO_REUSEADDR socket already uses to a new socket, and datagrams then go astray.
        // (UDP has no TIME_WAIT, so a restarted server binds its port again without it.)
        // Every read slot holds 64 KiB: a GRO read merges up to 64 KiB, and NIO's vector reads
        // split the buffer into equal slots, truncating what does not fit (DESIGN.md).
        let slots = min(max(receiveBatch, 1), 64)
        var bootstrap = DatagramBootstrap(group: eventLoop)
            .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: slots * 65_536))
            .channelOption(.maxMessagesPerRead, value: UInt(slots > 1 ? 8 : 64))
        if slots > 1 {
            bootstrap = bootstrap.channelOption(.datagramVectorReadMessageCount, value: slots)
        }
        if let size = options.receiveBufferSize {
            bootstrap = bootstrap.channelOption(.socketOption(.so_rcvbuf), value: SocketOptionValue(size))
        }
        if let size = options.sendBufferSize {
            bootstrap = bootstrap.channelOption(.socketOption(.so_sndbuf), value: SocketOptionValue(size))
        }
        if options.explicitCongestionNotification {
            bootstrap = bootstrap.channelOption(.explicitCongestionNotification, value: true)
        }
        if options.reusePort {
            bootstrap = bootstrap.channelOption(.socketOption(NIOBSDSocket.Option(rawValue: SO_REUSEPORT)), value: 1)
        }
        let wantsGSO = options.wantsSegmentationOffload, wantsGRO = options.wantsReceiveOffload
        return bootstrap.channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                handler.configureOffloads(channel: channel, segmentation: wantsGSO, receive: wantsGRO)
                try channel.pipeline.syncOperations.addHandler(handler)
            }
        }
    }

    /// The GSO segment limit for a socket whose handler has configured its offloads.
    private static func segmentLimit(_ handler: UDPSocketHandler) -> Int {
        handler.segmentationOffloadAccepted && !refusedAtRunTime.withLockedValue({ $0 })
            ? GSOBatch<SocketAddress>.maximumSegmentLimit : 1
    }

    /// Sends a batch of datagrams with one flush, one message each. Errors are reported to the delegate.
    package func send(_ datagrams: some Sequence<OutboundDatagram>) {
        eventLoop.preconditionInEventLoop()
        var last: AddressedEnvelope<ByteBuffer>?
        for datagram in datagrams {
            let metadata = datagram.ecn.map { AddressedEnvelope<ByteBuffer>.Metadata(ecnState: $0) }
            let envelope = AddressedEnvelope(remoteAddress: datagram.remoteAddress, data: datagram.buffer,
                                             metadata: metadata)
            if let previous = last { channel.write(previous, promise: nil) }
            last = envelope
            sendStatistics.sentMessages += 1
            sendStatistics.sentDatagrams += 1
            metrics?.socketSent(bytes: datagram.buffer.readableBytes, segments: 1)
        }
        guard let last else { return }
        channel.write(last, promise: watchedWritePromise())
        channel.flush()
    }

    /// A promise for the last write of a flush: if a write error closes the channel, every
    /// pending write fails with that error, and it is kept in ``writeFailure`` (one promise per
    /// flush, not per packet).
    private func watchedWritePromise() -> EventLoopPromise<Void> {
        let promise = eventLoop.makePromise(of: Void.self)
        promise.futureResult.assumeIsolated().whenFailure { [weak self] error in
            guard let self, self.writeFailure == nil, error is IOError else { return }
            self.writeFailure = error
        }
        return promise
    }

    /// Lays out one write pass and sends it: runs `body` with this socket's reusable send
    /// buffer (emptied, with room for at least `minimumCapacity` bytes) and an empty batch,
    /// into which `body` writes packets back to back and records each one; then sends the
    /// batch's messages with one flush (see ``send(_:batch:)``).
    ///
    /// The sent messages share the buffer's storage until the kernel has taken them; the next
    /// pass then reuses it, so no memory is allocated per packet (new storage is allocated
    /// only while NIO still holds the previous pass's bytes, when the socket was not writable).
    /// Returns the number of packets sent.
    @discardableResult
    package func sendBatch(minimumCapacity: Int, _ body: (inout ByteBuffer, inout GSOBatch<SocketAddress>) -> Void) -> Int {
        eventLoop.preconditionInEventLoop()
        // Taken out while in use, so that a nested pass (from a callback) gets its own.
        var buffer = ByteBuffer()
        swap(&buffer, &sendBuffer)
        var batch = sendBatchStorage.take() ?? GSOBatch(segmentLimit: segmentLimit)
        if batch.segmentLimit != segmentLimit { batch = GSOBatch(segmentLimit: segmentLimit) }
        buffer.clear(minimumCapacity: minimumCapacity)
        batch.removeAll()
        defer {
            batch.removeAll()
            sendBatchStorage = batch
            sendBuffer = buffer
        }
        body(&buffer, &batch)
        send(buffer, batch: batch)
        return batch.packetCount
    }

    /// Sends the messages of `batch`, whose packets are the readable bytes of `bytes`, with one
    /// flush: one `sendmsg`/`sendmmsg` entry per message, with `UDP_SEGMENT` when it carries several.
    package func send(_ bytes: ByteBuffer, batch: GSOBatch<SocketAddress>) {
        eventLoop.preconditionInEventLoop()
        guard !batch.messages.isEmpty else { return }
        var verifying = false
        for (index, message) in batch.messages.enumerated() {
            guard let data = bytes.getSlice(at: bytes.readerIndex + message.offset, length: message.length) else { continue }
            let segmentSize = segmentLimit > 1 ? message.kernelSegmentSize : nil
            var metadata: AddressedEnvelope<ByteBuffer>.Metadata?
            if let ecn = Self.ecnState(message.ecn) {
                metadata = .init(ecnState: ecn, packetInfo: nil, segmentSize: segmentSize)
            } else if segmentSize != nil {
                metadata = .init(ecnState: .transportNotCapable, packetInfo: nil, segmentSize: segmentSize)
            }
            let envelope = AddressedEnvelope(remoteAddress: message.destination, data: data, metadata: metadata)
            sendStatistics.sentMessages += 1
            sendStatistics.sentDatagrams += message.segments
            metrics?.socketSent(bytes: message.length, segments: message.segments)
            verifying = verifying || (segmentSize != nil && !gsoVerified)
            if index == batch.messages.count - 1 {
                let promise = watchedWritePromise()
                if verifying {
                    // Until one GSO message has gone out, watch the outcome: the kernel refuses
                    // GSO only when sending (EIO when the route's device cannot segment).
                    promise.futureResult.assumeIsolated().whenComplete { [weak self] result in
                        switch result {
                        case .success:
                            self?.gsoVerified = true
                        case .failure(let error):
                            if let io = error as? IOError, io.errnoCode == EIO || io.errnoCode == EINVAL { self?.gsoRefused() }
                        }
                    }
                }
                channel.write(envelope, promise: promise)
            } else {
                channel.write(envelope, promise: nil)
            }
        }
        channel.flush()
    }

    /// The kernel refused a GSO message (EIO: the route's device cannot segment; EINVAL):
    /// no more GSO on this socket or on sockets opened later. NIO closes a datagram channel on
    /// such a write error, so the connections on this socket end; sockets opened afterwards
    /// (a reconnecting client, a restarted listener) work without GSO.
    private func gsoRefused() {
        guard segmentLimit > 1 else { return }
        segmentLimit = 1
        Self.refusedAtRunTime.withLockedValue { $0 = true }
    }

    /// The ECN state NIO writes for a codepoint (0: not ECN-capable, no marking requested).
    package static func ecnState(_ codepoint: UInt8) -> NIOExplicitCongestionNotificationState? {
        switch codepoint & 0x3 {
        case 1: return .transportCapableFlag1
        case 2: return .transportCapableFlag0
        case 3: return .congestionExperienced
        default: return nil
        }
    }

    /// Closes the socket.
    package func close() {
        channel.close(promise: nil)
    }
}

@available(*, unavailable)
extension UDPSocket: Sendable {}

/// The pipeline handler behind ``UDPSocket``.
private final class UDPSocketHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>

    /// Strong: an open socket keeps its delegate (endpoint or client) alive; dropped on close.
    var delegate: (any UDPSocketDelegate)?
    weak var socket: UDPSocket?
    /// Whether reads carry GRO segment sizes to split by.
    private(set) var splitsReceiveOffload = false
    /// Whether the kernel accepted `UDP_SEGMENT` on this socket.
    private(set) var segmentationOffloadAccepted = false

    /// Turns on GSO and GRO where wanted and the kernel accepts them (on the channel's event
    /// loop, before the channel is used). A refused option is not an error: the socket works
    /// without it.
    func configureOffloads(channel: any Channel, segmentation: Bool, receive: Bool) {
        guard let options = channel.syncOptions else { return }
        if segmentation, System.supportsUDPSegmentationOffload {
            // A socket-wide segment size of 0 changes nothing but tells whether the kernel knows
            // UDP_SEGMENT; each message carries its own size in a control message.
            segmentationOffloadAccepted = (try? options.setOption(.datagramSegmentSize, value: 0)) != nil
        }
        if receive, System.supportsUDPReceiveOffload {
            do {
                try options.setOption(.datagramReceiveOffload, value: true)
                try options.setOption(.datagramReceiveSegmentSize, value: true)
                splitsReceiveOffload = true
            } catch {
                _ = try? options.setOption(.datagramReceiveOffload, value: false)
            }
        }
    }
    var receivedMessages = 0
    var receivedDatagrams = 0

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        receivedMessages += 1
        guard let socket, let delegate else { return }
        let ecn = envelope.metadata?.ecnState ?? .transportNotCapable
        let segmentSize = splitsReceiveOffload ? envelope.metadata?.segmentSize : nil
        if let metrics = socket.metrics {
            let bytes = envelope.data.readableBytes
            let segments = segmentSize.map { $0 > 0 ? max(1, (bytes + $0 - 1) / $0) : 1 } ?? 1
            metrics.socketReceived(bytes: bytes, segments: segments)
        }
        for datagram in GROSegments(envelope.data, segmentSize: segmentSize) {
            receivedDatagrams += 1
            delegate.socket(socket, didReceive: InboundDatagram(buffer: datagram, remoteAddress: envelope.remoteAddress,
                                                                ecn: ecn))
            // The delegate may have closed the socket (or dropped itself) while handling one.
            if self.delegate == nil { return }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let socket, let delegate else { return }
        delegate.socket(socket, didReceiveError: error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        let delegate = self.delegate
        self.delegate = nil
        guard let socket, let delegate else { return }
        delegate.socketDidClose(socket)
    }
}

extension SocketAddress {
    /// `IP:port` for IPv4, `[IP]:port` for IPv6, the description otherwise (for logs and metadata).
    package var endpointText: String {
        guard let ip = ipAddress, let port else { return description }
        if case .v6 = self { return "[\(ip)]:\(port)" }
        return "\(ip):\(port)"
    }
}
