import Glibc

/// The size of a `cmsghdr` rounded up as `CMSG_ALIGN` does (16 on 64-bit Linux).
private let controlHeaderSize = (MemoryLayout<cmsghdr>.size + 7) & ~7
private let receiveControlSize = 64
private let sendControlSize = controlHeaderSize + 8

/// Preallocated `recvmmsg` state: one 64 KiB buffer, source address and control buffer per
/// message. Nothing is allocated per datagram.
final class ReceiveBatch {
    static let bufferSize = 65536
    let capacity: Int
    private let headers: UnsafeMutablePointer<MultiMessageHeader>
    private let vectors: UnsafeMutablePointer<iovec>
    private let names: UnsafeMutablePointer<sockaddr_storage>
    private let controls: UnsafeMutableRawPointer
    private let buffers: UnsafeMutableRawPointer

    init(capacity: Int) {
        self.capacity = capacity
        headers = .allocate(capacity: capacity)
        headers.initialize(repeating: MultiMessageHeader(), count: capacity)
        vectors = .allocate(capacity: capacity)
        vectors.initialize(repeating: iovec(), count: capacity)
        names = .allocate(capacity: capacity)
        names.initialize(repeating: sockaddr_storage(), count: capacity)
        controls = .allocate(byteCount: capacity * receiveControlSize, alignment: 16)
        buffers = .allocate(byteCount: capacity * Self.bufferSize, alignment: 16)
    }

    deinit {
        headers.deallocate()
        vectors.deallocate()
        names.deallocate()
        controls.deallocate()
        buffers.deallocate()
    }

    /// Receives up to `capacity` datagrams; returns how many, 0 when none is waiting.
    func receive(from descriptor: Int32) -> Int {
        guard let recvmmsg = GNUCalls.recvmmsg else { return 0 }
        for i in 0..<capacity {
            vectors[i] = iovec(iov_base: buffers + i * Self.bufferSize, iov_len: Self.bufferSize)
            var header = msghdr()
            header.msg_name = UnsafeMutableRawPointer(names + i)
            header.msg_namelen = socklen_t(MemoryLayout<sockaddr_storage>.size)
            header.msg_iov = vectors + i
            header.msg_iovlen = 1
            header.msg_control = controls + i * receiveControlSize
            header.msg_controllen = receiveControlSize
            headers[i] = MultiMessageHeader(msg_hdr: header, msg_len: 0)
        }
        while true {
            let count = recvmmsg(descriptor, UnsafeMutableRawPointer(headers), UInt32(capacity),
                                 Int32(MSG_DONTWAIT), nil)
            if count >= 0 { return Int(count) }
            if errno == EINTR { continue }
            return 0
        }
    }

    func bytes(_ i: Int) -> UnsafeMutableRawPointer { buffers + i * Self.bufferSize }

    func length(_ i: Int) -> Int { Int(headers[i].msg_len) }

    func source(_ i: Int) -> SocketAddress {
        var address = SocketAddress()
        address.storage = names[i]
        address.length = headers[i].msg_hdr.msg_namelen
        return address
    }

    /// The TOS byte (IPv4) or traffic class (IPv6) the datagram arrived with.
    func trafficClass(_ i: Int) -> UInt8 {
        let base = controls + i * receiveControlSize
        let total = Int(headers[i].msg_hdr.msg_controllen)
        var offset = 0
        while offset + controlHeaderSize <= total {
            let header = base.loadUnaligned(fromByteOffset: offset, as: cmsghdr.self)
            let length = Int(header.cmsg_len)
            guard length >= controlHeaderSize, offset + length <= total else { break }
            if header.cmsg_level == Int32(IPPROTO_IP), header.cmsg_type == IP_TOS, length > controlHeaderSize {
                return base.load(fromByteOffset: offset + controlHeaderSize, as: UInt8.self)
            }
            if header.cmsg_level == Int32(IPPROTO_IPV6), header.cmsg_type == IPV6_TCLASS,
               length >= controlHeaderSize + 4 {
                let value = base.loadUnaligned(fromByteOffset: offset + controlHeaderSize, as: Int32.self)
                return UInt8(truncatingIfNeeded: value)
            }
            offset += (length + 7) & ~7
        }
        return 0
    }
}

/// Preallocated `sendmmsg` state for one outgoing direction: pointers to payloads (in a receive
/// batch or a pool slot), the TOS of each, and the pool slot to give back once sent.
final class SendBatch {
    enum FlushResult {
        case done
        case wouldBlock
    }

