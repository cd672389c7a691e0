import Glibc

/// `struct mmsghdr` (not imported by the Glibc module): a `msghdr` and the length the kernel
/// received or sent. Same layout as C: 56 + 4 bytes, stride 64.
struct MultiMessageHeader {
    var msg_hdr = msghdr()
    var msg_len: UInt32 = 0
}

/// The `_GNU_SOURCE` calls the Glibc module does not import, looked up once by symbol and called
/// through C function pointers.
enum GNUCalls {
    typealias MultiMessageFunction = @convention(c) (
        Int32, UnsafeMutableRawPointer?, UInt32, Int32, UnsafeMutableRawPointer?
    ) -> Int32
    typealias PPollFunction = @convention(c) (
        UnsafeMutablePointer<pollfd>?, nfds_t, UnsafePointer<timespec>?, UnsafeRawPointer?
    ) -> Int32

    static let recvmmsg: MultiMessageFunction? = lookup("recvmmsg")
    static let sendmmsg: MultiMessageFunction? = lookup("sendmmsg")
    static let ppoll: PPollFunction? = lookup("ppoll")

    private static func lookup<F>(_ name: String) -> F? {
        guard let symbol = dlsym(nil, name) else { return nil }
        return unsafeBitCast(symbol, to: F.self)
    }
}

/// A non-blocking UDP socket that reports each datagram's TOS / traffic class, owned by the
/// relay loop. One file owns the socket calls.
final class DatagramSocket {
    let descriptor: Int32
    let isIPv6: Bool
    /// The address the socket is bound to (the actual port when 0 was asked for).
    let localAddress: SocketAddress

    /// Creates a socket bound to `address`.
    init(binding address: NetworkAddress) throws {
        isIPv6 = address.isIPv6
        let family = isIPv6 ? AF_INET6 : AF_INET
        let fd = socket(family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue)
                            | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else {
            throw NetSimError(.socketFailure, "cannot create a UDP socket for \(address)", errno: errno)
        }
        descriptor = fd
        do {
            if isIPv6 {
                try Self.setOption(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, 1, "IPV6_V6ONLY")
                try Self.setOption(fd, Int32(IPPROTO_IPV6), IPV6_RECVTCLASS, 1, "IPV6_RECVTCLASS")
            } else {
                try Self.setOption(fd, Int32(IPPROTO_IP), IP_RECVTOS, 1, "IP_RECVTOS")
            }
            // Large buffers absorb bursts; FORCE works as root, the plain option up to the
            // system maximum otherwise.
            let size: Int32 = 4 << 20
            if (try? Self.setOption(fd, SOL_SOCKET, SO_RCVBUFFORCE, size, "")) == nil {
                _ = try? Self.setOption(fd, SOL_SOCKET, SO_RCVBUF, size, "")
            }
            if (try? Self.setOption(fd, SOL_SOCKET, SO_SNDBUFFORCE, size, "")) == nil {
                _ = try? Self.setOption(fd, SOL_SOCKET, SO_SNDBUF, size, "")
            }
            var bindAddress = SocketAddress(address)
            let bound = withUnsafePointer(to: &bindAddress.storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(fd, $0, bindAddress.length)
                }
            }
            guard bound == 0 else {
                throw NetSimError(.socketFailure, "cannot bind a UDP socket to \(address)", errno: errno)
            }
            var local = SocketAddress()
            local.length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let named = withUnsafeMutablePointer(to: &local.storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    getsockname(fd, $0, &local.length)
                }
            }
            guard named == 0 else {
                throw NetSimError(.socketFailure, "getsockname failed for \(address)", errno: errno)
            }
            localAddress = local
        } catch {
            _ = Glibc.close(fd)
            throw error
        }
    }

    private static func setOption(_ descriptor: Int32, _ level: Int32, _ name: Int32, _ value: Int32,
                                  _ label: String) throws {
        var value = value
        guard setsockopt(descriptor, level, name, &value, socklen_t(MemoryLayout<Int32>.size)) == 0 else {
            throw NetSimError(.socketFailure, "setsockopt \(label) failed", errno: errno)
        }
    }

    /// Closes the descriptor; called once, by the owner.
    func close() {
        _ = Glibc.close(descriptor)
    }
}
