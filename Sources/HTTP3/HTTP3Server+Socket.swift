import NIOCore
import QUIC
import QUICSocket

extension HTTP3Server {
    /// What the server's UDP sockets (one per loop, added up) handed to and got from the kernel
    /// (for tests and diagnostics).
    package func socketStatistics() async throws -> UDPSocketStatistics {
        var all: [UDPSocketStatistics] = []
        for (endpoint, _) in loops { all.append(try await endpoint.eventLoop.submit { endpoint.socket.statistics }.get()) }
        return .summing(all)
    }

    /// The NIO channel of the server's UDP socket (for adapters to frameworks that want a channel
    /// per request, such as Hummingbird's request context).
    package var socketChannel: any Channel { loops[0].endpoint.socket.channel }
}
