import CNgtcp2
import NIOCore
import Testing
@testable import QUIC
import QUICTestSupport

@Suite("Pure pieces, no sockets")
struct UnitTests {
    @Test("SendBuffer hands out unsent bytes in order and frees what is acknowledged")
    func sendBuffer() {
        var buffer = SendBuffer(chunkSize: 8)
        let bytes = Array(0..<20).map { UInt8($0) }
        bytes.withUnsafeBytes { buffer.append($0) }
        #expect(buffer.unsentBytes == 20)
        #expect(buffer.unacknowledgedBytes == 20)

        var vectors = [QUICIOVector](repeating: QUICIOVector(), count: 2)
        var count = vectors.withUnsafeMutableBufferPointer { buffer.unsent(into: $0) }
        #expect(count == 2)  // limited by the vector count: chunks 0..<8 and 8..<16
        let first = vectors.prefix(count).flatMap { Array(UnsafeBufferPointer(start: $0.base, count: $0.length)) }
        #expect(first == Array(bytes[0..<16]))

        buffer.markSent(5)
        count = vectors.withUnsafeMutableBufferPointer { buffer.unsent(into: $0) }
        let next = vectors.prefix(count).flatMap { Array(UnsafeBufferPointer(start: $0.base, count: $0.length)) }
        #expect(next == Array(bytes[5..<16]), "resumes mid-chunk")

        buffer.markSent(15)
        #expect(buffer.unsentBytes == 0)
        buffer.acknowledge(upTo: 12)
        #expect(buffer.ackedOffset == 12)
        #expect(buffer.unacknowledgedBytes == 8)
        // Acknowledging backwards changes nothing.
        buffer.acknowledge(upTo: 3)
        #expect(buffer.ackedOffset == 12)
        // More data after partial acknowledgement lands at the right offsets.
        [UInt8](repeating: 0xAA, count: 10).withUnsafeBytes { buffer.append($0) }
        count = vectors.withUnsafeMutableBufferPointer { buffer.unsent(into: $0) }
        let tail = vectors.prefix(count).flatMap { Array(UnsafeBufferPointer(start: $0.base, count: $0.length)) }
        #expect(tail == [UInt8](repeating: 0xAA, count: tail.count))
        #expect(tail.count == 10)
        buffer.acknowledge(upTo: 100)
        #expect(buffer.ackedOffset == 30, "never beyond what was queued")
    }

    @Test("transport error codes have their RFC names, TLS alerts included")
    func errorNames() {
        #expect(TransportErrorCode.name(0xa) == "PROTOCOL_VIOLATION")
        #expect(TransportErrorCode.name(0x178) == "CRYPTO_ERROR(no_application_protocol)")
        #expect(TransportErrorCode.name(0x1234) == "0x1234")
        #expect(QUICError.transportError(code: 0x3, reason: "too much", remote: true).description
                == "connection closed by peer with transport error FLOW_CONTROL_ERROR: too much")
        #expect(QUICError.certificateVerificationFailed("hostname mismatch").description
                == "certificate verify failed: hostname mismatch")
    }

    @Test("TLS configuration is validated before anything is loaded")
    func tlsValidation() {
        #expect(throws: QUICError.invalidArgument("a server needs a certificate chain and a private key (or a certificate store)")) {
            try QUICTLSConfiguration(applicationProtocols: ["h3"]).validate(isServer: true)
        }
        #expect(throws: QUICError.invalidArgument("ALPN identifier must be 1 to 255 bytes: \"\"")) {
            try QUICTLSConfiguration(applicationProtocols: [""]).validate(isServer: false)
        }
        #expect(throws: QUICError.invalidArgument("a certificate chain and a private key go together")) {
            try QUICTLSConfiguration(certificateChain: .pem("x"), applicationProtocols: ["h3"]).validate(isServer: false)
        }
        #expect(throws: QUICError.invalidArgument("no CA certificate found in trust roots")) {
            var tls = QUICTLSConfiguration.makeClientConfiguration(applicationProtocols: ["h3"])
            tls.trustRoots = .certificates(.pem("not a certificate"))
            _ = try TLSCredentials(configuration: tls, isServer: false)
        }
        #expect(QUICTLSConfiguration(applicationProtocols: ["h3"], cipherSuites: .chacha20Poly1305)
            .priorityString.contains(":-CIPHER-ALL:+CHACHA20-POLY1305:-GROUP-ALL"))
    }

    @Test("connection IDs: bounds, randomness, round trip through ngtcp2_cid")
    func connectionIDs() {
        #expect(ConnectionID([UInt8](repeating: 1, count: 21)) == nil)
        let id = ConnectionID.random()
        #expect(id.bytes.count == ConnectionID.issuedLength)
        #expect(ConnectionID(id.cid) == id)
        #expect(ConnectionID.random() != ConnectionID.random())
        #expect(ConnectionID([0x0a, 0xff])?.description == "0aff")
    }

    @Test("connection IDs kept inline: every length round-trips; the length is part of equality and hash")
    func connectionIDStorage() {
        for length in 0...20 {
            let bytes = (0..<length).map { UInt8(200 + $0) }
            let id = ConnectionID(bytes)
            #expect(id?.bytes == bytes)
            #expect(id.map { ConnectionID($0.cid) } == id)
        }
        // Zero bytes of different lengths are different IDs (the storage past the length is zero too).
        let ids = [[], [0], [0, 0], [0, 0, 0, 0, 0, 0, 0, 0, 0]].compactMap { ConnectionID($0) }
        #expect(Set(ids).count == 4)
        var routes: [ConnectionID: Int] = [:]
        for (index, id) in ids.enumerated() { routes[id] = index }
        #expect(ids.enumerated().allSatisfy { routes[ConnectionID($0.element.bytes)!] == $0.offset })
    }

    @Test("stateless reset tokens depend on the key and the connection ID only")
    func resetTokens() {
        let key = StatelessResetKey(secret: Array(repeating: 9, count: 32))
        let id = ConnectionID.random()
        #expect(key.token(for: id) == key.token(for: id))
        #expect(key.token(for: id).count == 16)
        #expect(key.token(for: id) != key.token(for: ConnectionID.random()))
        #expect(StatelessResetKey(secret: Array(repeating: 8, count: 32)).token(for: id) != key.token(for: id))
    }
}
