import NIOCore
import QUIC
import QUICTestSupport

/// A server that echoes every stream: reads to FIN, writes the bytes back, finishes.
final class EchoServer: Sendable {
    let listener: QUICListener
    let task: Task<Void, Never>

    var port: Int { listener.localAddress.port ?? 0 }

    init(configuration: QUICServerConfiguration, port: Int = 0) async throws {
        listener = try await QUICListener.bind(host: "127.0.0.1", port: port, configuration: configuration)
        let listener = self.listener
        task = Task {
            await withDiscardingTaskGroup { group in
                for await connection in listener.connections {
                    group.addTask { await EchoServer.serve(connection) }
                }
            }
        }
    }

    static func serve(_ connection: QUICConnection) async {
        await withDiscardingTaskGroup { group in
            for await stream in connection.incomingStreams {
                group.addTask {
                    do {
                        if stream.isBidirectional {
                            while let chunk = try await stream.read() { try await stream.write(chunk) }
                            try await stream.finish()
                        } else {
                            // Echo a unidirectional stream on a new unidirectional stream.
                            let data = try await stream.readAll(limit: 16 << 20)
                            let reply = try await connection.openStream(bidirectional: false)
                            try await reply.write(data)
                            try await reply.finish()
                        }
                    } catch {}
                }
            }
        }
    }

    func close() async {
        await listener.close()
        task.cancel()
    }
}


/// What an echo round trip moved: bytes and SHA-256 of what was sent and of what came back.
struct EchoResult {
    let sentHash: [UInt8]
    let receivedHash: [UInt8]
    let received: Int
}

/// Writes `total` pattern bytes (seeded) on a bidirectional stream to an echo peer, finishes,
/// and reads the echo at the same time; hashes both directions.
func echoPattern(on stream: QUICStream, total: Int, seed: UInt64, chunk: Int = 128 << 10) async throws -> EchoResult {
    async let sentHash: [UInt8] = {
        var generator = PatternGenerator(seed: seed)
        var hash = SHA256()
        var sent = 0
        while sent < total {
            let piece = generator.next(min(chunk, total - sent))
            hash.update(piece)
            try await stream.write(piece)
            sent += piece.readableBytes
        }
        try await stream.finish()
        return hash.finalize()
    }()
    var hash = SHA256()
    var received = 0
    while let piece = try await stream.read() {
        hash.update(piece)
        received += piece.readableBytes
    }
    return EchoResult(sentHash: try await sentHash, receivedHash: hash.finalize(), received: received)
}
