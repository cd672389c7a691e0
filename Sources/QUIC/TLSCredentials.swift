internal import CGnuTLS
import Foundation

/// Owns one `gnutls_certificate_credentials_t`: the certificates, key and trust roots that
/// every connection of a client or server shares. Immutable once built, so it may be used
/// from any thread (GnuTLS credentials are read-only during handshakes).
final class TLSCredentials: @unchecked Sendable {
    let handle: gnutls_certificate_credentials_t
    let configuration: QUICTLSConfiguration

    init(configuration: QUICTLSConfiguration, isServer: Bool) throws(QUICError) {
        try configuration.validate(isServer: isServer)
        var cred: gnutls_certificate_credentials_t?
        guard gnutls_certificate_allocate_credentials(&cred) == GNUTLS_E_SUCCESS, let cred else {
            throw .internalError("could not allocate TLS credentials")
        }
        self.handle = cred
        self.configuration = configuration

        if let chain = configuration.certificateChain, let key = configuration.privateKey {
            let chainPEM = try Self.load(chain, what: "certificate chain")
            let keyPEM = try Self.load(key, what: "private key")
            let rv = chainPEM.withDatum { chainDatum in
                keyPEM.withDatum { keyDatum in
                    gnutls_certificate_set_x509_key_mem2(cred, &chainDatum, &keyDatum,
                                                         GNUTLS_X509_FMT_PEM, nil, 0)
                }
            }
            if rv < 0 {
                throw .invalidArgument("certificate chain or private key not usable: \(gnutlsMessage(rv))")
            }
        }

        let verifies = configuration.certificateVerification != .insecureNoVerification
        let needsTrust = isServer ? configuration.clientAuthentication != .none : verifies
        if needsTrust {
            switch configuration.trustRoots {
            case .system:
                let rv = gnutls_certificate_set_x509_system_trust(cred)
                if rv < 0 { throw .fileError("could not load the system trust store: \(gnutlsMessage(rv))") }
            case .certificates(let source):
                let pem = try Self.load(source, what: "trust roots")
                let rv = pem.withDatum { datum in
                    gnutls_certificate_set_x509_trust_mem(cred, &datum, GNUTLS_X509_FMT_PEM)
                }
                if rv <= 0 {
                    throw .invalidArgument("no CA certificate found in trust roots"
                                           + (rv < 0 ? ": \(gnutlsMessage(rv))" : ""))
                }
            }
        }
    }

    deinit {
        gnutls_certificate_free_credentials(handle)
    }

    private static func load(_ source: QUICTLSConfiguration.PEMSource, what: String) throws(QUICError) -> [UInt8] {
        switch source {
        case .pem(let text):
            return Array(text.utf8)
        case .file(let path):
            guard let data = FileManager.default.contents(atPath: path) else {
                throw .fileError("could not read \(what) file \(path)")
            }
            return Array(data)
        }
    }
}

extension Array where Element == UInt8 {
    /// Calls `body` with a GnuTLS datum that points at this array's bytes.
    func withDatum<R>(_ body: (inout gnutls_datum_t) -> R) -> R {
        var copy = self
        return copy.withUnsafeMutableBufferPointer { buffer in
            var datum = gnutls_datum_t(data: buffer.baseAddress, size: UInt32(buffer.count))
            return body(&datum)
        }
    }
}

/// The message GnuTLS gives for an error code.
func gnutlsMessage(_ code: Int32) -> String {
    guard let text = gnutls_strerror(code) else { return "GnuTLS error \(code)" }
    return String(cString: text)
}
