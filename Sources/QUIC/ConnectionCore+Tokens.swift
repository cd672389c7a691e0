internal import CGnuTLS
internal import CNgtcp2
internal import CNgtcp2CryptoGnuTLS
import Glibc
import Logging
import NIOCore
import QUICSocket

/// Address-validation tokens (NEW_TOKEN, RFC 9000, 8.1.3).
extension ConnectionCore {
    /// Server: queues an address-validation token for the client (a NEW_TOKEN frame).
    func submitAddressToken(_ token: [UInt8]) -> Bool {
        guard isServer, let conn, !token.isEmpty else { return false }
        let rv = token.withUnsafeBufferPointer { ngtcp2_conn_submit_new_token(conn, $0.baseAddress, $0.count) }
        guard rv == 0 else { return false }
        scheduleWrite()
        return true
    }

    /// Client: the server sent a NEW_TOKEN token; it is kept for the next connection.
    func addressTokenReceived(_ token: [UInt8]) {
        guard !isServer, !token.isEmpty, let cache = configuration.sessionCache, let key = sessionCacheKey else { return }
        cache.storeAddressToken(token, for: key)
        logger.debug("address validation token saved", metadata: ["server": "\(key)"])
    }
}
