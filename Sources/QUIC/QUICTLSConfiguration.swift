/// TLS 1.3 settings for a QUIC client or server.
///
/// QUIC always runs TLS 1.3; this type chooses the certificates, the trust roots, the
/// application protocols (ALPN) and how strictly the peer is verified. Verification is
/// on by default: a client trusts the system store and checks the server's hostname.
///
/// ```swift
/// var tls = QUICTLSConfiguration.makeClientConfiguration(applicationProtocols: ["h3"])
/// tls.trustRoots = .certificates(.file("/etc/my-ca.pem"))
/// ```
public struct QUICTLSConfiguration: Sendable, Hashable {
    /// PEM data, from a file or in memory.
    public enum PEMSource: Sendable, Hashable {
        /// A path to a PEM file.
        case file(String)
        /// PEM text.
        case pem(String)
    }

    /// Which certificate authorities are trusted to sign the peer's certificate.
    public enum TrustRoots: Sendable, Hashable {
        /// The operating system's trust store.
        case system
        /// Only the CA certificates in this PEM source.
        case certificates(PEMSource)
    }

    /// How the peer's certificate is checked.
    public enum CertificateVerification: Sendable, Hashable {
        /// Chain to a trusted root and (on a client) the server name must match. The default.
        case fullVerification
        /// Chain to a trusted root, but the name is not checked.
        case noHostnameVerification
        /// Accept any certificate. Insecure: for tests and debugging only (curl's `-k`).
        case insecureNoVerification
    }

    /// Whether a server asks clients for a certificate (mutual TLS).
    public enum ClientAuthentication: Sendable, Hashable {
        /// Clients are not asked for a certificate. The default.
        case none
        /// A client may present a certificate; if it does, it must verify.
        case optional
        /// A client must present a certificate that verifies.
        case required
    }

    /// TLS 1.3 cipher suites to offer or accept.
    public enum CipherSuites: Sendable, Hashable {
        /// AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305 and AES-128-CCM.
        case all
        /// Only TLS_AES_128_GCM_SHA256.
        case aes128GCM
        /// Only TLS_CHACHA20_POLY1305_SHA256.
        case chacha20Poly1305
    }

    /// The certificate chain presented to the peer (required on a server; on a client, for mTLS).
    public var certificateChain: PEMSource?
    /// The private key that matches the first certificate of ``certificateChain``.
    public var privateKey: PEMSource?
    /// Server only: certificates chosen by SNI, replaceable at run time. When set, it is used
    /// instead of ``certificateChain`` and ``privateKey``.
    public var serverCertificates: TLSCertificateStore?
    /// ALPN protocol identifiers, most preferred first. Must not be empty.
    public var applicationProtocols: [String]
    /// The name sent in SNI and checked against the server's certificate (client only).
    /// `nil` uses the host the client connects to.
    public var serverName: String?
    /// The trust roots for the peer's certificate.
    public var trustRoots: TrustRoots
    /// How the peer's certificate is verified.
    public var certificateVerification: CertificateVerification
    /// Whether a server requests client certificates.
    public var clientAuthentication: ClientAuthentication
    /// The cipher suites offered or accepted.
    public var cipherSuites: CipherSuites

    /// Creates a configuration. Prefer ``makeClientConfiguration(applicationProtocols:)`` and
    /// ``makeServerConfiguration(certificateChain:privateKey:applicationProtocols:)``.
    public init(certificateChain: PEMSource? = nil, privateKey: PEMSource? = nil,
                applicationProtocols: [String], serverName: String? = nil,
                trustRoots: TrustRoots = .system,
                certificateVerification: CertificateVerification = .fullVerification,
                clientAuthentication: ClientAuthentication = .none,
                cipherSuites: CipherSuites = .all) {
        self.certificateChain = certificateChain
        self.privateKey = privateKey
        self.applicationProtocols = applicationProtocols
        self.serverName = serverName
        self.trustRoots = trustRoots
        self.certificateVerification = certificateVerification
        self.clientAuthentication = clientAuthentication
        self.cipherSuites = cipherSuites
    }

    /// A client configuration: system trust store, full verification.
    public static func makeClientConfiguration(applicationProtocols: [String]) -> QUICTLSConfiguration {
        QUICTLSConfiguration(applicationProtocols: applicationProtocols)
    }

    /// A server configuration whose certificates are chosen by SNI from `store`.
    public static func makeServerConfiguration(certificates store: TLSCertificateStore,
                                               applicationProtocols: [String]) -> QUICTLSConfiguration {
        var configuration = QUICTLSConfiguration(applicationProtocols: applicationProtocols)
        configuration.serverCertificates = store
        return configuration
    }

    /// A server configuration with a certificate chain and its private key.
    public static func makeServerConfiguration(certificateChain: PEMSource, privateKey: PEMSource,
                                               applicationProtocols: [String]) -> QUICTLSConfiguration {
        QUICTLSConfiguration(certificateChain: certificateChain, privateKey: privateKey,
                             applicationProtocols: applicationProtocols)
    }

    /// The GnuTLS priority string for these settings: TLS 1.3 only, no middlebox compatibility mode.
    var priorityString: String {
        let ciphers: String
        switch cipherSuites {
        case .all: ciphers = "+AES-128-GCM:+AES-256-GCM:+CHACHA20-POLY1305:+AES-128-CCM"
        case .aes128GCM: ciphers = "+AES-128-GCM"
        case .chacha20Poly1305: ciphers = "+CHACHA20-POLY1305"
        }
        return "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:\(ciphers):-GROUP-ALL:+GROUP-X25519:"
            + "+GROUP-SECP256R1:+GROUP-SECP384R1:+GROUP-SECP521R1:%DISABLE_TLS13_COMPAT_MODE"
    }

    /// Checks what can be checked without loading files.
    func validate(isServer: Bool) throws(QUICError) {
        if applicationProtocols.isEmpty {
            throw .invalidArgument("at least one application protocol (ALPN) is required")
        }
        for proto in applicationProtocols where proto.utf8.isEmpty || proto.utf8.count > 255 {
            throw .invalidArgument("ALPN identifier must be 1 to 255 bytes: \"\(proto)\"")
        }
        if isServer && serverCertificates == nil && (certificateChain == nil || privateKey == nil) {
            throw .invalidArgument("a server needs a certificate chain and a private key (or a certificate store)")
        }
        if (certificateChain == nil) != (privateKey == nil) {
            throw .invalidArgument("a certificate chain and a private key go together")
        }
    }
}
