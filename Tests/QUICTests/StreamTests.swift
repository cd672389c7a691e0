import NIOCore
import Testing
@testable import QUIC
import QUICTestSupport

@Suite("Client and server on loopback")
struct StreamTests {
    @Test("handshake completes and ALPN is negotiated")
    func handshake() async throws {
        let server = try await EchoServer(configuration: serverConfiguration(alpn: ["other", "test"]))
        defer { Task { await server.close() } }
        try await withTimeout(30) {  // a hang guard: the full parallel suite can starve a light test
            let connection = try await QUICClient.connect(host: "127.0.0.1", port: server.port,
                                                          configuration: clientConfiguration())
            #expect(connection.negotiatedApplicationProtocol == "test")
            #expect(connection.remoteAddress.port == server.port)
            await connection.close()
            #expect(await connection.waitUntilClosed() == nil)
        }
    }

    @Test("1,000 concurrent bidirectional streams echo their data")
    func thousandStreams() async throws {
        let server = try await EchoServer(configuration: serverConfiguration())
        defer { Task { await server.close() } }
        try await withTimeout(60) {
            let connection = try await QUICClient.connect(host: "127.0.0.1", port: server.port,
                                                          configuration: clientConfiguration())
            let results = try await withThrowingTaskGroup(of: Bool.self) { group in
                for index in 0..<1000 {
                    group.addTask {
                        let stream = try await connection.openStream()
                        var generator = PatternGenerator(seed: UInt64(index + 1))
                        let payload = generator.next(1000 + index)
                        try await stream.write(payload)
                        try await stream.finish()
                        let echoed = try await stream.readAll(limit: 1 << 20)
                        return echoed == payload
                    }
                }
                var matched = 0
                for try await ok in group where ok { matched += 1 }
                return matched
            }
            #expect(results == 1000)
            await connection.close()
        }
    }

    @Test("a 50 MB stream arrives byte-exact (SHA-256 compared)")
    func largeStream() async throws {
        let server = try await EchoServer(configuration: serverConfiguration())
        defer { Task { await server.close() } }
        try await withHeavyTimeout(120) {
            let connection = try await QUICClient.connect(host: "127.0.0.1", port: server.port,
                                                          configuration: clientConfiguration())
            let stream = try await connection.openStream()
            let total = 50 << 20
            let echo = try await echoPattern(on: stream, total: total, seed: 42, chunk: 256 << 10)
            #expect(echo.received == total)
            #expect(echo.sentHash == echo.receivedHash)
            await connection.close()
        }
    }

    @Test("a unidirectional stream carries data one way")
    func unidirectional() async throws {
        let server = try await EchoServer(configuration: serverConfiguration())
        defer { Task { await server.close() } }
        // A guard against hangs, not a speed check: under the full parallel suite on two shared
        // cores this took more than 10 s twice (it takes ~50 ms alone).
        try await withTimeout(30) {
            let connection = try await QUICClient.connect(host: "127.0.0.1", port: server.port,
                                                          configuration: clientConfiguration())
            let stream = try await connection.openStream(bidirectional: false)
            #expect(!stream.isBidirectional)
            #expect(stream.isLocallyInitiated)
            try await stream.write(Array("one way".utf8))
            try await stream.finish()
            // The echo server answers on a unidirectional stream of its own.
            var iterator = connection.incomingStreams.makeAsyncIterator()
            let reply = try #require(await iterator.next())
            #expect(!reply.isBidirectional)
            #expect(!reply.isLocallyInitiated)
            let data = try await reply.readAll(limit: 1024)
            #expect(String(buffer: data) == "one way")
            await connection.close()
        }
    }

