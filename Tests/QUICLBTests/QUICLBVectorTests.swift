@testable import QUICLB
import Testing

/// Hex to bytes for the tests (the vectors are valid hex).
func hex(_ text: String) -> [UInt8] {
    guard let bytes = [UInt8](quicLBHex: text) else {
        Issue.record("bad hex in a test: \(text)")
        return []
    }
    return bytes
}

/// The test vectors of draft-ietf-quic-load-balancers-19, appendix B, and the worked example
/// of section 4.3.2.4. Each is checked both ways: the server's encoder makes the CID from the
/// server ID and nonce, and the balancer's decoder gets the server ID (and nonce) back.
@Suite struct QUICLBVectorTests {
    static let appendixKey = "8f95f09245765f80256934e50c66207f"

    struct Vector: Sendable, CustomStringConvertible {
        let configID: UInt8
        let serverID: String
        let nonce: String
        let key: String?
        let cid: String
        var description: String { "cr \(configID) sid \(serverID) → \(cid)" }
    }

    static let vectors: [Vector] = [
        // B.1, unencrypted.
        Vector(configID: 0, serverID: "c4605e", nonce: "4504cc4f", key: nil, cid: "07c4605e4504cc4f"),
        // B.1's second row is misprinted in the draft (nonce "3487d970b" and CID
        // "20a350d28b4203487d970b" have odd digit counts). With 5-byte server ID and nonce the
        // first octet is config 1, length 10 = 0x2a, and the plaintext is the concatenation.
        Vector(configID: 1, serverID: "350d28b420", nonce: "3487d9700b", key: nil, cid: "2a350d28b4203487d9700b"),
        // B.2, encrypted: four passes over an odd 7-byte block.
        Vector(configID: 0, serverID: "ed793a", nonce: "ee080dbf", key: appendixKey, cid: "0720b1d07b359d3c"),
        // Four passes, 15 bytes, server ID longer than the nonce (the decoder's fourth pass).
        Vector(configID: 1, serverID: "ed793a51d49b8f5fab65", nonce: "ee080dbf48", key: appendixKey,
               cid: "2fcc381bc74cb4fbad2823a3d1f8fed2"),
        // Single pass: 8 + 8 = 16 bytes.
        Vector(configID: 2, serverID: "ed793a51d49b8f5f", nonce: "ee080dbf48c0d1e5", key: appendixKey,
               cid: "504dd2d05a7b0de9b2b9907afb5ecf8cc3"),
        // Four passes over an even 18-byte block. The draft's table says cr_bits 3, but its CID's
        // first octet 0x12 is config 0, length 18; the first octet is not encrypted, so the
        // printed CID is config 0's.
        Vector(configID: 0, serverID: "ed793a51d49b8f5fab", nonce: "ee080dbf48c0d1e55d", key: appendixKey,
               cid: "125779c9cc86beb3a3a4a3ca96fce4bfe0cdbc"),
        // Section 4.3.2.4's worked example (odd, 7 bytes, another key).
        Vector(configID: 0, serverID: "31441a", nonce: "9c69c275", key: "fdf726a9893ec05c0632d3956680baf0",
               cid: "0767947d29be054a"),
    ]

    @Test(arguments: vectors)
    func encodes(_ vector: Vector) throws {
        let configuration = try QUICLBConfiguration(configID: vector.configID, serverIDLength: hex(vector.serverID).count,
                                                    nonceLength: hex(vector.nonce).count, key: vector.key.map(hex))
        let encoder = try QUICLBEncoder(QUICLBServerConfiguration(configuration: configuration, serverID: hex(vector.serverID)))
        #expect(try encoder.connectionID(nonce: hex(vector.nonce)) == hex(vector.cid))
        #expect(encoder.connectionIDLength == hex(vector.cid).count)
    }

    @Test(arguments: vectors)
    func decodes(_ vector: Vector) throws {
        let configuration = try QUICLBConfiguration(configID: vector.configID, serverIDLength: hex(vector.serverID).count,
                                                    nonceLength: hex(vector.nonce).count, key: vector.key.map(hex))
        let decoder = try QUICLBDecoder([configuration])
        #expect(decoder.route(connectionID: hex(vector.cid)) == .server(id: hex(vector.serverID), configID: vector.configID))
        let decoded = decoder.decode(connectionID: hex(vector.cid))
        #expect(decoded?.serverID == hex(vector.serverID))
        #expect(decoded?.nonce == hex(vector.nonce))
    }

    /// The AES primitive alone (GnuTLS CBC over one block with a zero IV, used as ECB), with the
    /// inputs and outputs of the worked example's four passes; each block twice in a row, so a
    /// chaining IV left over from the previous block would show.
    @Test func aesBlocksMatchTheWorkedExample() throws {
        let cipher = try AESBlockCipher(key: hex("fdf726a9893ec05c0632d3956680baf0"))
        let passes = [
            ("31441a90000000000000000000000701", "a255dd8cdacf01948d3a848c3c7fee23"),
            ("0e3c1ff9000000000000000000000702", "e5e452cb9e1bedb0b2bf830506bf4c4e"),
            ("d4a04850000000000000000000000703", "b7821ab3024fed0913b6a04d18e3216f"),
            ("09be054a000000000000000000000704", "b334357cfdf81e3fafe180154eaf7378"),
        ]
        for (input, output) in passes {
            #expect(cipher.encrypt(hex(input)) == hex(output))
            #expect(cipher.encrypt(hex(input)) == hex(output))
            #expect(cipher.decrypt(hex(output)) == hex(input))
        }
    }
}
