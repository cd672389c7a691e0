import Foundation
import HTTP2
import HTTP3
import HTTPAPI
import HTTPTypes
import NIOCore
import QUICTestSupport
import Testing
import HTTPTestSupport

/// One handler (``TestHandler``), one client API (``HTTPRoundTripper``), the same checks over
/// HTTP/3 and HTTP/2: nothing here knows which transport runs underneath, apart from the
/// counters a transport exposes for its own checks.
@Suite("End to end over HTTP/3 and HTTP/2: our client and our server")
struct EndToEndTests {
    @Test("GET and HEAD", arguments: TransportKind.allCases)
    func getAndHead(_ kind: TransportKind) async throws {
        let fixture = try await EndToEndFixture.start(kind)
        try await fixture.run(20) {
            let response = try await fixture.client.roundTrip(fixture.request(.get, "/hello"))
            #expect(response.head.status == .ok)
            #expect(response.head.headerFields[.contentType] == "text/plain")
            #expect(String(buffer: try await response.body.collect(upTo: 1024)) == "hello")
            #expect(response.metadata.protocolVersion == kind.version)
            #expect(response.metadata.connectionReused == false)

            let head = try await fixture.client.roundTrip(fixture.request(.head, "/hello"))
            #expect(head.head.status == .ok)
            #expect(head.head.headerFields[.contentLength] == "5")
            #expect(try await head.body.collect(upTo: 1024).readableBytes == 0)
            #expect(head.metadata.connectionReused == true)

            let missing = try await fixture.client.roundTrip(fixture.request(.get, "/nope"))
            #expect(missing.head.status == .notFound)
            _ = try await missing.body.collect(upTo: 1024)

            let context = try await fixture.client.roundTrip(fixture.request(.get, "/context"))
            #expect(String(buffer: try await context.body.collect(upTo: 1024)) == "\(kind.version.rawValue) localhost true")
            // Where the handler ran: on an event loop thread only when placed there.
            #expect(context.head.headerFields[TestHandler.onEventLoop] == (kind.execution == .eventLoop ? "true" : "false"))
        }
        await fixture.stop()
    }

    @Test("POST with a 100 MB streamed upload, compared by hash", arguments: TransportKind.protocols)
    func largeUpload(_ kind: TransportKind) async throws {
        let fixture = try await EndToEndFixture.start(kind)
        try await fixture.runHeavy(240) {
            let total = 100 << 20
            let body = HTTPBody(LazyPattern(seed: 5, total: total), length: Int64(total))
            let expectedHash = await PatternGenerator.hash(seed: 5, total: total)
            let response = try await fixture.client.roundTrip(fixture.request(.post, "/sha256"), body: body)
            #expect(response.head.status == .ok)
            let text = String(buffer: try await response.body.collect(upTo: 1024))
            #expect(text == "\(total) \(hex(expectedHash))")
        }
        await fixture.stop()
    }

    @Test("a 100 MB streamed download, compared by hash", arguments: TransportKind.protocols)
    func largeDownload(_ kind: TransportKind) async throws {
        let fixture = try await EndToEndFixture.start(kind)
        try await fixture.runHeavy(240) {
            let total = 100 << 20
            let response = try await fixture.client.roundTrip(fixture.request(.get, "/bytes?n=\(total)&seed=9"))
            #expect(response.body.length == Int64(total))
            let (hash, received) = try await hashBody(response.body)
            let expectedHash = await PatternGenerator.hash(seed: 9, total: total)
            #expect(received == total)
            #expect(hash == expectedHash)
        }
        await fixture.stop()
    }

