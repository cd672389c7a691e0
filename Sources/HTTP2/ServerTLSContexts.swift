import NIOConcurrencyHelpers
import NIOCore
import NIOSSL
import QUIC

/// Which TLS context answers a TCP connection: one fixed context (a configuration with one
/// chain and key), or, with ``QUICTLSConfiguration/serverCertificates``, one context per
/// entry of the store's current set, chosen by the client's SNI.
///
/// The server reads the client hello's SNI before TLS starts (NIO's `SNIHandler`) and puts the
/// chosen context's `NIOSSLServerHandler` into the connection's pipeline; a connection keeps that
/// context for its life, whatever the store does later.
final class ServerTLSContexts: TLSCertificateConsumer, @unchecked Sendable {
    private struct Selection {
        let matcher: SNINameMatcher
        let contexts: [NIOSSLContext]
    }

    private let tls: QUICTLSConfiguration
    private let alpn: [String]
    private let fixed: NIOSSLContext?
    private let current = NIOLockedValueBox<Selection?>(nil)

    /// The TLS alert record that refuses a client hello whose server name no entry serves:
    /// a plaintext fatal `unrecognized_name` (112) alert, as a server sends before ServerHello.
    static let unrecognizedNameAlert: [UInt8] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 112]

    init(_ tls: QUICTLSConfiguration, alpn: [String]) throws(HTTP2ConfigurationError) {
        self.tls = tls
        self.alpn = alpn
        if let store = tls.serverCertificates {
            fixed = nil
            do {
                try store.attach(self)
            } catch {
                throw HTTP2ConfigurationError("\(error)")
            }
        } else {
            fixed = try TLSContexts.server(tls, alpn: alpn)
        }
    }

    func prepare(_ set: LoadedCertificateSet) throws -> () -> Void {
        var contexts: [NIOSSLContext] = []
        for (position, entry) in set.entries.enumerated() {
            do {
                let chain = try NIOSSLCertificate.fromPEMBytes(entry.chainPEM)
                let key = try NIOSSLPrivateKey(bytes: entry.keyPEM, format: .pem)
                contexts.append(try TLSContexts.server(tls, alpn: alpn, chain: chain, key: key))
            } catch {
                throw HTTP2ConfigurationError("certificate entry \(position + 1) (\(entry.subject)): \(error)")
            }
        }
        let selection = Selection(matcher: set.matcher, contexts: contexts)
        return { [current] in current.withLockedValue { $0 = selection } }
    }

    /// The context for a client's server name; `nil` when no entry serves it and there is no default.
    func context(for serverName: String?) -> NIOSSLContext? {
        if let fixed { return fixed }
        return current.withLockedValue { selection in
            guard let selection, let index = selection.matcher.entryIndex(for: serverName) else { return nil }
            return selection.contexts[index]
        }
    }
}
