internal import CGnuTLS
import Glibc
import NIOCore

/// A certificate and its private key, both PEM.
package struct GeneratedCertificate: Sendable, Hashable {
    package var certificatePEM: String
    package var privateKeyPEM: String
    /// SHA-256 of the certificate's DER bytes, as colon-separated hex.
    package var sha256Fingerprint: String
}

/// Makes ECDSA P-256 certificates with GnuTLS: a CA, leaves signed by it, or a self-signed
/// leaf. Used by tests (which make their PKI at run time) and by `h3 serve` (which makes a
/// self-signed certificate on first use).
package enum CertificateGenerator {
    /// Who the leaf is for.
    package struct Names: Sendable {
        package var commonName: String
        package var dnsNames: [String]
        package var ipAddresses: [String]
        /// Subject organizations (O), in order.
        package var organizations: [String]

        package init(commonName: String, dnsNames: [String] = [], ipAddresses: [String] = [], organizations: [String] = []) {
            self.commonName = commonName
            self.dnsNames = dnsNames
            self.ipAddresses = ipAddresses
            self.organizations = organizations
        }
    }

    /// The SHA-256 fingerprint and expiry (seconds since 1970) of the first certificate in a PEM text.
    package static func inspect(certificatePEM pem: String) throws(QUICError) -> (sha256Fingerprint: String, notAfter: Int) {
        let cert = try Certificate(pem: pem)
        return (cert.sha256Fingerprint(), Int(gnutls_x509_crt_get_expiration_time(cert.handle)))
    }

    /// A CA certificate (basic constraints CA:true, may sign certificates).
    package static func makeCertificateAuthority(commonName: String, validDays: Int = 30) throws(QUICError) -> GeneratedCertificate {
        let key = try PrivateKey()
        let cert = try Certificate()
        try cert.fill(commonName: commonName, key: key, validDays: validDays)
        try check(gnutls_x509_crt_set_basic_constraints(cert.handle, 1, -1), "basic constraints")
        try check(gnutls_x509_crt_set_key_usage(cert.handle, UInt32(GNUTLS_KEY_KEY_CERT_SIGN | GNUTLS_KEY_CRL_SIGN)), "key usage")
        try check(gnutls_x509_crt_sign2(cert.handle, cert.handle, key.handle, GNUTLS_DIG_SHA256, 0), "signing")
        return try GeneratedCertificate(cert: cert, key: key)
    }

    /// A leaf certificate for a TLS server and client, signed by `issuer`, or self-signed
    /// when `issuer` is `nil`.
    package static func makeLeaf(_ names: Names, issuer: GeneratedCertificate? = nil,
                                 validDays: Int = 30, notBefore: Int? = nil) throws(QUICError) -> GeneratedCertificate {
        let key = try PrivateKey()
        let cert = try Certificate()
        try cert.fill(commonName: names.commonName, key: key, validDays: validDays, notBefore: notBefore)
        for organization in names.organizations {
            try check(gnutls_x509_crt_set_dn_by_oid(cert.handle, GNUTLS_OID_X520_ORGANIZATION_NAME, 0, organization,
                                                    UInt32(organization.utf8.count)), "organization")
        }
        try check(gnutls_x509_crt_set_basic_constraints(cert.handle, 0, -1), "basic constraints")
        try check(gnutls_x509_crt_set_key_usage(cert.handle, UInt32(GNUTLS_KEY_DIGITAL_SIGNATURE)), "key usage")
        try check(gnutls_x509_crt_set_key_purpose_oid(cert.handle, GNUTLS_KP_TLS_WWW_SERVER, 0), "key purpose")
        try check(gnutls_x509_crt_set_key_purpose_oid(cert.handle, GNUTLS_KP_TLS_WWW_CLIENT, 0), "key purpose")
        for name in names.dnsNames {
            try check(gnutls_x509_crt_set_subject_alt_name(cert.handle, GNUTLS_SAN_DNSNAME, name,
                                                           UInt32(name.utf8.count), UInt32(GNUTLS_FSAN_APPEND)), "DNS name")
        }
        for address in names.ipAddresses {
            guard let raw = rawIPAddress(address) else { throw .invalidArgument("not an IP address: \(address)") }
            try check(gnutls_x509_crt_set_subject_alt_name(cert.handle, GNUTLS_SAN_IPADDRESS, raw,
                                                           UInt32(raw.count), UInt32(GNUTLS_FSAN_APPEND)), "IP address")
        }
        if let issuer {
            let issuerCert = try Certificate(pem: issuer.certificatePEM)
            let issuerKey = try PrivateKey(pem: issuer.privateKeyPEM)
            try check(gnutls_x509_crt_sign2(cert.handle, issuerCert.handle, issuerKey.handle, GNUTLS_DIG_SHA256, 0), "signing")
        } else {
            try check(gnutls_x509_crt_sign2(cert.handle, cert.handle, key.handle, GNUTLS_DIG_SHA256, 0), "signing")
        }
        return try GeneratedCertificate(cert: cert, key: key)
    }

    private static func rawIPAddress(_ text: String) -> [UInt8]? {
        var bytes = [UInt8](repeating: 0, count: 16)
        if inet_pton(AF_INET, text, &bytes) == 1 { return Array(bytes.prefix(4)) }
        if inet_pton(AF_INET6, text, &bytes) == 1 { return bytes }
        return nil
    }

    fileprivate static func check(_ rv: Int32, _ what: String) throws(QUICError) {
        if rv < 0 { throw .internalError("certificate \(what) failed: \(gnutlsMessage(rv))") }
    }
}

