import CoreMetrics
import NIOCore
import QUICSocket

/// A server endpoint's metrics (swift-metrics), made once from its ``QUICMetricsConfiguration``.
///
/// The endpoint calls one cheap hook per event; the few facts that need bookkeeping across
/// events (when a handshake started, whether the client sent 0-RTT packets) are kept here, per
/// connection, until the handshake ends. Confined to the endpoint's event loop, like the
/// endpoint; the swift-metrics objects themselves are thread-safe.
package final class QUICServerMetrics: UDPSocketMetrics {
    /// Why connections closed (the `reason` label's values; the set is fixed).
    package enum CloseReason: String, CaseIterable, Sendable {
        case idleTimeout = "idle_timeout"
        case handshakeTimeout = "handshake_timeout"
        case closedByPeer = "closed_by_peer"
        case closedByServer = "closed_by_server"
        case transportError = "transport_error"
        case applicationError = "application_error"
        case tlsFailure = "tls_failure"
        case statelessReset = "stateless_reset"
        case other

        /// The reason for a connection's termination error (`nil`: it was dropped without one).
        package init(_ error: QUICError?) {
            switch error {
            case .idleTimeout?: self = .idleTimeout
            case .handshakeTimeout?: self = .handshakeTimeout
            case .statelessReset?: self = .statelessReset
            case .tlsHandshakeFailed?, .certificateVerificationFailed?: self = .tlsFailure
            case .transportError(let code, _, let remote)?:
                self = code == 0 ? (remote ? .closedByPeer : .closedByServer) : .transportError
            case .applicationClosed(let code, _, let remote)?:
                // 0 and H3_NO_ERROR (0x100) are orderly closes; any other code is an error.
                self = code == 0 || code == 0x100 ? (remote ? .closedByPeer : .closedByServer) : .applicationError
            default: self = .other
            }
        }
    }

    let connectionsOpened: Counter
    let connectionsOpen: Meter
    let connectionsClosed: [CloseReason: Counter]
    let connectionsRefusedAtLimit: Counter
    let handshakesCompleted: Counter
    let handshakesFailed: Counter
    let handshakeDuration: CoreMetrics.Timer
    let resumptions: Counter
    let zeroRTTAccepted: Counter
    let zeroRTTRefused: Counter
    let retriesSent: Counter
    let versionNegotiationsSent: Counter
    let statelessResetsSent: Counter
    let bytesReceived: Counter
    let bytesSent: Counter
    let datagramsReceived: Counter
    let datagramsSent: Counter
    let groReads: Counter
    let groSegments: Counter
    let gsoMessages: Counter
    let gsoSegments: Counter
    let smoothedRTT: CoreMetrics.Timer

    /// A connection whose handshake is under way.
    private struct Handshake {
        let started: NIODeadline
        var sawEarlyData = false
    }
    private var handshakes: [ObjectIdentifier: Handshake] = [:]

    /// Creates the metrics; `nil` when the configuration disables them.
    package init?(_ configuration: QUICMetricsConfiguration) {
        guard configuration.isEnabled else { return nil }
        let c = configuration
        connectionsOpened = c.counter("quic_connections_opened_total")
        connectionsOpen = c.meter("quic_connections_open")
        var closed: [CloseReason: Counter] = [:]
        for reason in CloseReason.allCases {
            closed[reason] = c.counter("quic_connections_closed_total", [("reason", reason.rawValue)])
        }
        connectionsClosed = closed
        connectionsRefusedAtLimit = c.counter("quic_connections_refused_total", [("reason", "connection_limit")])
        handshakesCompleted = c.counter("quic_handshakes_total", [("result", "completed")])
        handshakesFailed = c.counter("quic_handshakes_total", [("result", "failed")])
        handshakeDuration = c.timer("quic_handshake_duration_seconds")
        resumptions = c.counter("quic_resumptions_total")
        zeroRTTAccepted = c.counter("quic_zero_rtt_total", [("result", "accepted")])
        zeroRTTRefused = c.counter("quic_zero_rtt_total", [("result", "refused")])
        retriesSent = c.counter("quic_retries_sent_total")
        versionNegotiationsSent = c.counter("quic_version_negotiations_sent_total")
        statelessResetsSent = c.counter("quic_stateless_resets_sent_total")
        bytesReceived = c.counter("quic_udp_bytes_received_total")
        bytesSent = c.counter("quic_udp_bytes_sent_total")
        datagramsReceived = c.counter("quic_udp_datagrams_received_total")
        datagramsSent = c.counter("quic_udp_datagrams_sent_total")
        groReads = c.counter("quic_udp_gro_reads_total")
        groSegments = c.counter("quic_udp_gro_segments_total")
        gsoMessages = c.counter("quic_udp_gso_messages_total")
        gsoSegments = c.counter("quic_udp_gso_segments_total")
        smoothedRTT = c.timer("quic_smoothed_rtt_seconds")
    }

    // MARK: UDP

    package func socketSent(bytes: Int, segments: Int) {
        bytesSent.increment(by: Int64(bytes))
        datagramsSent.increment(by: Int64(segments))
        if segments > 1 {
            gsoMessages.increment()
            gsoSegments.increment(by: Int64(segments))
        }
    }

    package func socketReceived(bytes: Int, segments: Int) {
        bytesReceived.increment(by: Int64(bytes))
        datagramsReceived.increment(by: Int64(segments))
        if segments > 1 {
            groReads.increment()
            groSegments.increment(by: Int64(segments))
        }
    }

    // MARK: Connections

    /// A connection was created for a client's first datagram.
    func connectionOpened(_ connection: ConnectionCore, firstDatagram: ByteBuffer) {
        connectionsOpened.increment()
        connectionsOpen.increment()
        var handshake = Handshake(started: .now())
        handshake.sawEarlyData = LongHeaderScan.containsZeroRTT(firstDatagram)
        handshakes[ObjectIdentifier(connection)] = handshake
    }

    /// A datagram arrived for an existing connection: while its handshake runs, notes 0-RTT packets.
    func datagramRouted(_ buffer: ByteBuffer, to connection: ConnectionCore) {
        guard !handshakes.isEmpty,
              let first = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self), first & 0x80 != 0,
              let handshake = handshakes[ObjectIdentifier(connection)], !handshake.sawEarlyData,
              LongHeaderScan.containsZeroRTT(buffer) else { return }
        handshakes[ObjectIdentifier(connection)]?.sawEarlyData = true
    }

    /// The handshake completed.
    func handshakeCompleted(_ connection: ConnectionCore) {
        guard let handshake = handshakes.removeValue(forKey: ObjectIdentifier(connection)) else { return }
        handshakesCompleted.increment()
        let elapsed = NIODeadline.now() - handshake.started
        handshakeDuration.recordNanoseconds(max(0, elapsed.nanoseconds))
        if connection.tlsSessionResumed { resumptions.increment() }
        if handshake.sawEarlyData {
            if connection.serverAcceptedEarlyData { zeroRTTAccepted.increment() } else { zeroRTTRefused.increment() }
        }
    }

    /// The connection is gone.
    func connectionFinished(_ connection: ConnectionCore) {
        connectionsOpen.decrement()
        if handshakes.removeValue(forKey: ObjectIdentifier(connection)) != nil { handshakesFailed.increment() }
        connectionsClosed[CloseReason(connection.terminationError)]?.increment()
        if let rtt = connection.smoothedRTTNanoseconds(), rtt > 0 { smoothedRTT.recordNanoseconds(rtt) }
    }

    // MARK: Endpoint answers

    func retrySent() { retriesSent.increment() }
    func versionNegotiationSent() { versionNegotiationsSent.increment() }
    func statelessResetSent() { statelessResetsSent.increment() }
    func refusedAtConnectionLimit() { connectionsRefusedAtLimit.increment() }
}

