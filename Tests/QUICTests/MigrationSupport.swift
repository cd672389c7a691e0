import CNgtcp2
import Foundation
import NIOCore
@testable import QUIC
import QUICTestSupport

/// A server for download tests: on every bidirectional stream it reads a request
/// "`<size> <seed>`", answers with `size` bytes of ``PatternGenerator`` output and finishes.
/// Keeps the connections it accepted, so tests can look at the server's side of the path.
final class DownloadServer: Sendable {
    let listener: QUICListener
    private let task: Task<Void, Never>
    private let accepted: AcceptedConnections

    var port: Int { listener.localAddress.port ?? 0 }

    init(host: String = "127.0.0.1", configuration: QUICServerConfiguration) async throws {
        listener = try await QUICListener.bind(host: host, port: 0, configuration: configuration)
        let listener = self.listener
        let accepted = AcceptedConnections()
        self.accepted = accepted
        task = Task {
            await withDiscardingTaskGroup { group in
                for await connection in listener.connections {
                    await accepted.append(connection)
                    group.addTask { await DownloadServer.serve(connection) }
                }
            }
        }
    }

    static func serve(_ connection: QUICConnection) async {
        await withDiscardingTaskGroup { group in
            for await stream in connection.incomingStreams where stream.isBidirectional {
                group.addTask {
                    do {
                        let request = String(buffer: try await stream.readAll(limit: 100)).split(separator: " ")
                        guard request.count == 2, let size = Int(request[0]), let seed = UInt64(request[1]) else {
                            await stream.reset(applicationError: 1)
                            return
                        }
                        var generator = PatternGenerator(seed: seed)
                        var sent = 0
                        while sent < size {
                            let chunk = generator.next(min(128 << 10, size - sent))
                            try await stream.write(chunk)
                            sent += chunk.readableBytes
                        }
                        try await stream.finish()
                    } catch {}
                }
            }
        }
    }

    /// The first connection the server accepted (waits for it, bounded by the caller's timeout).
    func firstConnection() async throws -> QUICConnection {
        while true {
            if let first = await accepted.first { return first }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    func close() async {
        await listener.close()
        task.cancel()
    }
}

private actor AcceptedConnections {
    private var connections: [QUICConnection] = []
    var first: QUICConnection? { connections.first }
    func append(_ connection: QUICConnection) { connections.append(connection) }
}

extension QUICConnection {
    /// The peer address of the connection's current path (it changes when the peer migrates
    /// or is rebound by a NAT; ``remoteAddress`` is the address at the handshake).
    func currentRemoteAddress() async throws -> SocketAddress {
        let core = self.core
        return try await core.eventLoop.submit { core.remoteAddress }.get()
    }

    /// The peer address of ngtcp2's current path: where the connection sends its packets now.
    /// (Not the source of the last datagram, which the connection notes before ngtcp2 decides
    /// whether to move to that path.)
    func sendingPathRemoteAddress() async throws -> SocketAddress? {
        let core = self.core
        return try await core.eventLoop.submit { () -> SocketAddress? in
            guard let conn = core.conn, let path = ngtcp2_conn_get_path(conn) else { return nil }
            return PathStorage.socketAddress(path.pointee.remote.addr, length: Int(path.pointee.remote.addrlen))
        }.get()
    }

    /// GnuTLS's description of the negotiated TLS parameters, such as
    /// "(TLS1.3)-(ECDHE-X25519)-(RSA-PSS-RSAE-SHA256)-(CHACHA20-POLY1305)".
    func tlsParameters() async throws -> String? {
        let core = self.core
        return try await core.eventLoop.submit { core.tlsParameters }.get()
    }
}

/// The result of a download: how many bytes arrived and their SHA-256.
struct Download {
    var received: Int
    var hash: [UInt8]
}

/// Downloads `total` bytes of the pattern `seed` from a ``DownloadServer`` over one stream,
/// calling `progress` with the byte count after every chunk (tests migrate from there).
func download(_ connection: QUICConnection, total: Int, seed: UInt64,
              progress: (Int) async throws -> Void = { _ in }) async throws -> Download {
    let stream = try await connection.openStream()
    try await stream.write(Array("\(total) \(seed)".utf8))
    try await stream.finish()
    var hash = SHA256()
    var received = 0
    while let chunk = try await stream.read() {
        hash.update(chunk)
        received += chunk.readableBytes
        try await progress(received)
    }
    return Download(received: received, hash: hash.finalize())
}

/// Runs a blocking call on a thread of its own, so that it never holds a thread of the
/// (2-thread) cooperative pool that the connections under test need.
func offCooperativePool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try body() }) }.start()
    }
}