private final class PrivateKey {
    let handle: gnutls_x509_privkey_t

    init() throws(QUICError) {
        // GNUTLS_CURVE_TO_BITS(curve) is a function-like macro: the top bit marks a curve number.
        let bits = UInt32(1) << 31 | GNUTLS_ECC_CURVE_SECP256R1.rawValue
        // GnuTLS 3.7 writes the private scalar as a signed integer: 33 bytes with a leading
        // zero when the top bit is set, 31 when the top byte is zero. Stricter parsers (Python's
        // cryptography, so aioquic) want exactly 32: draw again until it is exactly 32 bytes.
        // Each draw gets a fresh key: generating into the same key again leaked the previous
        // draw's parameters (found by LeakSanitizer in Fuzz/).
        var attempts = 0
        while true {
            var key: gnutls_x509_privkey_t?
            guard gnutls_x509_privkey_init(&key) == 0, let key else { throw .internalError("gnutls_x509_privkey_init failed") }
            do {
                try CertificateGenerator.check(gnutls_x509_privkey_generate(key, GNUTLS_PK_ECDSA, bits, 0), "key generation")
            } catch {
                gnutls_x509_privkey_deinit(key)
                throw error
            }
            attempts += 1
            if attempts == 64 || Self.hasPortableEncoding(key) {
                handle = key
                return
            }
            gnutls_x509_privkey_deinit(key)
        }
    }

    private static func hasPortableEncoding(_ key: gnutls_x509_privkey_t) -> Bool {
        var curve = gnutls_ecc_curve_t(0)
        var x = gnutls_datum_t(), y = gnutls_datum_t(), k = gnutls_datum_t()
        guard gnutls_x509_privkey_export_ecc_raw(key, &curve, &x, &y, &k) == 0 else { return false }
        defer {
            swift_gnutls_free(x.data)
            swift_gnutls_free(y.data)
            swift_gnutls_free(k.data)
        }
        guard let data = k.data, k.size == 32 else { return false }
        return data[0] != 0 && data[0] < 0x80
    }

