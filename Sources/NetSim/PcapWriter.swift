import Glibc

/// Writes forwarded datagrams to a classic libpcap file (microsecond timestamps,
/// LINKTYPE_RAW), each behind a synthesized IPv4 or IPv6 header and a UDP header with the
/// addresses of the leg it was sent on. Buffered; owned by the relay thread after opening.
final class PcapWriter {
    static let linkTypeRaw: UInt32 = 101
    static let snapLength: UInt32 = 262_144
    private let descriptor: Int32
    private let buffer: UnsafeMutableRawPointer
    private let bufferSize = 1 << 20
    private var used = 0
    private var identification: UInt16 = 0
    private(set) var writeErrors = 0
    private var closed = false

    init(path: String) throws {
        descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else {
            throw NetSimError(.pcapFailure, "cannot open the pcap file '\(path)'", errno: errno)
        }
        buffer = .allocate(byteCount: bufferSize, alignment: 16)
        // Global header, native byte order as libpcap writes it.
        append(UInt32(0xA1B2_C3D4))
        append(UInt16(2))
        append(UInt16(4))
        append(Int32(0))
        append(UInt32(0))
        append(Self.snapLength)
        append(Self.linkTypeRaw)
        flush()
        if writeErrors > 0 {
            Glibc.close(descriptor)
            buffer.deallocate()
            throw NetSimError(.pcapFailure, "cannot write the pcap file '\(path)'", errno: errno)
        }
    }

    deinit {
        close()
        buffer.deallocate()
    }

    /// Records one UDP datagram sent from `source` to `destination` with the given TOS.
    func record(payload: UnsafeRawPointer, length: Int, trafficClass: UInt8,
                source: SocketAddress, destination: SocketAddress) {
        guard !closed else { return }
        let ipHeader = source.isIPv6 ? 40 : 20
        let total = ipHeader + 8 + length
        if used + 16 + total > bufferSize { flush() }
        guard 16 + total <= bufferSize else { writeErrors += 1; return }
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        append(UInt32(truncatingIfNeeded: now.tv_sec))
        append(UInt32(now.tv_nsec / 1000))
        append(UInt32(total))
        append(UInt32(total))
        let udpLength = UInt16(truncatingIfNeeded: 8 + length)
        if source.isIPv6 {
            appendBig(UInt32(0x6000_0000) | UInt32(trafficClass) << 20)
            appendBig(udpLength)
            append(UInt8(17))
            append(UInt8(64))
            source.withAddressBytes { appendBytes($0) }
            destination.withAddressBytes { appendBytes($0) }
        } else {
            let start = used
            append(UInt8(0x45))
            append(trafficClass)
            appendBig(UInt16(truncatingIfNeeded: total))
            appendBig(identification)
            identification &+= 1
            appendBig(UInt16(0x4000))
            append(UInt8(64))
            append(UInt8(17))
            appendBig(UInt16(0))
            source.withAddressBytes { appendBytes($0) }
            destination.withAddressBytes { appendBytes($0) }
            let checksum = ~onesComplementSum(UnsafeRawBufferPointer(start: buffer + start, count: 20), 0)
            (buffer + start + 10).storeBytes(of: checksum.bigEndian, as: UInt16.self)
        }
        let udpStart = used
        appendBig(source.port)
        appendBig(destination.port)
        appendBig(udpLength)
        appendBig(UInt16(0))
        appendBytes(UnsafeRawBufferPointer(start: payload, count: length))
        if source.isIPv6 {
            // The UDP checksum is mandatory over IPv6: pseudo-header plus the datagram.
            var sum: UInt32 = 0
            source.withAddressBytes { sum = onesComplementAdd(sum, $0) }
            destination.withAddressBytes { sum = onesComplementAdd(sum, $0) }
            sum += UInt32(udpLength) + 17
            var checksum = ~onesComplementSum(
                UnsafeRawBufferPointer(start: buffer + udpStart, count: 8 + length), sum)
            if checksum == 0 { checksum = 0xFFFF }
            (buffer + udpStart + 6).storeBytes(of: checksum.bigEndian, as: UInt16.self)
        }
    }

    /// Writes out what is buffered.
    func flush() {
        var offset = 0
        while offset < used {
            let written = write(descriptor, buffer + offset, used - offset)
            if written < 0 {
                if errno == EINTR { continue }
                writeErrors += 1
                break
            }
            offset += written
        }
        used = 0
    }

    /// Flushes and closes the file; later records are ignored.
    func close() {
        guard !closed else { return }
        flush()
        closed = true
        _ = Glibc.close(descriptor)
    }

    private func append<T: FixedWidthInteger>(_ value: T) {
        (buffer + used).storeBytes(of: value, as: T.self)
        used += MemoryLayout<T>.size
    }

    private func appendBig<T: FixedWidthInteger>(_ value: T) {
        append(value.bigEndian)
    }

    private func appendBytes(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        (buffer + used).copyMemory(from: base, byteCount: bytes.count)
        used += bytes.count
    }
}

/// Adds 16-bit big-endian words of `bytes` to `sum` (odd trailing byte padded with zero).
private func onesComplementAdd(_ sum: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
    var sum = UInt64(sum)
    var i = 0
    while i + 1 < bytes.count {
        sum += UInt64(bytes[i]) << 8 | UInt64(bytes[i + 1])
        i += 2
    }
    if i < bytes.count { sum += UInt64(bytes[i]) << 8 }
    while sum > 0xFFFF_FFFF { sum = (sum & 0xFFFF_FFFF) + (sum >> 32) }
    return UInt32(sum)
}

/// The folded 16-bit one's complement sum of `bytes` plus `initial`.
private func onesComplementSum(_ bytes: UnsafeRawBufferPointer, _ initial: UInt32) -> UInt16 {
    var sum = UInt64(onesComplementAdd(initial, bytes))
    while sum > 0xFFFF { sum = (sum & 0xFFFF) + (sum >> 16) }
    return UInt16(sum)
}
