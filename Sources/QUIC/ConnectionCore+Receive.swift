internal import CGnuTLS
internal import CNgtcp2
internal import CNgtcp2CryptoGnuTLS
import Glibc
import Logging
import NIOCore
import QUICSocket

/// Reading: each received datagram goes to ngtcp2; its errors end the connection.
extension ConnectionCore {
    // MARK: - Reading

    /// Feeds one received datagram to ngtcp2. `local` is the address it arrived on, when the
    /// host has more than one socket.
    func receive(_ datagram: InboundDatagram, local: SocketAddress? = nil) {
        eventLoop.preconditionInEventLoop()
        // An empty datagram holds no packet (ngtcp2's decoders assert a non-zero length).
        guard datagram.buffer.readableBytes > 0 else { return }
        switch state {
        case .closing:
            // Answer packets in the closing period with our CONNECTION_CLOSE, a few times.
            if let closePacket, closePacketResends < 8 {
                closePacketResends += 1
                host?.send([OutboundDatagram(buffer: closePacket, remoteAddress: datagram.remoteAddress)], from: self)
            }
            return
        case .draining, .finished:
            return
        case .handshaking, .established:
            break
        }
        guard let conn else { return }
        pathStorage.setRemote(datagram.remoteAddress)
        if let local { pathStorage.setLocal(local) }
        var info = ngtcp2_pkt_info()
        info.ecn = UInt32(Self.ecnCodepoint(datagram.ecn))
        let rv = datagram.buffer.withUnsafeReadableBytes { raw in
            swift_ngtcp2_conn_read_pkt(conn, pathStorage.path, &info,
                                       raw.baseAddress?.assumingMemoryBound(to: UInt8.self), raw.count, Self.now())
        }
        logger.trace("read packet", metadata: ["bytes": "\(datagram.buffer.readableBytes)", "from": "\(datagram.remoteAddress)",
                                               "rv": "\(rv)"])
        if rv != 0 {
            handleReadError(rv)
            return
        }
        scheduleWrite()
    }

    func handleReadError(_ rv: Int32) {
        guard let conn else { return }
        switch rv {
        case NGTCP2_ERR_DRAINING:
            enterClosed(state: .draining, error: peerCloseError())
        case NGTCP2_ERR_DROP_CONN:
            enterClosed(state: .draining, error: callbackError ?? .connectionClosed)
            finish()
        case NGTCP2_ERR_RECV_VERSION_NEGOTIATION:
            enterClosed(state: .draining, error: .connectionRefused("server supports no QUIC version we speak"))
            finish()
        case NGTCP2_ERR_CRYPTO:
            let alert = ngtcp2_conn_get_tls_alert(conn)
            let error: QUICError
            if let failure = tls.verificationFailure {
                error = .certificateVerificationFailed(failure)
            } else {
                error = .tlsHandshakeFailed(alert: alert, TLSAlert.name(alert))
            }
            close(liberr: rv, error: error)
        case NGTCP2_ERR_CALLBACK_FAILURE where callbackError != nil:
            close(liberr: rv, error: callbackError ?? .internalError("callback failed"))
        default:
            if state == .handshaking, let failure = tls.verificationFailure {
                close(liberr: rv, error: .certificateVerificationFailed(failure))
            } else {
                close(liberr: rv, error: .transportError(code: Self.transportCode(liberr: rv), reason: ngtcp2Message(rv),
                                                         remote: false))
            }
        }
    }

    /// The error the peer closed with (after NGTCP2_ERR_DRAINING).
    func peerCloseError() -> QUICError {
        if receivedStatelessReset { return .statelessReset }
        guard let conn else { return .connectionClosed }
        var ccerr = ngtcp2_connection_close_error()
        ngtcp2_conn_get_connection_close_error(conn, &ccerr)
        let reason = ccerr.reason.map { String(decoding: UnsafeBufferPointer(start: $0, count: ccerr.reasonlen), as: UTF8.self) } ?? ""
        switch ccerr.type {
        case NGTCP2_CONNECTION_CLOSE_ERROR_CODE_TYPE_APPLICATION:
            return .applicationClosed(code: ccerr.error_code, reason: reason, remote: true)
        default:
            let code = ccerr.error_code
            if code == TransportErrorCode.connectionRefused {
                return .connectionRefused("server refused the connection (CONNECTION_REFUSED)"
                                          + (reason.isEmpty ? "" : ": \(reason)"))
            }
            if code == TransportErrorCode.invalidToken { return .invalidToken }
            if code >= 0x100 && code <= 0x1ff {
                let alert = UInt8(code - 0x100)
                return .tlsHandshakeFailed(alert: alert, "\(TLSAlert.name(alert)) (sent by peer)")
            }
            return .transportError(code: code, reason: reason, remote: true)
        }
    }


    static func ecnCodepoint(_ state: NIOExplicitCongestionNotificationState) -> UInt8 {
        switch state {
        case .transportNotCapable: return 0
        case .transportCapableFlag1: return 1
        case .transportCapableFlag0: return 2
        case .congestionExperienced: return 3
        }
    }
}