    init(pem: String) throws(QUICError) {
        var key: gnutls_x509_privkey_t?
        guard gnutls_x509_privkey_init(&key) == 0, let key else { throw .internalError("gnutls_x509_privkey_init failed") }
        handle = key
        let rv = Array(pem.utf8).withDatum { gnutls_x509_privkey_import(key, &$0, GNUTLS_X509_FMT_PEM) }
        try CertificateGenerator.check(rv, "key import")
    }

    deinit { gnutls_x509_privkey_deinit(handle) }

    func pem() throws(QUICError) -> String {
        var out = gnutls_datum_t()
        try CertificateGenerator.check(gnutls_x509_privkey_export2_pkcs8(handle, GNUTLS_X509_FMT_PEM, nil, 0, &out), "key export")
        return takeString(out)
    }
}

private final class Certificate {
    let handle: gnutls_x509_crt_t

    init() throws(QUICError) {
        var crt: gnutls_x509_crt_t?
        guard gnutls_x509_crt_init(&crt) == 0, let crt else { throw .internalError("gnutls_x509_crt_init failed") }
        handle = crt
    }

    convenience init(pem: String) throws(QUICError) {
        try self.init()
        let rv = Array(pem.utf8).withDatum { gnutls_x509_crt_import(handle, &$0, GNUTLS_X509_FMT_PEM) }
        try CertificateGenerator.check(rv, "import")
    }

    deinit { gnutls_x509_crt_deinit(handle) }

    func fill(commonName: String, key: PrivateKey, validDays: Int, notBefore: Int? = nil) throws(QUICError) {
        try CertificateGenerator.check(gnutls_x509_crt_set_version(handle, 3), "version")
        var serial = secureRandomBytes(16)
        serial[0] &= 0x7f
        try CertificateGenerator.check(gnutls_x509_crt_set_serial(handle, serial, serial.count), "serial")
        let now = time(nil)
        let start = notBefore.map { time_t($0) } ?? now - 3600
        try CertificateGenerator.check(gnutls_x509_crt_set_activation_time(handle, start), "activation time")
        try CertificateGenerator.check(gnutls_x509_crt_set_expiration_time(handle, start + time_t(validDays) * 86_400 + 3600),
                                       "expiration time")
        try CertificateGenerator.check(gnutls_x509_crt_set_key(handle, key.handle), "key")
        try CertificateGenerator.check(gnutls_x509_crt_set_dn_by_oid(handle, GNUTLS_OID_X520_COMMON_NAME, 0, commonName,
                                                                     UInt32(commonName.utf8.count)), "common name")
        var keyID = [UInt8](repeating: 0, count: 64)
        var size = keyID.count
        if gnutls_x509_crt_get_key_id(handle, 0, &keyID, &size) == 0 {
            _ = gnutls_x509_crt_set_subject_key_id(handle, keyID, size)
        }
    }

    func pem() throws(QUICError) -> String {
        var out = gnutls_datum_t()
        try CertificateGenerator.check(gnutls_x509_crt_export2(handle, GNUTLS_X509_FMT_PEM, &out), "export")
        return takeString(out)
    }

    func sha256Fingerprint() -> String {
        var digest = [UInt8](repeating: 0, count: 32)
        var size = digest.count
        guard gnutls_x509_crt_get_fingerprint(handle, GNUTLS_DIG_SHA256, &digest, &size) == 0 else { return "" }
        return digest.prefix(size).map { String($0, radix: 16, uppercase: true).leftPad(2) }.joined(separator: ":")
    }
}

private func takeString(_ datum: gnutls_datum_t) -> String {
    guard let data = datum.data else { return "" }
    let text = String(decoding: UnsafeBufferPointer(start: data, count: Int(datum.size)), as: UTF8.self)
    swift_gnutls_free(data)
    return text
}

extension GeneratedCertificate {
    fileprivate init(cert: Certificate, key: PrivateKey) throws(QUICError) {
        self.init(certificatePEM: try cert.pem(), privateKeyPEM: try key.pem(), sha256Fingerprint: cert.sha256Fingerprint())
    }
}
