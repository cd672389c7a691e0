internal import CGnuTLS
internal import CNgtcp2
internal import CNgtcp2CryptoGnuTLS
import Glibc
import Logging
import NIOCore
import QUICSocket

/// What the application protocol (HTTP/3, the stream API) asks of the connection, and its facts.
extension ConnectionCore {
    // MARK: - Operations for the application protocol

    /// Opens a locally initiated stream; `nil` when the peer's stream limit is reached.
    package func openStream(bidirectional: Bool) throws(QUICError) -> Int64? {
        guard isOpen, let conn else { throw closeError ?? .connectionClosed }
        var streamID: Int64 = -1
        let rv = bidirectional ? ngtcp2_conn_open_bidi_stream(conn, &streamID, nil)
                               : ngtcp2_conn_open_uni_stream(conn, &streamID, nil)
        if rv == NGTCP2_ERR_STREAM_ID_BLOCKED { return nil }
        guard rv == 0 else { throw .internalError("could not open stream: \(ngtcp2Message(rv))") }
        return streamID
    }

    /// How many more streams the peer currently lets us open.
    package func streamsLeft(bidirectional: Bool) -> UInt64 {
        guard isOpen, let conn else { return 0 }
        return bidirectional ? ngtcp2_conn_get_streams_bidi_left(conn) : ngtcp2_conn_get_streams_uni_left(conn)
    }

    /// Gives `count` bytes of receive credit back to the peer on a stream and the connection:
    /// call once the application has consumed them.
    package func extendReceiveWindow(streamID: Int64, by count: Int) {
        guard isOpen, let conn, count > 0 else { return }
        _ = ngtcp2_conn_extend_max_stream_offset(conn, streamID, UInt64(count))
        ngtcp2_conn_extend_max_offset(conn, UInt64(count))
        scheduleWrite()
    }

    /// Gives receive credit for the connection only (bytes that a closed stream will never deliver).
    package func extendConnectionWindow(by count: Int) {
        guard isOpen, let conn, count > 0 else { return }
        ngtcp2_conn_extend_max_offset(conn, UInt64(count))
        scheduleWrite()
    }

    /// Abruptly ends our sending side (RESET_STREAM).
    package func resetStream(streamID: Int64, applicationError code: UInt64) {
        guard isOpen, let conn else { return }
        _ = ngtcp2_conn_shutdown_stream_write(conn, streamID, code)
        scheduleWrite()
    }

    /// Asks the peer to stop sending (STOP_SENDING).
    package func stopSending(streamID: Int64, applicationError code: UInt64) {
        guard isOpen, let conn else { return }
        _ = ngtcp2_conn_shutdown_stream_read(conn, streamID, code)
        scheduleWrite()
    }

    /// Resets and stops both directions of a stream.
    package func shutdownStream(streamID: Int64, applicationError code: UInt64) {
        guard isOpen, let conn else { return }
        _ = ngtcp2_conn_shutdown_stream(conn, streamID, code)
        scheduleWrite()
    }

    /// The server name the client sent in SNI (server side).
    package var tlsServerName: String? { tls.requestedServerName }
    /// The peer's certificate (DER), if it sent one.
    package var peerCertificate: [UInt8]? { tls.peerCertificate }
    /// Why the connection ended, once it has.
    package var terminationError: QUICError? { closeError }

    /// The negotiated ALPN protocol.
    package var negotiatedApplicationProtocol: String? { tls.negotiatedApplicationProtocol }
    /// The peer's address on the current path.
    package var remoteAddress: SocketAddress { pathStorage.remoteAddress }
    /// Our address on the current path.
    package var localAddress: SocketAddress { pathStorage.localAddress }
    /// The negotiated TLS parameters in one line.
    package var tlsParameters: String? { tls.parametersDescription }
    /// Whether the TLS session was resumed.
    package var tlsSessionResumed: Bool { tls.isResumed }
    /// Subject, issuer and expiry (seconds since 1970) of the peer's certificate.
    package var peerCertificateSummary: CertificateSummary? { tls.peerCertificateSummary }
}
