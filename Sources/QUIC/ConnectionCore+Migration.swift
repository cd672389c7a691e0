internal import CGnuTLS
internal import CNgtcp2
internal import CNgtcp2CryptoGnuTLS
import Glibc
import Logging
import NIOCore
import QUICSocket

/// Migration and the server's preferred address (RFC 9000, 9 and 9.6).
extension ConnectionCore {
    /// Switches to a new local address at once (the client moved to another socket).
    func migrate(to localAddress: SocketAddress) throws(QUICError) {
        guard state == .established, let conn else {
            throw state == .handshaking ? .invalidArgument("cannot migrate before the handshake completes")
                                        : (closeError ?? .connectionClosed)
        }
        pathStorage.setLocal(localAddress)
        let rv = ngtcp2_conn_initiate_immediate_migration(conn, pathStorage.path, Self.now())
        guard rv == 0 else { throw .invalidArgument("migration refused: \(ngtcp2Message(rv))") }
    }

    /// Puts the path's local address back after a refused migration.
    func restoreLocalAddress(_ address: SocketAddress) {
        pathStorage.setLocal(address)
    }

    /// Writes a preferred address transport parameter.
    static func setPreferredAddress(_ params: inout ngtcp2_transport_params, address: SocketAddress,
                                    id: ConnectionID, resetToken: [UInt8]) {
        params.preferred_address_present = 1
        params.preferred_address.cid = id.cid
        withUnsafeMutableBytes(of: &params.preferred_address.stateless_reset_token) { raw in
            raw.copyBytes(from: resetToken.prefix(raw.count))
        }
        address.withSockAddr { addr, length in
            if Int32(addr.pointee.sa_family) == AF_INET6 {
                addr.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { params.preferred_address.ipv6 = $0.pointee }
                params.preferred_address.ipv6_present = 1
            } else if length >= MemoryLayout<sockaddr_in>.size {
                addr.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { params.preferred_address.ipv4 = $0.pointee }
                params.preferred_address.ipv4_present = 1
            }
        }
    }

    /// Client: ngtcp2 offers the server's preferred address (at handshake confirmation). With
    /// ``QUICConfiguration/followPreferredAddress`` on, a socket towards it is opened and the
    /// new path filled in; ngtcp2 then validates it and moves there.
    func selectPreferredAddress(dest: UnsafeMutablePointer<ngtcp2_path>, preferred: UnsafePointer<ngtcp2_preferred_addr>) {
        guard !isServer, configuration.followPreferredAddress, let host else { return }
        var candidate: SocketAddress?
        let wantsIPv6 = pathStorage.remoteAddress.protocol == .inet6
        if wantsIPv6, preferred.pointee.ipv6_present != 0 {
            candidate = SocketAddress(preferred.pointee.ipv6)
        } else if !wantsIPv6, preferred.pointee.ipv4_present != 0 {
            candidate = SocketAddress(preferred.pointee.ipv4)
        }
        guard let remote = candidate, let local = host.openPreferredPath(to: remote, for: self) else { return }
        guard let localAddr = dest.pointee.local.addr, let remoteAddr = dest.pointee.remote.addr else { return }
        // Both point at sockaddr_storage-sized buffers (ngtcp2's documentation).
        dest.pointee.local.addrlen = local.withSockAddr { addr, length in
            memcpy(UnsafeMutableRawPointer(localAddr), addr, length)
            return ngtcp2_socklen(length)
        }
        dest.pointee.remote.addrlen = remote.withSockAddr { addr, length in
            memcpy(UnsafeMutableRawPointer(remoteAddr), addr, length)
            return ngtcp2_socklen(length)
        }
        logger.debug("moving to the server's preferred address", metadata: ["address": "\(remote)"])
    }
}
