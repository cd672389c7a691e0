internal import CGnuTLS
internal import CNgtcp2
internal import CNgtcp2CryptoGnuTLS
import Glibc
import NIOCore

/// Owns one `gnutls_session_t` configured for QUIC by ngtcp2's GnuTLS helper.
///
/// The only file that calls GnuTLS session functions. Confined to the connection's event loop.
final class TLSSession {
    let handle: gnutls_session_t
    let credentials: TLSCredentials
    let isServer: Bool
    /// GnuTLS keeps the verification hostname pointer: it must outlive the session.
    private var verifyHostname: UnsafeMutablePointer<CChar>?
    /// Server with a certificate set: the entry's credentials chosen for the client's SNI. Held
    /// here because GnuTLS keeps only a pointer to them.
    private var selectedCredentials: TLSCredentials?

    /// Creates a session. `connRef` is the stable pointer ngtcp2's helper uses to find
    /// the `ngtcp2_conn` (stored with `gnutls_session_set_ptr`).
    init(credentials: TLSCredentials, isServer: Bool, serverName: String?,
         connRef: UnsafeMutablePointer<ngtcp2_crypto_conn_ref>, resumption: [UInt8]? = nil,
         earlyData: Bool = false) throws(QUICError) {
        let config = credentials.configuration
        var session: gnutls_session_t?
        // A client offers early data only when the application will use it: data sent in 0-RTT
        // that the server refuses is lost unless the application sends it again.
        let flags = isServer ? swift_gnutls_server_flags()
                             : (earlyData ? swift_gnutls_client_flags() : swift_gnutls_client_flags_no_early_data())
        guard gnutls_init(&session, flags) == GNUTLS_E_SUCCESS, let session else {
            throw .internalError("gnutls_init failed")
        }
        self.handle = session
        self.credentials = credentials
        self.isServer = isServer

        var rv = gnutls_priority_set_direct(session, config.priorityString, nil)
        guard rv == GNUTLS_E_SUCCESS else { throw .internalError("TLS priorities rejected: \(gnutlsMessage(rv))") }
        rv = isServer ? ngtcp2_crypto_gnutls_configure_server_session(session)
                      : ngtcp2_crypto_gnutls_configure_client_session(session)
        guard rv == 0 else { throw .internalError("ngtcp2 could not configure the TLS session") }
        gnutls_session_set_ptr(session, connRef)
        rv = gnutls_credentials_set(session, GNUTLS_CRD_CERTIFICATE, UnsafeMutableRawPointer(credentials.handle))
        guard rv == GNUTLS_E_SUCCESS else { throw .internalError("TLS credentials rejected: \(gnutlsMessage(rv))") }

        // ALPN: mandatory on both sides, so a mismatch aborts the handshake with no_application_protocol.
        var protocols = config.applicationProtocols.map { Array($0.utf8) }
        rv = withDatums(&protocols) { datums in
            gnutls_alpn_set_protocols(session, datums.baseAddress, UInt32(datums.count), UInt32(GNUTLS_ALPN_MANDATORY.rawValue))
        }
        guard rv == GNUTLS_E_SUCCESS else { throw .internalError("ALPN rejected: \(gnutlsMessage(rv))") }

        if isServer, let tickets = credentials.tickets {
            rv = tickets.enable(on: session)
            guard rv == GNUTLS_E_SUCCESS else { throw .internalError("session tickets: \(gnutlsMessage(rv))") }
        } else if !isServer {
            // Learn about each NewSessionTicket so the connection can save it for resumption.
            gnutls_handshake_set_hook_function(session, UInt32(GNUTLS_HANDSHAKE_NEW_SESSION_TICKET.rawValue),
                                               Int32(GNUTLS_HOOK_POST)) { session, _, _, _, _ in
                guard let session, let pointer = gnutls_session_get_ptr(session) else { return 0 }
                let ref = pointer.assumingMemoryBound(to: ngtcp2_crypto_conn_ref.self)
                guard let userData = ref.pointee.user_data else { return 0 }
                Unmanaged<ConnectionCore>.fromOpaque(userData)._withUnsafeGuaranteedRef { $0.sessionTicketReceived() }
                return 0
            }
            // A damaged or foreign ticket is not fatal: the handshake is then a full one.
            if let resumption, !resumption.isEmpty {
                _ = resumption.withDatum { datum in gnutls_session_set_data(session, datum.data, Int(datum.size)) }
            }
        }

        if isServer, credentials.sni != nil {
            // The certificate is chosen once the client hello (and its SNI) has been read.
            gnutls_handshake_set_post_client_hello_function(session) { session in
                guard let session, let pointer = gnutls_session_get_ptr(session) else { return GNUTLS_E_INTERNAL_ERROR }
                let ref = pointer.assumingMemoryBound(to: ngtcp2_crypto_conn_ref.self)
                guard let userData = ref.pointee.user_data else { return GNUTLS_E_INTERNAL_ERROR }
                return Unmanaged<ConnectionCore>.fromOpaque(userData)._withUnsafeGuaranteedRef { $0.tls.selectServerCertificate() }
            }
        }
        if isServer {
            switch config.clientAuthentication {
            case .none: break
            case .optional:
                gnutls_certificate_server_set_request(session, GNUTLS_CERT_REQUEST)
                gnutls_session_set_verify_cert(session, nil, 0)
            case .required:
                gnutls_certificate_server_set_request(session, GNUTLS_CERT_REQUIRE)
                gnutls_session_set_verify_cert(session, nil, 0)
            }
        } else {
            if let serverName, !serverName.isEmpty, !Self.isIPAddress(serverName) {
                rv = gnutls_server_name_set(session, GNUTLS_NAME_DNS, serverName, serverName.utf8.count)
                guard rv == GNUTLS_E_SUCCESS else { throw .invalidArgument("server name rejected: \(gnutlsMessage(rv))") }
            }
            switch config.certificateVerification {
            case .fullVerification:
                verifyHostname = strdup(serverName ?? "")
                gnutls_session_set_verify_cert(session, verifyHostname, 0)
            case .noHostnameVerification:
                gnutls_session_set_verify_cert(session, nil, 0)
            case .insecureNoVerification:
                break
            }
        }
    }

