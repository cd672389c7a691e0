internal import CGnuTLS
internal import CNgtcp2
internal import CNgtcp2CryptoGnuTLS
import Glibc
import Logging
import NIOCore
import QUICSocket

/// ngtcp2's callbacks: the table and the connection's entry points they call. Each callback
/// tolerates a nil user data; none calls user code.
extension ConnectionCore {
    // MARK: - Callback entry points

    func handshakeCompleted() -> Int32 {
        state = .established
        if !isServer, earlyDataKeyInstalled, !tls.earlyDataAccepted, let conn, ngtcp2_conn_get_early_data_rejected(conn) == 0 {
            // The server refused 0-RTT: ngtcp2 drops the early streams; the application resends.
            earlyDataRejected = true
            let rv = ngtcp2_conn_early_data_rejected(conn)
            if rv != 0 { return rv }
            application?.earlyDataRejected()
        }
        // A server's handshake is confirmed when it completes (RFC 9001, section 4.1.2);
        // ngtcp2 reports confirmation through its callback only on the client.
        if isServer { handshakeConfirmed = true }
        do throws(QUICError) {
            try application?.handshakeCompleted()
        } catch {
            callbackError = error
            return NGTCP2_ERR_CALLBACK_FAILURE
        }
        if let promise = handshakePromise {
            handshakePromise = nil
            promise.succeed(())
        }
        host?.connectionEstablished(self)
        return 0
    }

    func report(_ body: () throws(QUICError) -> Void) -> Int32 {
        do throws(QUICError) {
            try body()
            return 0
        } catch {
            callbackError = error
            return NGTCP2_ERR_CALLBACK_FAILURE
        }
    }

    func newConnectionID(cid: UnsafeMutablePointer<ngtcp2_cid>?, token: UnsafeMutablePointer<UInt8>?,
                         length: Int) -> Int32 {
        guard let cid, let token else { return NGTCP2_ERR_CALLBACK_FAILURE }
        let id = ConnectionID.issued(by: host, length: length)
        cid.pointee = id.cid
        let resetToken = host?.statelessResetToken(for: id) ?? secureRandomBytes(Int(NGTCP2_STATELESS_RESET_TOKENLEN))
        for index in 0..<min(resetToken.count, Int(NGTCP2_STATELESS_RESET_TOKENLEN)) {
            token[index] = resetToken[index]
        }
        activeConnectionIDs.insert(id)
        issuedConnectionIDs += 1
        host?.register(id, for: self)
        return 0
    }

    func removeConnectionID(_ cid: UnsafePointer<ngtcp2_cid>?) -> Int32 {
        guard let cid else { return 0 }
        let id = ConnectionID(cid.pointee)
        if activeConnectionIDs.remove(id) != nil {
            retiredConnectionIDs += 1
            host?.unregister(id)
        }
        return 0
    }

    func statelessResetReceived() -> Int32 {
        receivedStatelessReset = true
        return 0
    }
}

// MARK: - C callbacks

/// Recovers the connection from ngtcp2's `user_data`; `nil` if there is none.
@inline(__always)
private func core(_ userData: UnsafeMutableRawPointer?) -> ConnectionCore? {
    guard let userData else { return nil }
    return Unmanaged<ConnectionCore>.fromOpaque(userData).takeUnretainedValue()
}

private let callbackFailure = NGTCP2_ERR_CALLBACK_FAILURE