    let capacity: Int
    private(set) var count = 0
    /// The first entry not yet sent.
    private(set) var cursor = 0
    private let headers: UnsafeMutablePointer<MultiMessageHeader>
    private let vectors: UnsafeMutablePointer<iovec>
    private let controls: UnsafeMutableRawPointer
    private let tos: UnsafeMutablePointer<UInt8>
    private let slots: UnsafeMutablePointer<Int32>
    /// Where every datagram of this batch goes.
    let destination: UnsafeMutablePointer<sockaddr_storage>
    var destinationLength: socklen_t = 0
    var isIPv6 = false

    init(capacity: Int) {
        self.capacity = capacity
        headers = .allocate(capacity: capacity)
        headers.initialize(repeating: MultiMessageHeader(), count: capacity)
        vectors = .allocate(capacity: capacity)
        vectors.initialize(repeating: iovec(), count: capacity)
        controls = .allocate(byteCount: capacity * sendControlSize, alignment: 16)
        controls.initializeMemory(as: UInt8.self, repeating: 0, count: capacity * sendControlSize)
        tos = .allocate(capacity: capacity)
        tos.initialize(repeating: 0, count: capacity)
        slots = .allocate(capacity: capacity)
        slots.initialize(repeating: -1, count: capacity)
        destination = .allocate(capacity: 1)
        destination.initialize(to: sockaddr_storage())
    }

    deinit {
        headers.deallocate()
        vectors.deallocate()
        controls.deallocate()
        tos.deallocate()
        slots.deallocate()
        destination.deallocate()
    }

    var isEmpty: Bool { cursor == count }
    var isFull: Bool { count == capacity }

    func setDestination(_ address: SocketAddress) {
        destination.pointee = address.storage
        destinationLength = address.length
        isIPv6 = address.isIPv6
    }

    func append(_ bytes: UnsafeMutableRawPointer, length: Int, trafficClass: UInt8, slot: Int32) {
        let i = count
        vectors[i] = iovec(iov_base: bytes, iov_len: length)
        tos[i] = trafficClass
        slots[i] = slot
        count += 1
    }

    func bytes(_ i: Int) -> UnsafeMutableRawPointer {
        vectors[i].iov_base ?? UnsafeMutableRawPointer(vectors + i)
    }

    func length(_ i: Int) -> Int { vectors[i].iov_len }
    func trafficClass(_ i: Int) -> UInt8 { tos[i] }
    func slot(_ i: Int) -> Int32 { slots[i] }

    /// Sends what is not sent yet. `sent(i, ok)` is called for each entry that left (`ok`) or
    /// was refused by the socket (`!ok`); on `.wouldBlock` the rest stays for the next flush.
    func flush(through descriptor: Int32, _ sent: (Int, Bool) -> Void) -> FlushResult {
        guard let sendmmsg = GNUCalls.sendmmsg else { return .done }
        if cursor < count {
            for i in cursor..<count {
                var header = msghdr()
                header.msg_name = UnsafeMutableRawPointer(destination)
                header.msg_namelen = destinationLength
                header.msg_iov = vectors + i
                header.msg_iovlen = 1
                if tos[i] != 0 {
                    let control = controls + i * sendControlSize
                    var cmsg = cmsghdr()
                    cmsg.cmsg_len = controlHeaderSize + 4
                    cmsg.cmsg_level = Int32(isIPv6 ? IPPROTO_IPV6 : IPPROTO_IP)
                    cmsg.cmsg_type = isIPv6 ? IPV6_TCLASS : IP_TOS
                    control.storeBytes(of: cmsg, as: cmsghdr.self)
                    control.storeBytes(of: Int32(tos[i]), toByteOffset: controlHeaderSize, as: Int32.self)
                    header.msg_control = control
                    header.msg_controllen = sendControlSize
                }
                headers[i] = MultiMessageHeader(msg_hdr: header, msg_len: 0)
            }
        }
        while cursor < count {
            let result = sendmmsg(descriptor, UnsafeMutableRawPointer(headers + cursor),
                                  UInt32(count - cursor), 0, nil)
            if result > 0 {
                for i in cursor..<(cursor + Int(result)) {
                    sent(i, true)
                }
                cursor += Int(result)
                continue
            }
            let error = errno
            if error == EINTR { continue }
            if error == EAGAIN || error == EWOULDBLOCK || error == ENOBUFS { return .wouldBlock }
            // The first unsent message was refused (too big, unreachable...): skip it.
            sent(cursor, false)
            cursor += 1
        }
        count = 0
        cursor = 0
        return .done
    }
}
