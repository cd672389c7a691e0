import Foundation
import HTTP3
import HTTPAPI
import HTTPTypes
import NIOCore
import QUIC
import QUICTestSupport
import Testing

@Suite("HTTP/3: our client and our server")
struct HTTP3Tests {
    @Test("GET and HEAD")
    func getAndHead() async throws {
        let fixture = try await HTTP3Fixture.start()
        try await withTimeout(20) {
            let response = try await fixture.client.roundTrip(fixture.request(.get, "/hello"))
            #expect(response.head.status == .ok)
            #expect(response.head.headerFields[.contentType] == "text/plain")
            #expect(String(buffer: try await response.body.collect(upTo: 1024)) == "hello")
            #expect(response.metadata.protocolVersion == .http3)
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
            #expect(String(buffer: try await context.body.collect(upTo: 1024)) == "3 localhost true")
        }
        await fixture.stop()
    }
}