/// Reads the long-header packets coalesced in a datagram (RFC 9000, 17.2; RFC 9369 for
/// version 2) without decrypting anything: enough to tell whether a client sent 0-RTT.
package enum LongHeaderScan {
    /// Whether one of the datagram's packets is a 0-RTT packet. Stops at a short header, an
    /// unknown version or a malformed length.
    package static func containsZeroRTT(_ buffer: ByteBuffer) -> Bool {
        buffer.withUnsafeReadableBytes { bytes in
            var offset = 0
            while offset < bytes.count {
                let first = bytes[offset]
                guard first & 0x80 != 0, offset + 6 <= bytes.count else { return false }
                let version = UInt32(bytes[offset + 1]) << 24 | UInt32(bytes[offset + 2]) << 16
                    | UInt32(bytes[offset + 3]) << 8 | UInt32(bytes[offset + 4])
                let type = (first >> 4) & 0x03
                // Packet types: v1 Initial 0, 0-RTT 1, Handshake 2, Retry 3; v2 Retry 0, Initial 1, 0-RTT 2, Handshake 3.
                let (initial, zeroRTT, retry): (UInt8, UInt8, UInt8)
                switch version {
                case 0x0000_0001: (initial, zeroRTT, retry) = (0, 1, 3)
                case 0x6b33_43cf: (initial, zeroRTT, retry) = (1, 2, 0)
                default: return false
                }
                if type == zeroRTT { return true }
                if type == retry { return false }
                var cursor = offset + 5
                // Destination and source connection IDs.
                for _ in 0..<2 {
                    guard cursor < bytes.count else { return false }
                    cursor += 1 + Int(bytes[cursor])
                }
                if type == initial {
                    guard let (tokenLength, size) = varint(bytes, at: cursor) else { return false }
                    cursor += size + tokenLength
                }
                guard let (length, size) = varint(bytes, at: cursor) else { return false }
                cursor += size + length
                guard cursor > offset, cursor <= bytes.count else { return false }
                offset = cursor
            }
            return false
        }
    }

    /// A QUIC variable-length integer at `index`: its value and its size in bytes.
    private static func varint(_ bytes: UnsafeRawBufferPointer, at index: Int) -> (Int, Int)? {
        guard index < bytes.count else { return nil }
        let size = 1 << Int(bytes[index] >> 6)
        guard index + size <= bytes.count else { return nil }
        var value = UInt64(bytes[index] & 0x3f)
        for i in 1..<size { value = value << 8 | UInt64(bytes[index + i]) }
        guard value < UInt64(Int32.max) else { return nil }
        return (Int(value), size)
    }
}
