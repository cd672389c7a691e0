import QUICLB
import Testing

/// Encoder and decoder agree for every allowed length pair, with and without a key; and the
/// decoder turns malformed input into "route by 4-tuple", never a crash.
@Suite struct QUICLBRoundTripTests {
    static let key = hex("000102030405060708090a0b0c0d0e0f")

    @Test(arguments: [false, true])
    func everyLengthPairRoundTrips(encrypted: Bool) throws {
        var pairs = 0
        for serverIDLength in 1...15 {
            for nonceLength in 4...(19 - serverIDLength) {
                let configuration = try QUICLBConfiguration(configID: UInt8(pairs % 7), serverIDLength: serverIDLength,
                                                            nonceLength: nonceLength, key: encrypted ? Self.key : nil)
                let serverID = (0..<serverIDLength).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ serverIDLength) }
                let encoder = try QUICLBEncoder(QUICLBServerConfiguration(configuration: configuration, serverID: serverID))
                let decoder = try QUICLBDecoder([configuration])
                var seen = Set<[UInt8]>()
                for round in 0..<8 {
                    let tag = UInt8(round)
                    let cid = encoder.makeConnectionID(tag: tag)
                    #expect(cid.count == 1 + serverIDLength + nonceLength)
                    #expect(cid[0] >> 5 == configuration.configID)
                    #expect(Int(cid[0] & 0x1f) == serverIDLength + nonceLength)
                    #expect(decoder.route(connectionID: cid) == .server(id: serverID, configID: configuration.configID))
                    let decoded = decoder.decode(connectionID: cid)
                    #expect(decoded?.serverID == serverID)
                    #expect(decoded?.nonce.first == tag)
                    seen.insert(cid)
                    if encrypted {
                        // The server ID does not appear in clear after the first octet.
                        #expect(Array(cid[1...serverIDLength]) != serverID || serverIDLength == 1)
                    }
                }
                #expect(seen.count == 8)
                pairs += 1
            }
        }
        #expect(pairs == 120)  // (16 - serverIDLength) nonce lengths for each server ID length
    }

    @Test func randomFirstOctetBitsWithoutLengthSelfDescription() throws {
        let configuration = try QUICLBConfiguration(configID: 5, serverIDLength: 2, nonceLength: 6, key: Self.key,
                                                    encodesLength: false)
        let encoder = try QUICLBEncoder(QUICLBServerConfiguration(configuration: configuration, serverID: [0xab, 0xcd]))
        let decoder = try QUICLBDecoder([configuration])
        var lowBits = Set<UInt8>()
        for _ in 0..<64 {
            let cid = encoder.makeConnectionID()
            #expect(cid[0] >> 5 == 5)
            lowBits.insert(cid[0] & 0x1f)
            #expect(decoder.route(connectionID: cid) == .server(id: [0xab, 0xcd], configID: 5))
        }
        #expect(lowBits.count > 1)
    }

    @Test func invalidConfigurationsAreRejected() throws {
        #expect(throws: QUICLBError.self) { try QUICLBConfiguration(configID: 7, serverIDLength: 1, nonceLength: 4) }
        #expect(throws: QUICLBError.self) { try QUICLBConfiguration(configID: 0, serverIDLength: 0, nonceLength: 4) }
        #expect(throws: QUICLBError.self) { try QUICLBConfiguration(configID: 0, serverIDLength: 1, nonceLength: 3) }
        #expect(throws: QUICLBError.self) { try QUICLBConfiguration(configID: 0, serverIDLength: 10, nonceLength: 10) }
        #expect(throws: QUICLBError.self) {
            try QUICLBConfiguration(configID: 0, serverIDLength: 2, nonceLength: 4, key: [UInt8](repeating: 1, count: 15))
        }
        let configuration = try QUICLBConfiguration(configID: 1, serverIDLength: 2, nonceLength: 4)
        #expect(throws: QUICLBError.self) { try QUICLBServerConfiguration(configuration: configuration, serverID: [1]) }
        let encoder = try QUICLBEncoder(QUICLBServerConfiguration(configuration: configuration, serverID: [1, 2]))
        #expect(throws: QUICLBError.self) { try encoder.connectionID(nonce: [1, 2, 3]) }
        #expect(throws: QUICLBError.self) { try QUICLBDecoder([configuration, configuration]) }
        #expect([UInt8](quicLBHex: "abc") == nil)
        #expect([UInt8](quicLBHex: "zz") == nil)
        #expect([UInt8](quicLBHex: "0xAB01") == [0xab, 0x01])
    }

    @Test func malformedConnectionIDsRouteByFourTuple() throws {
        let configuration = try QUICLBConfiguration(configID: 1, serverIDLength: 2, nonceLength: 4, key: Self.key)
        let decoder = try QUICLBDecoder([configuration])
        #expect(decoder.route(connectionID: [UInt8]()) == .fourTuple(.truncated))
        #expect(decoder.route(connectionID: [0xe0, 1, 2, 3, 4, 5, 6]) == .fourTuple(.unroutableCodepoint))
        #expect(decoder.route(connectionID: [0x46, 1, 2, 3, 4, 5, 6]) == .fourTuple(.unknownConfiguration(2)))
        #expect(decoder.route(connectionID: [0x26, 1, 2, 3, 4, 5]) == .fourTuple(.shortConnectionID))
        #expect(decoder.decode(connectionID: [0x26, 1, 2]) == nil)
        #expect(decoder.configuration(id: 1) == configuration)
        #expect(decoder.configuration(id: 9) == nil)
    }

    @Test func datagramsWithLongAndShortHeaders() throws {
        let configuration = try QUICLBConfiguration(configID: 3, serverIDLength: 3, nonceLength: 5, key: Self.key)
        let serverID: [UInt8] = [7, 8, 9]
        let encoder = try QUICLBEncoder(QUICLBServerConfiguration(configuration: configuration, serverID: serverID))
        let decoder = try QUICLBDecoder([configuration])
        let cid = encoder.makeConnectionID()
        let payload = [UInt8](repeating: 0x55, count: 40)
        // Short header: first byte with the fixed bit, then the DCID and the protected rest.
        let short = [0x40] + cid + payload
        #expect(decoder.route(datagram: short) == .server(id: serverID, configID: 3))
        // Long header (a Handshake packet of version 1): version, DCID length, DCID, SCID ….
        let long = [0xe0, 0, 0, 0, 1, UInt8(cid.count)] + cid + [8] + [UInt8](repeating: 1, count: 8) + payload
        #expect(decoder.route(datagram: long) == .server(id: serverID, configID: 3))
        // A client's first Initial: a random 8-byte DCID, usually of no known configuration.
        let initial: [UInt8] = [0xc0, 0, 0, 0, 1, 8, 0x1f, 1, 2, 3, 4, 5, 6, 7, 0] + payload
        #expect(decoder.route(datagram: initial) == .fourTuple(.unknownConfiguration(0)))
        // Truncated headers.
        #expect(decoder.route(datagram: [UInt8]()) == .fourTuple(.truncated))
        #expect(decoder.route(datagram: [0xc0, 0, 0]) == .fourTuple(.truncated))
        #expect(decoder.route(datagram: [0xc0, 0, 0, 0, 1, 20, 1, 2]) == .fourTuple(.truncated))
        #expect(decoder.route(datagram: [0x40] + cid.prefix(5)) == .fourTuple(.shortConnectionID))
        #expect(decoder.route(datagram: [0x40]) == .fourTuple(.truncated))
        // A long header with a zero-length DCID.
        #expect(decoder.route(datagram: [0xc0, 0, 0, 0, 1, 0, 0]) == .fourTuple(.truncated))
    }
}
