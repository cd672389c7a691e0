internal import CGnuTLS
import Foundation

/// Owns one `gnutls_certificate_credentials_t`: the certificates, key and trust roots that
/// every connection of a client or server shares. Immutable once built, so it may be used
/// from any thread (GnuTLS credentials are read-only during handshakes).
final class TLSCredentials: @unchecked Sendable {
    let handle: gnutls_certificate_credentials_t
    let configuration: QUICTLSConfiguration
    /// Server only: the session-ticket key and the 0-RTT anti-replay state.
    let tickets: ServerTickets?
    /// Server only, with ``QUICTLSConfiguration/serverCertificates``: the credentials of each
    /// certificate entry, chosen per handshake by SNI. These credentials then hold no certificate.
    let sni: SNICredentials?

    init(configuration: QUICTLSConfiguration, isServer: Bool) throws(QUICError) {
        try configuration.validate(isServer: isServer)
        let cred = try Self.allocate()
        self.handle = cred
        self.configuration = configuration
        self.tickets = isServer ? try ServerTickets() : nil

        if isServer, let store = configuration.serverCertificates {
            let sni = SNICredentials(configuration: configuration)
            try store.attach(sni)
            self.sni = sni
        } else {
            self.sni = nil
            if let chain = configuration.certificateChain, let key = configuration.privateKey {
                try Self.setKeyPair(cred, chain: try Self.load(chain, what: "certificate chain"),
                                    key: try Self.load(key, what: "private key"))
            }
        }
        let verifies = configuration.certificateVerification != .insecureNoVerification
        let needsTrust = isServer ? configuration.clientAuthentication != .none : verifies
        if needsTrust { try Self.setTrust(cred, configuration.trustRoots) }
    }

    /// A server's credentials for one entry of a certificate set (its chain and key, and the
    /// trust roots for client certificates when those are requested).
    init(entry: LoadedCertificateSet.Entry, configuration: QUICTLSConfiguration) throws(QUICError) {
        let cred = try Self.allocate()
        self.handle = cred
        self.configuration = configuration
        self.tickets = nil
        self.sni = nil
        try Self.setKeyPair(cred, chain: entry.chainPEM, key: entry.keyPEM)
        if configuration.clientAuthentication != .none { try Self.setTrust(cred, configuration.trustRoots) }
    }

    private static func allocate() throws(QUICError) -> gnutls_certificate_credentials_t {
        var cred: gnutls_certificate_credentials_t?
        guard gnutls_certificate_allocate_credentials(&cred) == GNUTLS_E_SUCCESS, let cred else {
            throw .internalError("could not allocate TLS credentials")
        }
        return cred
    }

    private static func setKeyPair(_ cred: gnutls_certificate_credentials_t, chain: [UInt8], key: [UInt8]) throws(QUICError) {
        let rv = chain.withDatum { chainDatum in
            key.withDatum { keyDatum in
                gnutls_certificate_set_x509_key_mem2(cred, &chainDatum, &keyDatum, GNUTLS_X509_FMT_PEM, nil, 0)
            }
        }
        if rv < 0 {
            throw .invalidArgument("certificate chain or private key not usable: \(gnutlsMessage(rv))")
        }
    }

