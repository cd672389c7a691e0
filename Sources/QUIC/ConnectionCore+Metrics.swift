internal import CNgtcp2
import Logging

extension ConnectionCore {
    /// ngtcp2's smoothed round-trip time, while the ngtcp2 connection exists (0 before the
    /// first RTT sample).
    func smoothedRTTNanoseconds() -> Int64? {
        guard let conn else { return nil }
        var stat = ngtcp2_conn_stat()
        swift_ngtcp2_conn_get_conn_stat(conn, &stat)
        return Int64(clamping: stat.smoothed_rtt)
    }

    /// Server: whether the TLS handshake accepted the client's early data (0-RTT).
    var serverAcceptedEarlyData: Bool { tls.earlyDataAccepted }

    /// The connection's logger: it carries the connection's IDs and remote address as metadata.
    package var connectionLogger: Logger { logger }
}
