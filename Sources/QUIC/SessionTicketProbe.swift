internal import CNgtcp2
internal import CNgtcp2CryptoGnuTLS
import NIOConcurrencyHelpers
import Foundation

extension QUICSessionCache {
    /// Client credentials shared by every probe (built once: loading trust roots is slow).
    private static let probeCredentials: TLSCredentials? = try? TLSCredentials(
        configuration: QUICTLSConfiguration(applicationProtocols: ["h3"], certificateVerification: .insecureNoVerification),
        isServer: false)

    /// Hands every ticket to what a resuming client connection hands it to, without connecting:
    /// the TLS session to a new GnuTLS client session (`gnutls_session_set_data`) and the
    /// transport parameters to ngtcp2's decoder. A ticket read from a damaged or hostile file
    /// must be refused there, never crash. Returns how many tickets' parameters decoded. Used
    /// by the session-file fuzz target (`Fuzz/`, `FuzzEntryPoints`).
    package func probeTicketsOffline() throws(QUICError) -> Int {
        guard let credentials = Self.probeCredentials else { throw .internalError("no client TLS credentials") }
        let connRef = UnsafeMutablePointer<ngtcp2_crypto_conn_ref>.allocate(capacity: 1)
        connRef.initialize(to: ngtcp2_crypto_conn_ref())
        defer { connRef.deallocate() }
        var decodedCount = 0
        for (_, ticket) in entries.withLockedValue({ $0 }) {
            _ = try TLSSession(credentials: credentials, isServer: false, serverName: "example.com", connRef: connRef,
                               resumption: ticket.tlsSession, earlyData: true)
            var parameters = ngtcp2_transport_params()
            let decoded = ticket.transportParameters.withUnsafeBufferPointer { bytes in
                swift_ngtcp2_decode_transport_params(&parameters, NGTCP2_TRANSPORT_PARAMS_TYPE_ENCRYPTED_EXTENSIONS,
                                                     bytes.baseAddress, bytes.count)
            }
            if decoded == 0 { decodedCount += 1 }
        }
        return decodedCount
    }
}
