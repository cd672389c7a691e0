import Foundation
import Glibc
import NetSim

/// A datagram a test socket received.
struct ReceivedDatagram: Sendable {
    var bytes: [UInt8]
    var source: NetworkAddress
    /// The TOS byte or IPv6 traffic class it arrived with.
    var trafficClass: UInt8
}

struct TestSocketError: Error, CustomStringConvertible {
    var description: String
}

/// A plain blocking UDP socket with a short receive timeout, for use on a dedicated thread
/// (see `onThread`). Reports each datagram's TOS / traffic class.
final class UDPTestSocket: @unchecked Sendable {
    let descriptor: Int32
    let isIPv6: Bool
    let address: NetworkAddress

    init(host: String = "127.0.0.1", port: UInt16 = 0) throws {
        isIPv6 = host.contains(":")
        let descriptor = socket(isIPv6 ? AF_INET6 : AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        self.descriptor = descriptor
        guard descriptor >= 0 else { throw TestSocketError(description: "socket: errno \(errno)") }
        var on: Int32 = 1
        if isIPv6 {
            setsockopt(descriptor, Int32(IPPROTO_IPV6), IPV6_RECVTCLASS, &on, 4)
        } else {
            setsockopt(descriptor, Int32(IPPROTO_IP), IP_RECVTOS, &on, 4)
        }
        var size: Int32 = 4 << 20
        setsockopt(descriptor, SOL_SOCKET, SO_RCVBUFFORCE, &size, 4)
        var timeout = timeval(tv_sec: 0, tv_usec: 20_000)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var storage = try Self.storage(for: NetworkAddress(host: host, port: port))
        let length = socklen_t(isIPv6 ? MemoryLayout<sockaddr_in6>.size : MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, length) }
        }
        guard bound == 0 else {
            let error = errno
            close(descriptor)
            throw TestSocketError(description: "bind \(host):\(port): errno \(error)")
        }
        var local = sockaddr_storage()
        var localLength = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &local) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &localLength) }
        }
        address = try Self.address(from: local)
    }

    deinit {
        close(descriptor)
    }

    /// Sets the TOS / traffic class of what this socket sends from now on.
    func setTrafficClass(_ value: Int32) {
        var value = value
        if isIPv6 {
            setsockopt(descriptor, Int32(IPPROTO_IPV6), IPV6_TCLASS, &value, 4)
        } else {
            setsockopt(descriptor, Int32(IPPROTO_IP), IP_TOS, &value, 4)
        }
    }

    func send(_ bytes: [UInt8], to destination: NetworkAddress) throws {
        var storage = try Self.storage(for: destination)
        let length = socklen_t(destination.isIPv6 ? MemoryLayout<sockaddr_in6>.size : MemoryLayout<sockaddr_in>.size)
        let sent = bytes.withUnsafeBytes { payload in
            withUnsafePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(descriptor, payload.baseAddress, payload.count, 0, $0, length)
                }
            }
        }
        guard sent == bytes.count else {
            throw TestSocketError(description: "sendto \(destination): errno \(errno)")
        }
    }

    /// Waits up to `timeout` for one datagram.
    func receive(timeout: Duration = .seconds(2)) -> ReceivedDatagram? {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        var buffer = [UInt8](repeating: 0, count: 65536)
        var control = [UInt8](repeating: 0, count: 128)
        var name = sockaddr_storage()
        while clock.now < deadline {
            let result: (Int, Int, socklen_t) = buffer.withUnsafeMutableBytes { payload in
                control.withUnsafeMutableBytes { controlBytes in
                    withUnsafeMutablePointer(to: &name) { namePointer in
                        var vector = iovec(iov_base: payload.baseAddress, iov_len: payload.count)
                        return withUnsafeMutablePointer(to: &vector) { vectorPointer in
                            var header = msghdr()
                            header.msg_name = UnsafeMutableRawPointer(namePointer)
                            header.msg_namelen = socklen_t(MemoryLayout<sockaddr_storage>.size)
                            header.msg_iov = vectorPointer
                            header.msg_iovlen = 1
                            header.msg_control = controlBytes.baseAddress
                            header.msg_controllen = controlBytes.count
                            let count = recvmsg(descriptor, &header, 0)
                            return (count, header.msg_controllen, header.msg_namelen)
                        }
                    }
                }
            }
            let (count, controlLength, _) = result
            guard count >= 0 else { continue }
            guard let source = try? Self.address(from: name) else { continue }
            return ReceivedDatagram(bytes: Array(buffer[..<count]), source: source,
                                    trafficClass: Self.trafficClass(control, length: controlLength))
        }
        return nil
    }

    /// Receives until nothing has come for `quiet`, or `limit` datagrams have come.
    func receiveAll(quiet: Duration = .milliseconds(300), limit: Int = .max) -> [ReceivedDatagram] {
        var all: [ReceivedDatagram] = []
        while all.count < limit, let datagram = receive(timeout: quiet) {
            all.append(datagram)
        }
        return all
    }

    private static func trafficClass(_ control: [UInt8], length: Int) -> UInt8 {
        let headerSize = MemoryLayout<cmsghdr>.size
        var offset = 0
        return control.withUnsafeBytes { raw in
            while offset + headerSize <= length {
                let header = raw.loadUnaligned(fromByteOffset: offset, as: cmsghdr.self)
                let cmsgLength = Int(header.cmsg_len)
                if cmsgLength < headerSize { break }
                if header.cmsg_level == Int32(IPPROTO_IP), header.cmsg_type == IP_TOS {
                    return raw[offset + headerSize]
                }
                if header.cmsg_level == Int32(IPPROTO_IPV6), header.cmsg_type == IPV6_TCLASS {
                    return UInt8(truncatingIfNeeded: raw.loadUnaligned(fromByteOffset: offset + headerSize, as: Int32.self))
                }
                offset += (cmsgLength + 7) & ~7
            }
            return 0
        }
    }

    static func storage(for address: NetworkAddress) throws -> sockaddr_storage {
        var storage = sockaddr_storage()
        if address.isIPv6 {
            var sin6 = sockaddr_in6()
            sin6.sin6_family = sa_family_t(AF_INET6)
            sin6.sin6_port = address.port.bigEndian
            inet_pton(AF_INET6, address.host, &sin6.sin6_addr)
            withUnsafeMutableBytes(of: &storage) { $0.storeBytes(of: sin6, as: sockaddr_in6.self) }
        } else {
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_port = address.port.bigEndian
            inet_pton(AF_INET, address.host, &sin.sin_addr)
            withUnsafeMutableBytes(of: &storage) { $0.storeBytes(of: sin, as: sockaddr_in.self) }
        }
        return storage
    }

    static func address(from storage: sockaddr_storage) throws -> NetworkAddress {
        var text = [CChar](repeating: 0, count: 64)
        var port: UInt16 = 0
        var storage = storage
        let family = Int32(storage.ss_family)
        withUnsafeBytes(of: &storage) { raw in
            port = UInt16(bigEndian: raw.loadUnaligned(fromByteOffset: 2, as: UInt16.self))
            _ = inet_ntop(family, raw.baseAddress! + (family == AF_INET6 ? 8 : 4), &text, 64)
        }
        let host = String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return try NetworkAddress(host: host, port: port)
    }
}

