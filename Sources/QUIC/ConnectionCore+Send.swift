internal import CGnuTLS
internal import CNgtcp2
internal import CNgtcp2CryptoGnuTLS
import Glibc
import Logging
import NIOCore
import QUICSocket

/// The send path: write passes that fill the socket's batch with packets from ngtcp2.
extension ConnectionCore {
    /// Asks for a write pass after the current event-loop tick (coalesces many requests).
    package func scheduleWrite() {
        guard !writeScheduled, isOpen else { return }
        writeScheduled = true
        eventLoop.execute { [self] in
            writeScheduled = false
            writePackets()
        }
    }

    /// Writes one burst: as many packets as ngtcp2 allows (congestion control and pacing
    /// permitting), at most one send quantum (`ngtcp2_conn_get_send_quantum`, the bytes ngtcp2
    /// lets go without spacing) and at most 64 packets. The packets are written into the
    /// socket's reusable send buffer and leave with one flush, runs of equal-sized packets as
    /// GSO messages (``SendPass``). Then `ngtcp2_conn_update_pkt_tx_time` sets the next
    /// transmission time, and the timer (whose expiry includes it) starts the next burst.
    func writePackets() {
        guard isOpen, let conn, let host else { return }
        // A server with a preferred address, or a client validating a path to one, has a second
        // socket: a packet of the other path is taken out of the batch and sent through the host.
        let routed = host.hasAlternatePaths
        let payload = configuration.maxUDPPayloadSize
        let quantum = Int(clamping: ngtcp2_conn_get_send_quantum(conn))
        let pass = SendPass(payloadSize: payload,
                            packetLimit: SendPass.packetLimit(sendQuantum: quantum, payloadSize: payload, batchLimit: Self.batchLimit))
        var failure: (Int32, QUICError)?
        let ts = Self.now()
        let outcome = pass.run(on: host.socket, write: { raw in
            writePacket(conn: conn, into: raw, timestamp: ts, failure: &failure)
        }, destination: {
            let remote = packetRemote()
            guard routed else { return PacketDestination(remote: remote) }
            let local = reportsLocalAddress ? packetLocal() : nil
            return PacketDestination(remote: remote, local: local,
                                     throughPrimarySocket: host.leavesThroughPrimarySocket(local: local, remote: remote))
        }, divert: { datagram in
            host.send([datagram], from: self)
        })
        if outcome.sent > 0 {
            logger.trace("write packets", metadata: ["count": "\(outcome.sent)", "messages": "\(outcome.messages)"])
        }
        if let (liberr, error) = failure {
            close(liberr: liberr, error: error)
            return
        }
        if SendPass.updatesPacing(after: outcome, established: state == .established) {
            ngtcp2_conn_update_pkt_tx_time(conn, ts)
        }
        armTimer()
    }

    /// Writes the next packet into `raw`: stream data the application offers (while there is
    /// connection credit for it), else control frames and ACKs. A failure is kept in `failure`.
    private func writePacket(conn: OpaquePointer, into raw: UnsafeMutableRawBufferPointer, timestamp ts: UInt64,
                             failure: inout (Int32, QUICError)?) -> PacketWriteResult {
        let destination = raw.baseAddress?.assumingMemoryBound(to: UInt8.self)
        while true {
            var info = ngtcp2_pkt_info()
            var consumed: ngtcp2_ssize = -1
            var pending = writeVectors.withUnsafeMutableBufferPointer { application?.pendingStreamData(into: $0) }
            if let offered = pending, offered.vectorCount > 0, ngtcp2_conn_get_max_data_left(conn) == 0 {
                // No connection credit: only control frames and ACKs can go now.
                pending = nil
            }
            let streamID = pending?.streamID ?? -1
            var flags = UInt32(NGTCP2_WRITE_STREAM_FLAG_MORE)
            if pending?.fin == true { flags |= UInt32(NGTCP2_WRITE_STREAM_FLAG_FIN) }
            let count = pending?.vectorCount ?? 0
            let n = writeVectors.withUnsafeBufferPointer { vecs in
                vecs.withMemoryRebound(to: ngtcp2_vec.self) { vecs in
                    swift_ngtcp2_conn_writev_stream(conn, &writePath.pointee.path, &info, destination, raw.count,
                                                    &consumed, flags, streamID,
                                                    count > 0 ? vecs.baseAddress : nil, count, ts)
                }
            }
            if consumed >= 0, streamID >= 0 {
                do throws(QUICError) {
                    let offered = writeVectors.withUnsafeBufferPointer {
                        totalLength(UnsafeBufferPointer(rebasing: $0.prefix(count)))
                    }
                    let all = count == 0 || consumed == offered
                    try application?.wrote(streamID: streamID, bytes: Int(consumed), fin: pending?.fin == true && all)
                } catch {
                    failure = (NGTCP2_ERR_INTERNAL, error)
                    return .failed
                }
            }
            if n >= 0 {
                // ngtcp2 marks single packets (ECN validation), so the codepoint is per packet.
                return .packet(length: Int(n), ecn: UInt8(truncatingIfNeeded: info.ecn))
            }
            switch Int32(n) {
            case NGTCP2_ERR_WRITE_MORE:
                continue
            case NGTCP2_ERR_STREAM_DATA_BLOCKED:
                application?.streamBlocked(streamID: streamID)
                continue
            case NGTCP2_ERR_STREAM_SHUT_WR, NGTCP2_ERR_STREAM_NOT_FOUND:
                application?.streamWriteClosed(streamID: streamID)
                continue
            default:
                failure = (Int32(n), .transportError(code: Self.transportCode(liberr: Int32(n)),
                                                     reason: ngtcp2Message(Int32(n)), remote: false))
                return .failed
            }
        }
    }

    /// The destination of the packet just written; builds a `SocketAddress` only when the
    /// path's remote address differs from the previous packet's.
    func packetRemote() -> SocketAddress {
        let remote = writePath.pointee.path.remote
        let length = min(Int(remote.addrlen), MemoryLayout<sockaddr_storage>.size)
        if let previous = lastWriteRemote, previous.length == length, let addr = remote.addr {
            var raw = previous.raw
            let same = withUnsafeBytes(of: &raw) { bytes in bytes.baseAddress.map { memcmp($0, addr, length) == 0 } ?? false }
            if same { return previous.address }
        }
        let address = currentWriteRemote()
        var raw = sockaddr_storage()
        if let addr = remote.addr {
            withUnsafeMutableBytes(of: &raw) { bytes in
                if let base = bytes.baseAddress { memcpy(base, addr, length) }
            }
        }
        lastWriteRemote = (raw, length, address)
        return address
    }

    /// The local address of the packet just written.
    func packetLocal() -> SocketAddress? {
        let local = writePath.pointee.path.local
        return PathStorage.socketAddress(local.addr, length: Int(local.addrlen))
    }

    func currentWriteRemote() -> SocketAddress {
        let path = writePath.pointee.path
        if let address = PathStorage.socketAddress(path.remote.addr, length: Int(path.remote.addrlen)) {
            return address
        }
        return pathStorage.remoteAddress
    }
}
