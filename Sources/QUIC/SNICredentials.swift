import NIOConcurrencyHelpers

/// The QUIC (GnuTLS) form of a ``TLSCertificateStore``'s set: one credentials object per
/// entry, and the name matcher. A server session asks it, after the client hello, which
/// credentials answer the client's SNI (``TLSSession``'s post-client-hello hook).
///
/// Replaced as a whole under a lock: a handshake takes a reference to the credentials it
/// chose, so a replacement never frees what an open session uses.
final class SNICredentials: TLSCertificateConsumer, @unchecked Sendable {
    private struct Selection {
        let matcher: SNINameMatcher
        let credentials: [TLSCredentials]
    }

    private let configuration: QUICTLSConfiguration
    private let current = NIOLockedValueBox<Selection?>(nil)

    init(configuration: QUICTLSConfiguration) {
        self.configuration = configuration
    }

    func prepare(_ set: LoadedCertificateSet) throws -> () -> Void {
        var credentials: [TLSCredentials] = []
        for (position, entry) in set.entries.enumerated() {
            do {
                credentials.append(try TLSCredentials(entry: entry, configuration: configuration))
            } catch {
                throw QUICError.invalidArgument("certificate entry \(position + 1) (\(entry.subject)): \(error)")
            }
        }
        let selection = Selection(matcher: set.matcher, credentials: credentials)
        return { [current] in current.withLockedValue { $0 = selection } }
    }

    /// The credentials for a client's server name, or `nil` when no entry serves it and there is no default.
    func credentials(for serverName: String?) -> TLSCredentials? {
        current.withLockedValue { selection in
            guard let selection, let index = selection.matcher.entryIndex(for: serverName) else { return nil }
            return selection.credentials[index]
        }
    }
}
