import HTTP3
import HTTPAPI
import HTTPTypes
import Logging
import NIOConcurrencyHelpers
import NIOCore
import QUICTestSupport
import HTTPTestSupport
import Testing

/// A log handler that keeps every record (message and metadata) for a test to read.
final class RecordingLogHandler: LogHandler, @unchecked Sendable {
    struct Record: Sendable {
        let message: String
        let metadata: [String: String]
    }
    private let records: NIOLockedValueBox<[Record]>
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .debug

    init(records: NIOLockedValueBox<[Record]>) { self.records = records }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var all = metadata.mapValues { "\($0)" }
        for (key, value) in event.metadata ?? [:] { all[key] = "\(value)" }
        records.withLockedValue { $0.append(Record(message: "\(event.message)", metadata: all)) }
    }
}

@Suite("Connection log lines carry the connection's ID and remote address")
struct ConnectionLoggingTests {
    @Test("handshake and close lines of a server connection carry quic.odcid and remote")
    func metadata() async throws {
        let records = NIOLockedValueBox<[RecordingLogHandler.Record]>([])
        let logger = Logger(label: "test.server", factory: { _ in RecordingLogHandler(records: records) })
        let configuration = HTTP3ServerConfiguration(host: "127.0.0.1", port: 0, tls: TestPKI.shared.serverTLS(alpn: ["h3"]))
        let server = try await HTTP3Server.bind(configuration: configuration, handler: TestHandler(observations: Observations()),
                                                logger: logger)
        let client = HTTP3Transport(configuration: .init(tls: TestPKI.shared.clientTLS(alpn: ["h3"])))
        try await withTimeout(60) {
            let request = HTTPRequest(method: .get, scheme: "https", authority: "localhost:\(server.localAddress.port ?? 0)", path: "/hello")
            _ = try await client.roundTrip(request).body.collect(upTo: 100)
            await client.shutdown()
            await server.shutdown()
        }
        let lines = records.withLockedValue { $0 }
        let handshake = try #require(lines.first { $0.message == "handshake completed" }, "\(lines.map(\.message))")
        let finished = try #require(lines.first { $0.message == "connection finished" }, "\(lines.map(\.message))")
        for line in [handshake, finished] {
            #expect(line.metadata["remote"]?.hasPrefix("127.0.0.1:") == true, "\(line)")
            #expect((line.metadata["quic.odcid"]?.count ?? 0) >= 16, "a hex connection ID: \(line)")
        }
        #expect(handshake.metadata["quic.odcid"] == finished.metadata["quic.odcid"])
        #expect(finished.metadata["reason"] != nil)
    }
}
