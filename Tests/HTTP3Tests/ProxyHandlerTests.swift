import Foundation
import HTTP2
import HTTP3
import HTTPAPI
import HTTPProxy
import HTTPTypes
import NIOConcurrencyHelpers
import NIOCore
import QUIC
import QUICTestSupport
import Testing

/// `ProxyHandler` in the library: an HTTP/3 server in front of an HTTP/2 backend (our
/// HTTP2Server), with a streamed body and trailers both ways.
@Suite("ProxyHandler to an HTTP/2 backend")
struct ProxyHandlerTests {
    let pki = TestPKI.shared

    @Test("the HTTP/2 backend sees the client's :authority and the forwarding fields; bodies and trailers pass both ways")
    func http2Backend() async throws {
        let seen = NIOLockedValueBox<HTTPRequest?>(nil)
        let seenTrailers = NIOLockedValueBox<HTTPFields?>(nil)
        // The backend echoes the body and answers with a trailer.
        let backend = try await HTTP2Server.bind(
            configuration: .init(host: "127.0.0.1", port: 0, tls: pki.serverTLS(), gracefulShutdownTimeout: .seconds(2)),
            handler: ClosureHTTPHandler { request, body, _, response in
                seen.withLockedValue { $0 = request }
                try await response.writeHead(HTTPResponse(status: .ok))
                for try await chunk in body { try await response.write(chunk) }
                let trailers = try await body.trailers()
                seenTrailers.withLockedValue { $0 = trailers }
                try await response.finish(trailers: [HTTPField.Name("x-backend-trailer")!: "done"])
            })
        let backendTLS = pki.clientTLS(alpn: ["h2"], serverName: nil)
        let proxy = try ProxyHandler(configuration: .init(backend: "https://localhost:\(backend.localAddress.port ?? 0)",
                                                          backendProtocol: .http2, backendTLS: backendTLS))
        let front = try await HTTP3Server.bind(configuration: .init(host: "127.0.0.1", port: 0, tls: pki.serverTLS(alpn: ["h3"]),
                                                                    gracefulShutdownTimeout: .seconds(2)),
                                               handler: proxy)
        let client = HTTP3Transport(configuration: .init(tls: pki.clientTLS(alpn: ["h3"])))
        let port = front.localAddress.port ?? 0
        var request = HTTPRequest(method: .post, scheme: "https", authority: "localhost:\(port)", path: "/echo")
        request.headerFields[HTTPField.Name("x-remote-user")!] = "admin"
        request.headerFields[HTTPField.Name("te")!] = "trailers"
        var generator = PatternGenerator(seed: 7)
        let chunks = (0..<32).map { _ in generator.next(64 << 10) }
        var expected = ByteBuffer()
        for var chunk in chunks { expected.writeBuffer(&chunk) }
        let body = HTTPBody(StreamOfChunks(chunks: chunks), trailers: { [HTTPField.Name("x-client-trailer")!: "sent"] })
        do {
            try await withTimeout(60) { [request, expected] in
                let response = try await client.roundTrip(request, body: body)
                #expect(response.head.status == .ok)
                let echoed = try await response.body.collect(upTo: 8 << 20)
                #expect(echoed == expected, "\(echoed.readableBytes) bytes, expected \(expected.readableBytes)")
                let trailers = try await response.body.trailers()
                #expect(trailers?[HTTPField.Name("x-backend-trailer")!] == "done", "\(String(describing: trailers))")
            }
            let backendSaw = try #require(seen.withLockedValue { $0 })
            #expect(backendSaw.authority == "localhost:\(port)")
            #expect(backendSaw.headerFields[HTTPField.Name("x-remote-user")!] == nil)
            #expect(backendSaw.headerFields[HTTPField.Name("te")!] == nil, "TE is hop-by-hop")
            #expect(backendSaw.headerFields[HTTPField.Name("x-forwarded-proto")!] == "https")
            #expect(backendSaw.headerFields[HTTPField.Name("x-forwarded-for")!] == "127.0.0.1")
            #expect(backendSaw.headerFields[HTTPField.Name("forwarded")!]?.hasPrefix("for=127.0.0.1;by=127.0.0.1;proto=https") == true)
            #expect(seenTrailers.withLockedValue { $0 }?[HTTPField.Name("x-client-trailer")!] == "sent")
        } catch {
            await client.shutdown(); await front.shutdown(); await backend.shutdown()
            throw error
        }
        await client.shutdown()
        await front.shutdown()
        await backend.shutdown()
    }
}

/// Byte buffers as an async sequence (a streamed request body).
private struct StreamOfChunks: AsyncSequence, Sendable {
    typealias Element = ByteBuffer
    let chunks: [ByteBuffer]

    struct AsyncIterator: AsyncIteratorProtocol {
        var remaining: ArraySlice<ByteBuffer>
        mutating func next() async -> ByteBuffer? { remaining.popFirst() }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(remaining: chunks[...]) }
}
