import NIOCore
import QUIC
import QUICSocket

extension HTTP3Server {
    /// What the server's UDP socket handed to and got from the kernel (for tests and diagnostics).
    package func socketStatistics() async throws -> UDPSocketStatistics {
        let endpoint = self.endpoint
        return try await endpoint.eventLoop.submit { endpoint.socket.statistics }.get()
    }

    /// The NIO channel of the server's UDP socket (for adapters to frameworks that want a channel
    /// per request, such as Hummingbird's request context).
    package var socketChannel: any Channel { endpoint.socket.channel }
}
