internal import CNgtcp2

extension ConnectionCore {
    /// Why an active migration cannot start now, or `nil` when it may.
    ///
    /// ngtcp2 refuses these cases itself, but only with `NGTCP2_ERR_INVALID_STATE`, which says
    /// nothing about the cause; checking first gives the caller a clear reason (and spares
    /// opening a socket that would be closed again at once).
    func activeMigrationRefusal() -> QUICError? {
        guard isOpen else { return closeError ?? .connectionClosed }
        guard state == .established, let conn else {
            return .invalidArgument("cannot migrate before the handshake completes")
        }
        if let remote = ngtcp2_conn_get_remote_transport_params(conn), remote.pointee.disable_active_migration != 0 {
            return .invalidArgument("cannot migrate: the server disabled active migration (disable_active_migration)")
        }
        // ngtcp2 only migrates once the handshake is confirmed (HANDSHAKE_DONE received).
        guard handshakeConfirmed else {
            return .invalidArgument("cannot migrate before the handshake is confirmed")
        }
        return nil
    }
}
