import HTTPAPI
import NIOSSL
import QUIC

/// Turns the transport-neutral TLS settings (``QUICTLSConfiguration``, shared with HTTP/3 so that
/// one value configures both) into NIOSSL contexts for TCP.
///
/// TLS over TCP accepts TLS 1.2 and 1.3; `cipherSuites` applies to QUIC only (BoringSSL
/// does not let TLS 1.3 suites be chosen).
enum TLSContexts {
    static func certificates(_ source: QUICTLSConfiguration.PEMSource) throws -> [NIOSSLCertificate] {
        switch source {
        case .file(let path): return try NIOSSLCertificate.fromPEMFile(path)
        case .pem(let text): return try NIOSSLCertificate.fromPEMBytes(Array(text.utf8))
        }
    }

    static func privateKey(_ source: QUICTLSConfiguration.PEMSource) throws -> NIOSSLPrivateKey {
        switch source {
        case .file(let path): return try NIOSSLPrivateKey(file: path, format: .pem)
        case .pem(let text): return try NIOSSLPrivateKey(bytes: Array(text.utf8), format: .pem)
        }
    }

    static func trustRoots(_ roots: QUICTLSConfiguration.TrustRoots) throws -> NIOSSLTrustRoots {
        switch roots {
        case .system: return .default
        case .certificates(let source): return .certificates(try certificates(source))
        }
    }

    /// A server context offering `alpn` (most preferred first).
    static func server(_ tls: QUICTLSConfiguration, alpn: [String]) throws(HTTP2ConfigurationError) -> NIOSSLContext {
        guard let chainSource = tls.certificateChain, let keySource = tls.privateKey else {
            throw HTTP2ConfigurationError("a server needs a certificate chain and a private key")
        }
        do {
            return try server(tls, alpn: alpn, chain: try certificates(chainSource), key: try privateKey(keySource))
        } catch let error as HTTP2ConfigurationError {
            throw error
        } catch {
            throw HTTP2ConfigurationError("TLS: \(error)")
        }
    }

    /// A server context for one certificate chain and key, with `tls`'s client authentication.
    static func server(_ tls: QUICTLSConfiguration, alpn: [String], chain: [NIOSSLCertificate],
                       key: NIOSSLPrivateKey) throws(HTTP2ConfigurationError) -> NIOSSLContext {
        do {
            guard !chain.isEmpty else { throw HTTP2ConfigurationError("the certificate chain holds no certificate") }
            var configuration = TLSConfiguration.makeServerConfiguration(
                certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
            configuration.applicationProtocols = alpn
            switch tls.clientAuthentication {
            case .none: configuration.certificateVerification = .none
            case .optional: configuration.certificateVerification = .optionalVerification
            case .required: configuration.certificateVerification = .noHostnameVerification
            }
            if tls.clientAuthentication != .none {
                configuration.trustRoots = try trustRoots(tls.trustRoots)
            }
            return try NIOSSLContext(configuration: configuration)
        } catch let error as HTTP2ConfigurationError {
            throw error
        } catch {
            throw HTTP2ConfigurationError("TLS: \(error)")
        }
    }

    /// A client context offering `alpn`.
    static func client(_ tls: QUICTLSConfiguration, alpn: [String]) throws(HTTP2ConfigurationError) -> NIOSSLContext {
        do {
            var configuration = TLSConfiguration.makeClientConfiguration()
            configuration.applicationProtocols = alpn
            configuration.trustRoots = try trustRoots(tls.trustRoots)
            switch tls.certificateVerification {
            case .fullVerification: configuration.certificateVerification = .fullVerification
            case .noHostnameVerification: configuration.certificateVerification = .noHostnameVerification
            case .insecureNoVerification: configuration.certificateVerification = .none
            }
            if let chainSource = tls.certificateChain, let keySource = tls.privateKey {
                configuration.certificateChain = try certificates(chainSource).map { .certificate($0) }
                configuration.privateKey = .privateKey(try privateKey(keySource))
            } else if (tls.certificateChain == nil) != (tls.privateKey == nil) {
                throw HTTP2ConfigurationError("a certificate chain and a private key go together")
            }
            return try NIOSSLContext(configuration: configuration)
        } catch let error as HTTP2ConfigurationError {
            throw error
        } catch {
            throw HTTP2ConfigurationError("TLS: \(error)")
        }
    }
}

/// A server or client setting that cannot be used (a missing key, an unreadable certificate, ...).
public struct HTTP2ConfigurationError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What is wrong, in one sentence.
    public let description: String

    /// Creates an error with a message.
    public init(_ description: String) {
        self.description = description
    }
}
