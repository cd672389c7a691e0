import Glibc
import NIOCore
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

    /// Options with sensible defaults: 4 MiB buffers, ECN on.
    public init(receiveBufferSize: Int? = 4 << 20, sendBufferSize: Int? = 4 << 20,
                explicitCongestionNotification: Bool = true) {
        self.receiveBufferSize = receiveBufferSize
        self.sendBufferSize = sendBufferSize
        self.explicitCongestionNotification = explicitCongestionNotification
    }
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

    private init(channel: any Channel, handler: UDPSocketHandler) {
        self.channel = channel
        self.handler = handler
    }

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
        let channel = try await bootstrap(handler: handler, options: options, on: eventLoop)
            .bind(host: host, port: port).get()
        return UDPSocket(channel: channel, handler: handler)
    }

    /// Opens a socket connected to `remote`, bound to `localHost`:`localPort` (0 = any).
    package static func connect(to remote: SocketAddress, localHost: String? = nil, localPort: Int = 0,
                                options: UDPSocketOptions = .init(),
                                on eventLoop: any EventLoop) async throws -> UDPSocket {
        let handler = UDPSocketHandler()
        let host = localHost ?? (remote.protocol == .inet6 ? "::" : "0.0.0.0")
        let channel = try await bootstrap(handler: handler, options: options, on: eventLoop)
            .bind(host: host, port: localPort).get()
        do {
            try await channel.connect(to: remote).get()
        } catch {
            try? await channel.close().get()
            throw error
        }
        return UDPSocket(channel: channel, handler: handler)
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
        return bootstrap(handler: handler, options: options, on: eventLoop).withBoundSocket(descriptor)
            .map { UDPSocket(channel: $0, handler: handler) }
    }

    private static func bootstrap(handler: UDPSocketHandler, options: UDPSocketOptions,
                                  on eventLoop: any EventLoop) -> DatagramBootstrap {
        // No SO_REUSEADDR: on Linux it lets the kernel hand an ephemeral UDP port that another
        // SO_REUSEADDR socket already uses to a new socket, and datagrams then go astray.
        // (UDP has no TIME_WAIT, so a restarted server binds its port again without it.)
        var bootstrap = DatagramBootstrap(group: eventLoop)
            .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 65_536))
            .channelOption(.maxMessagesPerRead, value: 64)
        if let size = options.receiveBufferSize {
            bootstrap = bootstrap.channelOption(.socketOption(.so_rcvbuf), value: SocketOptionValue(size))
        }
        if let size = options.sendBufferSize {
            bootstrap = bootstrap.channelOption(.socketOption(.so_sndbuf), value: SocketOptionValue(size))
        }
        if options.explicitCongestionNotification {
            bootstrap = bootstrap.channelOption(.explicitCongestionNotification, value: true)
        }
        return bootstrap.channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(handler)
            }
        }
    }

    /// Sends a batch of datagrams with one flush. Errors are reported to the delegate.
    package func send(_ datagrams: some Sequence<OutboundDatagram>) {
        eventLoop.preconditionInEventLoop()
        var wrote = false
        for datagram in datagrams {
            let metadata = datagram.ecn.map { AddressedEnvelope<ByteBuffer>.Metadata(ecnState: $0) }
            let envelope = AddressedEnvelope(remoteAddress: datagram.remoteAddress, data: datagram.buffer,
                                             metadata: metadata)
            channel.write(envelope, promise: nil)
            wrote = true
        }
        if wrote { channel.flush() }
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

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        guard let socket, let delegate else { return }
        delegate.socket(socket, didReceive: InboundDatagram(
            buffer: envelope.data, remoteAddress: envelope.remoteAddress,
            ecn: envelope.metadata?.ecnState ?? .transportNotCapable))
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