    private static func setTrust(_ cred: gnutls_certificate_credentials_t,
                                 _ roots: QUICTLSConfiguration.TrustRoots) throws(QUICError) {
        switch roots {
        case .system:
            let rv = gnutls_certificate_set_x509_system_trust(cred)
            if rv < 0 { throw .fileError("could not load the system trust store: \(gnutlsMessage(rv))") }
        case .certificates(let source):
            let pem = try load(source, what: "trust roots")
            let rv = pem.withDatum { datum in
                gnutls_certificate_set_x509_trust_mem(cred, &datum, GNUTLS_X509_FMT_PEM)
            }
            if rv <= 0 {
                throw .invalidArgument("no CA certificate found in trust roots"
                                       + (rv < 0 ? ": \(gnutlsMessage(rv))" : ""))
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

/// A server's session tickets: a master key (GnuTLS derives rotating ticket keys from it, so
/// keys change over time without coordination) and anti-replay protection for 0-RTT: a
/// client hello seen within the window is refused early data (RFC 8446, section 8).
/// `@unchecked Sendable`: the key and the anti-replay handle are set once in `init` and only
/// read afterwards; ``SeenClientHellos`` has its own lock.
final class ServerTickets: @unchecked Sendable {
    private(set) var key = gnutls_datum_t()
    let antiReplay: gnutls_anti_replay_t
    private let seen = SeenClientHellos()

    init() throws(QUICError) {
        guard gnutls_session_ticket_key_generate(&key) == GNUTLS_E_SUCCESS else {
            throw .internalError("cannot generate a session ticket key")
        }
        var antiReplay: gnutls_anti_replay_t?
        guard gnutls_anti_replay_init(&antiReplay) == GNUTLS_E_SUCCESS, let antiReplay else {
            Self.free(&key)
            throw .internalError("cannot set up 0-RTT anti-replay")
        }
        self.antiReplay = antiReplay
        gnutls_anti_replay_set_ptr(antiReplay, Unmanaged.passUnretained(seen).toOpaque())
        gnutls_anti_replay_set_add_function(antiReplay) { pointer, expiry, key, _ in
            guard let pointer, let key, let data = key.pointee.data else { return GNUTLS_E_DB_ERROR }
            let bytes = Array(UnsafeBufferPointer(start: data, count: Int(key.pointee.size)))
            let seen = Unmanaged<SeenClientHellos>.fromOpaque(pointer).takeUnretainedValue()
            return seen.insert(bytes, expiry: Int(expiry)) ? 0 : GNUTLS_E_DB_ENTRY_EXISTS
        }
    }

    /// Turns on tickets and (anti-replayed) early data for a server session.
    func enable(on session: gnutls_session_t) -> Int32 {
        var rv = gnutls_session_ticket_enable_server(session, &key)
        if rv != GNUTLS_E_SUCCESS { return rv }
        gnutls_anti_replay_enable(session, antiReplay)
        // QUIC requires max_early_data_size 0xffffffff in tickets (RFC 9001, section 4.6.1).
        rv = gnutls_record_set_max_early_data_size(session, 0xffff_ffff)
        return rv
    }

    deinit {
        gnutls_anti_replay_deinit(antiReplay)
        Self.free(&key)
    }

    private static func free(_ key: inout gnutls_datum_t) {
        if let data = key.data {
            memset(data, 0, Int(key.size))
            swift_gnutls_free(data)
        }
        key = gnutls_datum_t()
    }
}

/// Client hellos that carried early data, until their tickets' windows expire. Bounded.
/// `@unchecked Sendable`: every mutable member is read and written under `lock`.
final class SeenClientHellos: @unchecked Sendable {
    private let lock = NSLock()
    private var entries: [[UInt8]: Int] = [:]
    private let limit = 100_000
    /// When the table was last swept of expired entries (a sweep walks all of it: at most once a second).
    private var lastSweep = 0

    /// Records a client hello; `false` if it was seen already (a replay).
    func insert(_ key: [UInt8], expiry: Int) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        let now = Int(time(nil))
        if entries.count >= limit, now != lastSweep {
            entries = entries.filter { $0.value > now }
            lastSweep = now
        }
        if let existing = entries[key], existing > now { return false }
        // Full and nothing expired: refusing early data is the safe answer.
        guard entries.count < limit else { return false }
        entries[key] = expiry
        return true
    }
}

/// The message GnuTLS gives for an error code.
func gnutlsMessage(_ code: Int32) -> String {
    guard let text = gnutls_strerror(code) else { return "GnuTLS error \(code)" }
    return String(cString: text)
}