    /// Server with a certificate set: installs the credentials of the entry for the client's SNI.
    /// Returns a GnuTLS error (which ends the handshake) when no entry serves the name:
    /// `GNUTLS_E_UNRECOGNIZED_NAME` makes GnuTLS send the `unrecognized_name` alert.
    func selectServerCertificate() -> Int32 {
        guard let sni = credentials.sni else { return 0 }
        guard let chosen = sni.credentials(for: requestedServerName) else { return GNUTLS_E_UNRECOGNIZED_NAME }
        let rv = gnutls_credentials_set(handle, GNUTLS_CRD_CERTIFICATE, UnsafeMutableRawPointer(chosen.handle))
        guard rv == GNUTLS_E_SUCCESS else { return rv }
        selectedCredentials = chosen
        return 0
    }

    deinit {
        gnutls_deinit(handle)
        free(verifyHostname)
    }

    /// The negotiated ALPN protocol, once the handshake has selected one.
    var negotiatedApplicationProtocol: String? {
        var datum = gnutls_datum_t()
        guard gnutls_alpn_get_selected_protocol(handle, &datum) == GNUTLS_E_SUCCESS, let data = datum.data else {
            return nil
        }
        return String(decoding: UnsafeBufferPointer(start: data, count: Int(datum.size)), as: UTF8.self)
    }

    /// The session data to resume this session later (after a ticket arrived), or `nil`.
    var resumptionData: [UInt8]? {
        var datum = gnutls_datum_t()
        guard gnutls_session_get_data2(handle, &datum) == GNUTLS_E_SUCCESS, let data = datum.data else { return nil }
        defer { swift_gnutls_free(data) }
        return Array(UnsafeBufferPointer(start: data, count: Int(datum.size)))
    }

    /// Whether the server accepted the early data this client sent (TLS 1.3 early_data).
    var earlyDataAccepted: Bool {
        gnutls_session_get_flags(handle) & UInt32(GNUTLS_SFLAGS_EARLY_DATA.rawValue) != 0
    }

    /// Whether this session was resumed from a ticket.
    var isResumed: Bool { gnutls_session_is_resumed(handle) != 0 }

