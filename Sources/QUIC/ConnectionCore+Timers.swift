internal import CGnuTLS
internal import CNgtcp2
internal import CNgtcp2CryptoGnuTLS
import Glibc
import Logging
import NIOCore
import QUICSocket

/// The one timer of a connection: ngtcp2's expiry (loss detection, ACK delay, idle, pacing).
extension ConnectionCore {
    // MARK: - Timers

    func armTimer() {
        guard isOpen, let conn else { return }
        let expiry = ngtcp2_conn_get_expiry(conn)
        // The loss, ACK and idle deadlines move later with nearly every packet. A timer that
        // fires no later than the new deadline stays: when it fires it only re-arms. Cancelling
        // and scheduling on every write pass cost ~8% of a busy server's CPU.
        if timer != nil && timerDeadline <= expiry { return }
        timer?.cancel()
        timerDeadline = expiry
        guard expiry != .max else { timer = nil; return }
        let deadline = NIODeadline.uptimeNanoseconds(expiry)
        timer = eventLoop.scheduleTask(deadline: deadline) { [self] in
            timer = nil
            timerDeadline = .max
            if let conn = self.conn, isOpen, ngtcp2_conn_get_expiry(conn) > Self.now() {
                armTimer()  // fired early: the deadline moved since the timer was set
            } else {
                handleExpiry()
            }
        }
    }

    func handleExpiry() {
        guard isOpen, let conn else { return }
        let rv = ngtcp2_conn_handle_expiry(conn, Self.now())
        switch rv {
        case 0:
            writePackets()
        case NGTCP2_ERR_IDLE_CLOSE:
            enterClosed(state: .draining, error: .idleTimeout)
            finish()
        case NGTCP2_ERR_HANDSHAKE_TIMEOUT:
            enterClosed(state: .draining, error: .handshakeTimeout)
            finish()
        default:
            close(liberr: rv, error: .transportError(code: Self.transportCode(liberr: rv), reason: ngtcp2Message(rv),
                                                     remote: false))
        }
    }
}
