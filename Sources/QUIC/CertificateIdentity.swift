internal import CGnuTLS

/// Who a client certificate names: its subject's common name (CN) and organizations (O), as
/// front proxies pass them on (Kubernetes' `--requestheader-username-headers` and
/// `--requestheader-group-headers`: CN is the user, each O a group).
public struct CertificateIdentity: Sendable, Hashable {
    /// The subject's first common name, if any.
    public let commonName: String?
    /// The subject's organizations, in certificate order.
    public let organizations: [String]

    /// Creates an identity from its parts.
    public init(commonName: String?, organizations: [String]) {
        self.commonName = commonName
        self.organizations = organizations
    }

    /// Reads a DER certificate; `nil` when it cannot be parsed.
    public init?(der: [UInt8]) {
        guard let (commonName, organizations) = withDERCertificate(der, { certificate in
            func values(_ oid: String) -> [String] {
                var found: [String] = []
                for index in 0..<64 {
                    var buffer = [CChar](repeating: 0, count: 1024)
                    var size = buffer.count
                    let rv = gnutls_x509_crt_get_dn_by_oid(certificate, oid, UInt32(index), 0, &buffer, &size)
                    guard rv == GNUTLS_E_SUCCESS else { break }
                    found.append(String(decoding: buffer.prefix(size).map { UInt8(bitPattern: $0) }, as: UTF8.self))
                }
                return found
            }
            return (values("2.5.4.3").first, values("2.5.4.10"))
        }) else { return nil }
        self.commonName = commonName
        self.organizations = organizations
    }
}

/// Parses a DER certificate with GnuTLS and hands it to `body` (the handle is freed afterwards);
/// `nil` when it cannot be parsed.
func withDERCertificate<T>(_ der: [UInt8], _ body: (gnutls_x509_crt_t) -> T) -> T? {
    var der = der
    var certificate: gnutls_x509_crt_t?
    guard !der.isEmpty, gnutls_x509_crt_init(&certificate) == GNUTLS_E_SUCCESS, let certificate else { return nil }
    defer { gnutls_x509_crt_deinit(certificate) }
    let imported = der.withUnsafeMutableBufferPointer { bytes -> Int32 in
        var datum = gnutls_datum_t(data: bytes.baseAddress, size: UInt32(bytes.count))
        return gnutls_x509_crt_import(certificate, &datum, GNUTLS_X509_FMT_DER)
    }
    guard imported == GNUTLS_E_SUCCESS else { return nil }
    return body(certificate)
}