    /// The server name the client sent in SNI (server side).
    var requestedServerName: String? {
        var buffer = [CChar](repeating: 0, count: 256)
        var size = buffer.count
        var type: UInt32 = 0
        guard gnutls_server_name_get(handle, &buffer, &size, &type, 0) == GNUTLS_E_SUCCESS else { return nil }
        return String(decoding: buffer.prefix(size).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// GnuTLS's one-line summary of the negotiated parameters, for example
    /// "(TLS1.3)-(ECDHE-X25519)-(ECDSA-SECP256R1-SHA256)-(AES-128-GCM)".
    var parametersDescription: String? {
        guard let text = gnutls_session_get_desc(handle) else { return nil }
        defer { swift_gnutls_free(text) }
        return String(cString: text)
    }

    /// Subject, issuer and expiry of the peer's leaf certificate, as text.
    var peerCertificateSummary: CertificateSummary? {
        peerCertificate.flatMap(CertificateSummary.init(der:))
    }

    /// The DER bytes of the peer's leaf certificate, if it sent one.
    var peerCertificate: [UInt8]? {
        var count: UInt32 = 0
        guard let list = gnutls_certificate_get_peers(handle, &count), count > 0, let data = list[0].data else {
            return nil
        }
        return Array(UnsafeBufferPointer(start: data, count: Int(list[0].size)))
    }

    /// Why certificate verification failed, if it did; `nil` when it passed or was not done.
    var verificationFailure: String? {
        let status = gnutls_session_get_verify_cert_status(handle)
        guard status != 0 else { return nil }
        var reasons: [String] = []
        func has(_ flag: gnutls_certificate_status_t) -> Bool { status & flag.rawValue != 0 }
        if has(GNUTLS_CERT_UNEXPECTED_OWNER) { reasons.append("hostname mismatch") }
        if has(GNUTLS_CERT_SIGNER_NOT_FOUND) { reasons.append("certificate signer not trusted") }
        if has(GNUTLS_CERT_EXPIRED) { reasons.append("certificate expired") }
        if has(GNUTLS_CERT_NOT_ACTIVATED) { reasons.append("certificate not yet valid") }
        if has(GNUTLS_CERT_REVOKED) { reasons.append("certificate revoked") }
        if has(GNUTLS_CERT_INSECURE_ALGORITHM) { reasons.append("insecure signature algorithm") }
        if has(GNUTLS_CERT_SIGNATURE_FAILURE) { reasons.append("bad signature") }
        if has(GNUTLS_CERT_SIGNER_NOT_CA) { reasons.append("signer is not a CA") }
        if reasons.isEmpty {
            var out = gnutls_datum_t()
            if gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &out, 0) == GNUTLS_E_SUCCESS,
               let data = out.data {
                reasons.append(String(cString: UnsafeRawPointer(data).assumingMemoryBound(to: CChar.self)))
                swift_gnutls_free(data)
            } else {
                reasons.append("status 0x\(String(status, radix: 16))")
            }
        }
        return reasons.joined(separator: ", ")
    }

    private static func isIPAddress(_ host: String) -> Bool {
        (try? SocketAddress(ipAddress: host, port: 0)) != nil
    }
}

/// Calls `body` with GnuTLS datums pointing at each byte array.
private func withDatums<R>(_ arrays: inout [[UInt8]], _ body: (UnsafeMutableBufferPointer<gnutls_datum_t>) -> R) -> R {
    var pointers: [UnsafeMutablePointer<UInt8>] = []
    defer { pointers.forEach { $0.deallocate() } }
    var datums: [gnutls_datum_t] = []
    for array in arrays {
        let p = UnsafeMutablePointer<UInt8>.allocate(capacity: max(array.count, 1))
        p.initialize(from: array, count: array.count)
        pointers.append(p)
        datums.append(gnutls_datum_t(data: p, size: UInt32(array.count)))
    }
    return datums.withUnsafeMutableBufferPointer { body($0) }
}

/// What a verbose client shows of a certificate: subject and issuer as RFC 4514 text, and its
/// expiry. Read with GnuTLS, so both transports (QUIC and TCP) describe certificates alike.
package struct CertificateSummary: Sendable, Equatable {
    package let subject: String
    package let issuer: String
    /// Seconds since 1970.
    package let notAfter: Int

    /// Parses a DER certificate; `nil` when GnuTLS cannot read it.
    package init?(der: [UInt8]) {
        guard let (subject, issuer, notAfter) = withDERCertificate(der, { certificate in
            func name(_ get: (gnutls_x509_crt_t, UnsafeMutablePointer<gnutls_datum_t>) -> Int32) -> String {
                var out = gnutls_datum_t()
                guard get(certificate, &out) == GNUTLS_E_SUCCESS, let data = out.data else { return "?" }
                defer { swift_gnutls_free(data) }
                return String(decoding: UnsafeBufferPointer(start: data, count: Int(out.size)), as: UTF8.self)
            }
            return (name { gnutls_x509_crt_get_dn2($0, $1) }, name { gnutls_x509_crt_get_issuer_dn2($0, $1) },
                    Int(gnutls_x509_crt_get_expiration_time(certificate)))
        }) else { return nil }
        self.subject = subject
        self.issuer = issuer
        self.notAfter = notAfter
    }
}
