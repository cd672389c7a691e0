#if canImport(Glibc)
import Glibc
#endif
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

    package init(buffer: ByteBuffer, remoteAddress: SocketAddress, ecn: NIOExplicitCongestionNotificationState? = nil) {
        self.buffer = buffer
        self.remoteAddress = remoteAddress
        self.ecn = ecn
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
    /// Whether several sockets may bind the same address and port (`SO_REUSEPORT`): the
    /// kernel then spreads flows over them by their addresses, as a layer-4 load balancer
    /// spreads them over server instances. Every socket sharing the port must set it.
    public var reusePort: Bool

    /// Options with sensible defaults: 4 MiB buffers, ECN on, no port sharing.
    public init(receiveBufferSize: Int? = 4 << 20, sendBufferSize: Int? = 4 << 20,
                explicitCongestionNotification: Bool = true, reusePort: Bool = false) {
        self.receiveBufferSize = receiveBufferSize
        self.sendBufferSize = sendBufferSize
        self.explicitCongestionNotification = explicitCongestionNotification
        self.reusePort = reusePort
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
        if options.reusePort {
            bootstrap = bootstrap.channelOption(.socketOption(NIOBSDSocket.Option(rawValue: SO_REUSEPORT)), value: 1)
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