    @Test("a stream reset is seen by the peer with its code")
    func streamReset() async throws {
        let listener = try await QUICListener.bind(host: "127.0.0.1", port: 0, configuration: serverConfiguration())
        defer { Task { await listener.close() } }
        try await withTimeout(30) {  // a hang guard: the full parallel suite can starve a light test
            let serverSide = Task { () throws -> QUICError? in
                for await connection in listener.connections {
                    for await stream in connection.incomingStreams {
                        do {
                            while try await stream.read() != nil {}
                            return nil
                        } catch let error as QUICError {
                            return error
                        }
                    }
                }
                return nil
            }
            let connection = try await QUICClient.connect(host: "127.0.0.1", port: listener.localAddress.port ?? 0,
                                                          configuration: clientConfiguration())
            let stream = try await connection.openStream()
            try await stream.write(Array("partial".utf8))
            try await Task.sleep(for: .milliseconds(100))
            await stream.reset(applicationError: 0x77)
            #expect(try await serverSide.value == .streamReset(code: 0x77))
            await connection.close()
        }
    }

    @Test("STOP_SENDING from the reader fails the writer with its code")
    func stopSending() async throws {
        let listener = try await QUICListener.bind(host: "127.0.0.1", port: 0, configuration: serverConfiguration())
        defer { Task { await listener.close() } }
        try await withTimeout(30) {  // a hang guard: the full parallel suite can starve a light test
            let serverSide = Task {
                for await connection in listener.connections {
                    for await stream in connection.incomingStreams {
                        _ = try? await stream.read()
                        // The writer learns the code when the stream closes (ngtcp2 0.12 reports
                        // it only then): finish our side first, so that the close needs only
                        // network round trips and not another turn of this (possibly starved) task.
                        try? await stream.finish()
                        await stream.stopSending(applicationError: 0x55)
                        try? await Task.sleep(for: .seconds(2))
                        return
                    }
                }
            }
            let connection = try await QUICClient.connect(host: "127.0.0.1", port: listener.localAddress.port ?? 0,
                                                          configuration: clientConfiguration())
            let stream = try await connection.openStream()
            let error = await #expect(throws: QUICError.self) {
                for _ in 0..<10_000 {
                    try await stream.write(ByteBuffer(repeating: 1, count: 16 << 10))
                }
            }
            #expect(error == .streamStopSending(code: 0x55))
            serverSide.cancel()
            await connection.close()
        }
    }

    @Test("a stalled reader holds the sender within the flow-control window")
    func backpressure() async throws {
        let window: UInt64 = 256 << 10
        let listener = try await QUICListener.bind(
            host: "127.0.0.1", port: 0,
            configuration: serverConfiguration { $0.quic.initialMaxStreamData = window; $0.quic.maxStreamWindow = window })
        defer { Task { await listener.close() } }
        try await withTimeout(30) {
            let accepted = Task { () -> QUICStream? in
                for await connection in listener.connections {
                    for await stream in connection.incomingStreams { return stream }
                }
                return nil
            }
            let sendLimit = 128 << 10
            let connection = try await QUICClient.connect(
                host: "127.0.0.1", port: listener.localAddress.port ?? 0,
                configuration: clientConfiguration { $0.streamSendBufferLimit = sendLimit })
            let stream = try await connection.openStream()
            let total = 8 << 20
            let writer = Task {
                var generator = PatternGenerator(seed: 7)
                var written = 0
                while written < total {
                    let chunk = generator.next(64 << 10)
                    try await stream.write(chunk)
                    written += chunk.readableBytes
                }
                try await stream.finish()
            }
            let serverStream = try #require(await accepted.value)
            // Nobody reads on the server: after a while the sender must be stuck.
            try await Task.sleep(for: .milliseconds(700))
            let progress = try await stream.sendProgress()
            let buffered = try await serverStream.bufferedBytes()
            #expect(progress.acknowledged <= window, "peer acknowledged more than its window")
            #expect(progress.written <= window + UInt64(sendLimit) + (64 << 10), "writer was not suspended")
            #expect(buffered <= Int(window))
            #expect(progress.written < UInt64(total))
            // Now read everything: all bytes arrive, in order.
            var expected = PatternGenerator(seed: 7)
            var expectedHash = SHA256()
            for _ in 0..<(total / (64 << 10)) { expectedHash.update(expected.next(64 << 10)) }
            var hash = SHA256()
            var received = 0
            while let chunk = try await serverStream.read() {
                hash.update(chunk)
                received += chunk.readableBytes
            }
            try await writer.value
            #expect(received == total)
            #expect(hash.finalize() == expectedHash.finalize())
            await connection.close()
        }
    }
}
