internal import CGnuTLS
internal import CNgtcp2
internal import CNgtcp2CryptoGnuTLS
import Glibc
import Logging
import NIOCore
import QUICSocket

/// Session tickets (client): saved with the server's transport parameters for 0-RTT.
extension ConnectionCore {
    /// A NewSessionTicket arrived (client): saves it with the server's transport parameters.
    func sessionTicketReceived() {
        guard let cache = configuration.sessionCache, let key = sessionCacheKey, let conn,
              let session = tls.resumptionData, let remote = ngtcp2_conn_get_remote_transport_params(conn) else { return }
        var encoded = [UInt8](repeating: 0, count: 512)
        let length = encoded.withUnsafeMutableBufferPointer { buffer in
            swift_ngtcp2_encode_transport_params(buffer.baseAddress, buffer.count,
                                                 NGTCP2_TRANSPORT_PARAMS_TYPE_ENCRYPTED_EXTENSIONS, remote)
        }
        guard length > 0 else { return }
        cache.store(QUICSessionTicket(tlsSession: session, transportParameters: Array(encoded.prefix(Int(length))),
                                      received: Int(time(nil))), for: key)
        logger.debug("session ticket saved", metadata: ["server": "\(key)"])
    }
}
