import Foundation
import NetSim
import Testing

/// One record of a classic pcap file.
private struct PcapRecord {
    var capturedLength: Int
    var originalLength: Int
    var data: [UInt8]
}

/// Parses a little-endian microsecond pcap file; returns the link type and records.
private func parsePcap(_ bytes: [UInt8]) throws -> (linkType: UInt32, records: [PcapRecord]) {
    func u32(_ offset: Int) -> UInt32 {
        UInt32(bytes[offset]) | UInt32(bytes[offset + 1]) << 8 | UInt32(bytes[offset + 2]) << 16
            | UInt32(bytes[offset + 3]) << 24
    }
    guard bytes.count >= 24 else { throw TestSocketError(description: "short global header") }
    #expect(u32(0) == 0xA1B2_C3D4)
    #expect(bytes[4] == 2 && bytes[6] == 4)
    var records: [PcapRecord] = []
    var offset = 24
    while offset < bytes.count {
        guard offset + 16 <= bytes.count else { throw TestSocketError(description: "short record header") }
        let captured = Int(u32(offset + 8))
        let original = Int(u32(offset + 12))
        #expect(u32(offset + 4) < 1_000_000)
        guard offset + 16 + captured <= bytes.count else { throw TestSocketError(description: "short record") }
        records.append(PcapRecord(capturedLength: captured, originalLength: original,
                                  data: Array(bytes[(offset + 16)..<(offset + 16 + captured)])))
        offset += 16 + captured
    }
    return (u32(20), records)
}

private func big16(_ bytes: [UInt8], _ offset: Int) -> Int {
    Int(bytes[offset]) << 8 | Int(bytes[offset + 1])
}

private func temporaryPath(_ name: String) -> String {
    FileManager.default.temporaryDirectory
        .appendingPathComponent("netsim-\(name)-\(UInt32.random(in: 0...UInt32.max)).pcap").path
}

@Suite("pcap")
struct PcapTests {
    @Test("The pcap holds one well-formed IPv4/UDP record per forwarded datagram, with each leg's addresses")
    func pcapIPv4() async throws {
        let path = temporaryPath("v4")
        defer { try? FileManager.default.removeItem(atPath: path) }
        try await onThread {
            let server = try UDPTestSocket()
            let client = try UDPTestSocket()
            let relay = try startRelay(to: server) {
                $0.pcapPath = path
                $0.toServer.dropIndices = [3...3]
            }
            let sizes = [4, 100, 1200, 1500, 5000]
            for (i, size) in sizes.enumerated() {
                client.setTrafficClass(i == 1 ? 2 : 0)
                try client.send(numberedDatagram(i, size: size), to: relay.listenAddress)
            }
            let atServer = server.receiveAll(quiet: .milliseconds(300))
            #expect(atServer.count == 4)
            for datagram in atServer {
                try server.send(datagram.bytes, to: datagram.source)
            }
            #expect(client.receiveAll(quiet: .milliseconds(300)).count == 4)
            let outgoing = try #require(relay.outgoingAddress)
            relay.stop()
            let statistics = relay.statistics
            let file = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
            let (linkType, records) = try parsePcap(file)
            #expect(linkType == 101)
            #expect(records.count == statistics.toServer.forwarded + statistics.toClient.forwarded)
            #expect(records.count == 8)
            let payloadSizes = sizes.enumerated().filter { $0.offset != 2 }.map(\.element)
            for (n, record) in records.enumerated() {
                let data = record.data
                let payload = n < 4 ? payloadSizes[n] : payloadSizes[n - 4]
                #expect(record.capturedLength == payload + 28)
                #expect(record.originalLength == record.capturedLength)
                #expect(data[0] == 0x45)
                #expect(data[9] == 17)
                #expect(big16(data, 2) == payload + 28)
                #expect(big16(data, 24) == payload + 8)
                let source = data[12..<16].map(String.init).joined(separator: ".")
                let sourcePort = big16(data, 20)
                let destinationPort = big16(data, 22)
                if n < 4 {
                    #expect(source == outgoing.host && sourcePort == Int(outgoing.port))
                    #expect(destinationPort == Int(server.address.port))
                } else {
                    #expect(sourcePort == Int(relay.listenAddress.port))
                    #expect(destinationPort == Int(client.address.port))
                }
                #expect(Array(data[28...]) == numberedDatagram(sequenceNumber(Array(data[28...])), size: payload))
                // The IPv4 header checksum verifies.
                var sum = 0
                for i in stride(from: 0, to: 20, by: 2) { sum += big16(data, i) }
                while sum > 0xFFFF { sum = (sum & 0xFFFF) + (sum >> 16) }
                #expect(sum == 0xFFFF)
            }
            #expect(records[1].data[1] == 2, "the TOS (ECT(0)) is recorded")
        }
    }

    @Test("IPv6 records have a 40-byte header and the UDP checksum verifies")
    func pcapIPv6() async throws {
        let path = temporaryPath("v6")
        defer { try? FileManager.default.removeItem(atPath: path) }
        try await onThread {
            let server = try UDPTestSocket(host: "::1")
            let client = try UDPTestSocket(host: "::1")
            let relay = try startRelay(to: server) { $0.pcapPath = path }
            for i in 0..<3 {
                try client.send(numberedDatagram(i, size: 101 + i), to: relay.listenAddress)
            }
            #expect(server.receiveAll(quiet: .milliseconds(300)).count == 3)
            relay.stop()
            let file = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
            let (linkType, records) = try parsePcap(file)
            #expect(linkType == 101)
            #expect(records.count == 3)
            for (i, record) in records.enumerated() {
                let data = record.data
                #expect(record.capturedLength == 101 + i + 48)
                #expect(data[0] >> 4 == 6)
                #expect(data[6] == 17)
                #expect(big16(data, 4) == 101 + i + 8)
                #expect(data[8..<24].allSatisfy { $0 == 0 } == false)
                // Pseudo-header (addresses, length, next header) plus the UDP datagram sums to 0xFFFF.
                var sum = big16(data, 4) + 17
                for j in stride(from: 8, to: 40, by: 2) { sum += big16(data, j) }
                var j = 40
                while j + 1 < data.count { sum += big16(data, j); j += 2 }
                if j < data.count { sum += Int(data[j]) << 8 }
                while sum > 0xFFFF { sum = (sum & 0xFFFF) + (sum >> 16) }
                #expect(sum == 0xFFFF)
            }
        }
    }

    @Test("A pcap path that cannot be opened is a clear error")
    func pcapUnopenable() throws {
        let server = try UDPTestSocket()
        #expect {
            _ = try startRelay(to: server) { $0.pcapPath = "/nonexistent-dir/x.pcap" }
        } throws: { error in
            (error as? NetSimError)?.kind == .pcapFailure
        }
    }
}