extension ConnectionCore {
    static func callbacks(isServer: Bool) -> ngtcp2_callbacks {
        var cb = ngtcp2_callbacks()
        if isServer {
            cb.recv_client_initial = ngtcp2_crypto_recv_client_initial_cb
        } else {
            cb.client_initial = ngtcp2_crypto_client_initial_cb
            cb.recv_retry = ngtcp2_crypto_recv_retry_cb
        }
        cb.recv_crypto_data = ngtcp2_crypto_recv_crypto_data_cb
        cb.encrypt = ngtcp2_crypto_encrypt_cb
        cb.decrypt = ngtcp2_crypto_decrypt_cb
        cb.hp_mask = ngtcp2_crypto_hp_mask_cb
        cb.update_key = ngtcp2_crypto_update_key_cb
        cb.delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb
        cb.delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb
        cb.get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb
        cb.version_negotiation = ngtcp2_crypto_version_negotiation_cb
        cb.rand = { dest, length, _ in
            _ = gnutls_rnd(GNUTLS_RND_RANDOM, dest, length)
        }
        cb.handshake_completed = { _, userData in
            core(userData)?.handshakeCompleted() ?? callbackFailure
        }
        cb.recv_tx_key = { _, level, userData in
            if level == NGTCP2_CRYPTO_LEVEL_EARLY { core(userData)?.earlyDataKeyInstalled = true }
            return 0
        }
        cb.select_preferred_addr = { _, dest, preferred, userData in
            guard let core = core(userData), let dest, let preferred else { return 0 }
            core.selectPreferredAddress(dest: dest, preferred: preferred)
            return 0
        }
        cb.path_validation = { _, flags, _, result, userData in
            guard flags & UInt32(NGTCP2_PATH_VALIDATION_FLAG_PREFERRED_ADDR) != 0, let core = core(userData) else { return 0 }
            core.host?.preferredPathValidated(result == NGTCP2_PATH_VALIDATION_RESULT_SUCCESS, for: core)
            return 0
        }
        cb.recv_new_token = { _, token, userData in
            guard let token, let base = token.pointee.base else { return 0 }
            core(userData)?.addressTokenReceived(Array(UnsafeBufferPointer(start: base, count: token.pointee.len)))
            return 0
        }
        cb.handshake_confirmed = { _, userData in
            core(userData)?.handshakeConfirmed = true
            return 0
        }
        cb.get_new_connection_id = { _, cid, token, length, userData in
            core(userData)?.newConnectionID(cid: cid, token: token, length: length) ?? callbackFailure
        }
        cb.remove_connection_id = { _, cid, userData in
            core(userData)?.removeConnectionID(cid) ?? 0
        }
        cb.recv_stateless_reset = { _, _, userData in
            core(userData)?.statelessResetReceived() ?? 0
        }
        cb.stream_open = { _, streamID, userData in
            core(userData)?.application?.streamOpened(streamID: streamID)
            return 0
        }
        cb.recv_stream_data = { _, flags, streamID, _, data, length, userData, _ in
            guard let core = core(userData) else { return 0 }
            let fin = flags & UInt32(NGTCP2_STREAM_DATA_FLAG_FIN) != 0
            if flags & UInt32(NGTCP2_STREAM_DATA_FLAG_EARLY) != 0 {
                core.application?.receivedEarlyData(streamID: streamID)
            }
            return core.report { () throws(QUICError) in
                try core.application?.received(streamID: streamID, data: UnsafeRawBufferPointer(start: data, count: length),
                                               fin: fin)
            }
        }
        cb.acked_stream_data_offset = { _, streamID, offset, length, userData, _ in
            guard let core = core(userData) else { return 0 }
            return core.report { () throws(QUICError) in
                try core.application?.acknowledged(streamID: streamID, offset: offset, length: length)
            }
        }
        cb.stream_close = { conn, flags, streamID, code, userData, _ in
            guard let core = core(userData) else { return 0 }
            let hasCode = flags & UInt32(NGTCP2_STREAM_CLOSE_FLAG_APP_ERROR_CODE_SET) != 0
            core.application?.streamClosed(streamID: streamID, applicationErrorCode: hasCode ? code : nil)
            // ngtcp2 does not raise MAX_STREAMS by itself: give the peer a new stream for each
            // of its streams that closes.
            let peerInitiated = (streamID & 0x1 == 0) == core.isServer
            if peerInitiated, let conn {
                if streamID & 0x2 == 0 {
                    ngtcp2_conn_extend_max_streams_bidi(conn, 1)
                } else {
                    ngtcp2_conn_extend_max_streams_uni(conn, 1)
                }
            }
            return 0
        }
        cb.stream_reset = { _, streamID, _, code, userData, _ in
            core(userData)?.application?.streamReset(streamID: streamID, applicationErrorCode: code)
            return 0
        }
        cb.extend_max_stream_data = { _, streamID, _, userData, _ in
            core(userData)?.application?.streamCreditAvailable(streamID: streamID)
            return 0
        }
        cb.extend_max_local_streams_bidi = { _, _, userData in
            core(userData)?.application?.streamLimitRaised(bidirectional: true)
            return 0
        }
        cb.extend_max_remote_streams_bidi = { _, maxStreams, userData in
            core(userData)?.application?.peerStreamLimitRaised(bidirectional: true, maxStreams: maxStreams)
            return 0
        }
        cb.extend_max_local_streams_uni = { _, _, userData in
            core(userData)?.application?.streamLimitRaised(bidirectional: false)
            return 0
        }
        return cb
    }
}
