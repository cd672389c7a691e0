internal import CNgtcp2
internal import CNgtcp2CryptoGnuTLS
import Glibc
import NIOCore

/// An `ngtcp2_path` and the two socket addresses it points at, in memory that stays put for
/// the life of the connection (ngtcp2 keeps the pointers).
final class PathStorage {
    let path: UnsafeMutablePointer<ngtcp2_path>
    private let local: UnsafeMutablePointer<sockaddr_storage>
    private let remote: UnsafeMutablePointer<sockaddr_storage>
    private(set) var localAddress: SocketAddress
    private(set) var remoteAddress: SocketAddress

    init(local localAddress: SocketAddress, remote remoteAddress: SocketAddress) {
        path = .allocate(capacity: 1)
        local = .allocate(capacity: 1)
        remote = .allocate(capacity: 1)
        path.initialize(to: ngtcp2_path())
        local.initialize(to: sockaddr_storage())
        remote.initialize(to: sockaddr_storage())
        self.localAddress = localAddress
        self.remoteAddress = remoteAddress
        path.pointee.local.addr = UnsafeMutableRawPointer(local).assumingMemoryBound(to: sockaddr.self)
        path.pointee.remote.addr = UnsafeMutableRawPointer(remote).assumingMemoryBound(to: sockaddr.self)
        path.pointee.local.addrlen = Self.copy(localAddress, into: local)
        path.pointee.remote.addrlen = Self.copy(remoteAddress, into: remote)
    }

    deinit {
        path.deallocate()
        local.deallocate()
        remote.deallocate()
    }

    /// Points the path at a new remote address (a packet came from somewhere else).
    func setRemote(_ address: SocketAddress) {
        guard address != remoteAddress else { return }
        remoteAddress = address
        path.pointee.remote.addrlen = Self.copy(address, into: remote)
    }

    /// Points the path at a new local address (the client moved to another socket).
    func setLocal(_ address: SocketAddress) {
        guard address != localAddress else { return }
        localAddress = address
        path.pointee.local.addrlen = Self.copy(address, into: local)
    }

    /// Reads a socket address from a C `sockaddr`.
    static func socketAddress(_ addr: UnsafePointer<sockaddr>?, length: Int) -> SocketAddress? {
        guard let addr else { return nil }
        switch Int32(addr.pointee.sa_family) {
        case AF_INET where length >= MemoryLayout<sockaddr_in>.size:
            return addr.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { SocketAddress($0.pointee) }
        case AF_INET6 where length >= MemoryLayout<sockaddr_in6>.size:
            return addr.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { SocketAddress($0.pointee) }
        default:
            return nil
        }
    }

    private static func copy(_ address: SocketAddress, into storage: UnsafeMutablePointer<sockaddr_storage>) -> ngtcp2_socklen {
        address.withSockAddr { pointer, length in
            let count = min(length, MemoryLayout<sockaddr_storage>.size)
            UnsafeMutableRawPointer(storage).copyMemory(from: pointer, byteCount: count)
            return ngtcp2_socklen(count)
        }
    }
}