/// Runs blocking socket work on a thread of its own, off Swift's cooperative pool.
func onThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        let thread = Thread {
            continuation.resume(with: Result { try body() })
        }
        thread.start()
    }
}

/// A datagram whose first 4 bytes are `sequence` and whose other bytes follow from it.
func numberedDatagram(_ sequence: Int, size: Int) -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: max(size, 4))
    withUnsafeBytes(of: UInt32(sequence).bigEndian) { for i in 0..<4 { bytes[i] = $0[i] } }
    var state = UInt32(truncatingIfNeeded: sequence &* 2_654_435_761)
    for i in 4..<bytes.count {
        state = state &* 1_664_525 &+ 1_013_904_223
        bytes[i] = UInt8(truncatingIfNeeded: state >> 24)
    }
    return bytes
}

/// The sequence number `numberedDatagram` put in.
func sequenceNumber(_ bytes: [UInt8]) -> Int {
    guard bytes.count >= 4 else { return -1 }
    return Int(UInt32(bytes[0]) << 24 | UInt32(bytes[1]) << 16 | UInt32(bytes[2]) << 8 | UInt32(bytes[3]))
}

/// A relay in front of `server`, with the configuration adjusted by `adjust`.
func startRelay(to server: UDPTestSocket,
                _ adjust: (inout NetworkSimulator.Configuration) -> Void = { _ in }) throws -> NetworkSimulator {
    let listen = try NetworkAddress(host: server.isIPv6 ? "::1" : "127.0.0.1", port: 0)
    var configuration = NetworkSimulator.Configuration(listen: listen, server: server.address)
    adjust(&configuration)
    return try NetworkSimulator.start(configuration)
}