    @Test("1,000 concurrent requests share one connection", arguments: TransportKind.allCases)
    func thousandRequests(_ kind: TransportKind) async throws {
        let fixture = try await EndToEndFixture.start(kind)
        try await fixture.run(120) {
            let client = fixture.client
            let ok = try await withThrowingTaskGroup(of: Bool.self) { group in
                for index in 0..<1000 {
                    group.addTask {
                        var fields = HTTPFields()
                        // Repeated custom fields are what the header compression tables are for.
                        fields[HTTPField.Name("x-test-client")!] = "swift-h3 concurrency test"
                        fields[.userAgent] = "swift-h3-tests/1.0"
                        let response = try await client.roundTrip(fixture.request(.post, "/echo", fields: fields),
                                                                  body: HTTPBody(string: "request \(index)"))
                        let text = String(buffer: try await response.body.collect(upTo: 1024))
                        return response.head.status == .ok && text == "request \(index)"
                    }
                }
                var count = 0
                for try await success in group where success { count += 1 }
                return count
            }
            #expect(ok == 1000)
            #expect(await fixture.connectionsOpened() == 1, "one connection carried every request")
            if let (server, client) = fixture.http3 {
                let clientStats = await client.statistics()
                let session = try #require(clientStats.sessions.first)
                #expect(session.requestStreamsOpened == 1000)
                // The client counts a stream until nghttp3 closes it on this side, and the server
                // grants new credit (MAX_STREAMS) as soon as its own side of a stream is closed, so
                // the client may briefly count more than 100 open: it filled the limit at least
                // once. The server itself never has more than its MAX_STREAMS (checked below).
                #expect(session.peakConcurrentRequestStreams >= 100,
                        "peak \(session.peakConcurrentRequestStreams): the server's MAX_STREAMS is 100")
                // Beyond the stream type byte and the capacity instruction (4 bytes), the encoder
                // streams carried insertion instructions.
                #expect(session.qpackEncoderBytesSent > 8, "client inserted into the server's QPACK table")
                #expect(session.qpackEncoderBytesReceived > 8, "server inserted into the client's QPACK table")
                let serverStats = try await server.statistics()
                #expect(serverStats.count == 1)
                let serverPeak = serverStats.first?.peakConcurrentRequestStreams ?? 0
                #expect((2...100).contains(serverPeak), "server peak \(serverPeak): its MAX_STREAMS is 100")
                #expect(serverStats.first?.qpackEncoderBytesReceived == session.qpackEncoderBytesSent)
                #expect(serverStats.first?.qpackEncoderBytesSent == session.qpackEncoderBytesReceived)
            }
            if let (server, _) = fixture.http2 {
                let stats = server.statistics
                #expect(stats.requests == 1000)
                #expect(stats.http2Connections == 1)
                // Streams ran concurrently, never beyond SETTINGS_MAX_CONCURRENT_STREAMS (100).
                #expect((2...100).contains(stats.peakConcurrentStreams), "peak \(stats.peakConcurrentStreams)")
            }
        }
        await fixture.stop()
    }

    @Test("a 103 Early Hints head before the final response: the client gets the final head and body", arguments: TransportKind.allCases)
    func earlyHints(_ kind: TransportKind) async throws {
        let fixture = try await EndToEndFixture.start(kind)
        try await fixture.run(20) {
            let response = try await fixture.client.roundTrip(fixture.request(.get, "/hints"))
            #expect(response.head.status == .ok)
            #expect(response.head.headerFields[HTTPField.Name("link")!] == nil, "the hint's fields stay with the 103")
            #expect(String(buffer: try await response.body.collect(upTo: 1024)) == "hinted")
        }
        await fixture.stop()
    }

    @Test("trailers travel both ways", arguments: TransportKind.allCases)
    func trailers(_ kind: TransportKind) async throws {
        let fixture = try await EndToEndFixture.start(kind)
        try await fixture.run(20) {
            var requestTrailers = HTTPFields()
            requestTrailers[HTTPField.Name("x-client-trailer")!] = "from the client"
            let body = HTTPBody(string: "twelve bytes", trailers: requestTrailers)
            let response = try await fixture.client.roundTrip(fixture.request(.post, "/trailers"), body: body)
            #expect(String(buffer: try await response.body.collect(upTo: 1024)) == "twelve bytes")
            let trailers = try await response.body.trailers()
            #expect(trailers?[HTTPField.Name("x-checksum")!] == "12")
            #expect(trailers?[HTTPField.Name("x-echo-trailer")!] == "from the client")
        }
        await fixture.stop()
    }

    @Test("a throwing handler yields a 500, or a reset after the head, and the connection keeps serving",
          arguments: TransportKind.allCases)
    func throwingHandler(_ kind: TransportKind) async throws {
        let fixture = try await EndToEndFixture.start(kind)
        try await fixture.run(20) {
            let failed = try await fixture.client.roundTrip(fixture.request(.get, "/throw"))
            #expect(failed.head.status == .internalServerError)
            _ = try await failed.body.collect(upTo: 1024)

            // The reset may overtake the head on HTTP/3 (a QUIC stream reset lets the receiver
            // drop unread data), so it can end the round trip or the body read.
            await #expect(throws: HTTPError.streamReset(code: HTTP3ErrorCode.internalError)) {
                let partial = try await fixture.client.roundTrip(fixture.request(.get, "/throw-after-head"))
                #expect(partial.head.status == .ok)
                _ = try await partial.body.collect(upTo: 1024)
            }

            let after = try await fixture.client.roundTrip(fixture.request(.get, "/hello"))
            #expect(String(buffer: try await after.body.collect(upTo: 1024)) == "hello")
            #expect(after.metadata.connectionReused)
        }
        await fixture.stop()
    }

    @Test("cancelling the client's task cancels the request, and the handler sees it", arguments: TransportKind.allCases)
    func cancellation(_ kind: TransportKind) async throws {
        let fixture = try await EndToEndFixture.start(kind)
        try await fixture.run(20) {
            let client = fixture.client
            // The task signals once body bytes flow (the handler is streaming), then is cancelled.
            let (started, startedContinuation) = AsyncStream.makeStream(of: Void.self)
            let task = Task {
                let response = try await client.roundTrip(fixture.request(.get, "/stream-until-cancelled"))
                var count = 0
                for try await chunk in response.body {
                    if count == 0 { startedContinuation.yield() }
                    count += chunk.readableBytes
                }
                return count
            }
            var iterator = started.makeAsyncIterator()
            await iterator.next()
            task.cancel()
            let result = await task.result
            #expect(throws: (any Error).self) { try result.get() }
            var seen: String?
            for _ in 0..<300 {  // up to 30 s
                seen = await fixture.observations.value("cancel")
                if seen != nil { break }
                try await Task.sleep(for: .milliseconds(100))
            }
            let error = try #require(seen, "the handler never saw the cancellation")
            #expect(error.contains("H3_REQUEST_CANCELLED"), "handler saw: \(error)")
            // The connection still serves.
            let after = try await client.roundTrip(fixture.request(.get, "/hello"))
            #expect(after.head.status == .ok)
            _ = try await after.body.collect(upTo: 100)
        }
        await fixture.stop()
    }

    @Test("graceful shutdown: requests in flight complete, then the server closes", arguments: TransportKind.allCases)
    func gracefulShutdown(_ kind: TransportKind) async throws {
        let fixture = try await EndToEndFixture.start(kind)
        try await fixture.run(30) {
            let client = fixture.client
            let requests = (0..<10).map { _ in
                Task { () throws -> String in
                    // Long enough that all ten are in the handler at once even on a loaded machine.
                    let response = try await client.roundTrip(fixture.request(.get, "/slow?ms=3000"))
                    return String(buffer: try await response.body.collect(upTo: 100))
                }
            }
            // Wait until every request reached the handler.
            for _ in 0..<500 where await fixture.observations.inFlight < 10 {
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(await fixture.observations.inFlight == 10)
            await fixture.shutdownServer()
            for request in requests {
                #expect(try await request.value == "slow done")
            }
            // The handler counts a request as completed after its last write returns, which
            // may be a moment after the client has the whole response.
            for _ in 0..<250 where await fixture.observations.completed < 10 {
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(await fixture.observations.completed == 10)
            // The server is gone: a new request fails rather than hangs.
            let (fresh, shutdown) = fixture.makeClient()
            await #expect(throws: HTTPError.self) {
                _ = try await fresh.roundTrip(fixture.request(.get, "/hello"))
            }
            await shutdown()
        }
        await fixture.shutdownClient()
    }

    @Test("GOAWAY: requests in flight finish, waiting ones move to a new connection, nobody fails",
          arguments: TransportKind.allCases)
    func goawayMovesClient(_ kind: TransportKind) async throws {
        let fixture = try await EndToEndFixture.start(kind)
        try await fixture.run(60) {
            let client = fixture.client
            // 200 requests: 100 in flight (the server's stream limit), 100 waiting for a stream.
            let requests = (0..<200).map { index in
                Task { () throws -> String in
                    let response = try await client.roundTrip(fixture.request(.get, "/slow?ms=2000&i=\(index)"))
                    return String(buffer: try await response.body.collect(upTo: 100))
                }
            }
            // Up to 10 s for all 100 to reach the handler (a loaded machine is slow to start
            // them; a GOAWAY sent earlier would also catch requests still being opened).
            for _ in 0..<500 where await fixture.observations.inFlight < 100 {
                try await Task.sleep(for: .milliseconds(20))
            }
            await fixture.goAway()
            var done = 0
            for request in requests where try await request.value == "slow done" { done += 1 }
            #expect(done == 200)
            #expect(await fixture.connectionsOpened() == 2, "the waiting requests moved to a second connection")
            // Later requests use the new connection.
            let later = try await client.roundTrip(fixture.request(.get, "/hello"))
            #expect(later.metadata.connectionReused)
            _ = try await later.body.collect(upTo: 100)
        }
        await fixture.stop()
    }

    @Test("an oversized header section gets 431; the connection carries on", arguments: TransportKind.allCases)
    func oversizedHeaders(_ kind: TransportKind) async throws {
        let fixture = try await EndToEndFixture.start(kind, maxHeaderSize: 4096)
        try await fixture.run(20) {
            var fields = HTTPFields()
            fields[HTTPField.Name("x-huge")!] = String(repeating: "a", count: 8000)
            let response = try await fixture.client.roundTrip(fixture.request(.get, "/hello", fields: fields))
            #expect(response.head.status.code == 431)
            _ = try await response.body.collect(upTo: 100)
            let good = try await fixture.client.roundTrip(fixture.request(.get, "/hello"))
            #expect(good.head.status == .ok)
            #expect(good.metadata.connectionReused)
            _ = try await good.body.collect(upTo: 100)
        }
        await fixture.stop()
    }
}

extension EndToEndTests {
    @Test("errors: nothing listening is 'connection refused', an untrusted certificate fails verification",
          arguments: TransportKind.allCases)
    func connectErrors(_ kind: TransportKind) async throws {
        let fixture = try await EndToEndFixture.start(kind)
        try await fixture.run(30) {
            // A client that trusts only the system store does not accept the test CA's certificate.
            let (untrusted, shutdownUntrusted) = fixture.makeClient(trustingTestCA: false)
            await #expect {
                _ = try await untrusted.roundTrip(fixture.request(.get, "/hello"))
            } throws: { error in
                guard case HTTPError.certificateVerificationFailed = error else { return false }
                return true
            }
            await shutdownUntrusted()
            // Nothing listens on the port once the server is gone.
            await fixture.shutdownServer()
            let (fresh, shutdown) = fixture.makeClient()
            await #expect {
                _ = try await fresh.roundTrip(fixture.request(.get, "/hello"))
            } throws: { error in
                guard case HTTPError.connectionRefused = error else { return false }
                return true
            }
            await shutdown()
        }
        await fixture.shutdownClient()
    }
}
