internal import CGnuTLS
internal import CNgtcp2
internal import CNgtcp2CryptoGnuTLS
import Glibc
import Logging
import NIOCore
import QUICSocket

/// Key updates (RFC 9001, 6).
extension ConnectionCore {
    /// Starts a key update (RFC 9001, section 6): the next packets use the next key phase.
    /// Possible once the handshake is confirmed and the previous update has finished.
    package func initiateKeyUpdate() throws(QUICError) {
        guard state == .established, let conn else {
            throw state == .handshaking ? .invalidArgument("cannot update keys before the handshake completes")
                                        : (closeError ?? .connectionClosed)
        }
        // Debian's ngtcp2 asserts (aborts) when asked before the handshake is done.
        guard handshakeConfirmed, ngtcp2_conn_get_handshake_completed(conn) != 0 else {
            throw .invalidArgument("cannot update keys before the handshake is confirmed")
        }
        let rv = ngtcp2_conn_initiate_key_update(conn, Self.now())
        guard rv == 0 else { throw .invalidArgument("key update not possible now: \(ngtcp2Message(rv))") }
        scheduleWrite()
    }
}
