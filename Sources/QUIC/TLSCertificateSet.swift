internal import CGnuTLS
import Foundation

/// Several certificates on one server, chosen by the name the client asks for (SNI).
///
/// Each entry is a certificate chain and its key, for its names: exact host names and `*.`
/// wildcards, taken from the leaf certificate's DNS subject alternative names unless given.
/// A client that sends no name, or a name no entry serves, gets the ``defaultIndex`` entry;
/// with no default, its handshake fails with the TLS alert `unrecognized_name`.
///
/// Serve a set through a ``TLSCertificateStore`` (``QUICTLSConfiguration/serverCertificates``),
/// which can replace it while the server runs.
///
/// ```swift
/// let set = TLSCertificateSet(entries: [
///     .init(certificateChain: .file("a.pem"), privateKey: .file("a.key")),           // names from its SANs
///     .init(certificateChain: .file("b.pem"), privateKey: .file("b.key"), names: ["*.b.example"]),
/// ])
/// ```
public struct TLSCertificateSet: Sendable, Hashable {
    /// One certificate chain, its key and the names it serves.
    public struct Entry: Sendable, Hashable {
        /// The chain, leaf first (PEM).
        public var certificateChain: QUICTLSConfiguration.PEMSource
        /// The leaf's private key (PEM).
        public var privateKey: QUICTLSConfiguration.PEMSource
        /// The names this entry serves (`host.example` or `*.example`); `nil` takes the leaf
        /// certificate's DNS subject alternative names.
        public var names: [String]?

        /// Creates an entry.
        public init(certificateChain: QUICTLSConfiguration.PEMSource, privateKey: QUICTLSConfiguration.PEMSource,
                    names: [String]? = nil) {
            self.certificateChain = certificateChain
            self.privateKey = privateKey
            self.names = names
        }
    }

    /// The entries; for a name two entries serve, the earlier wins.
    public var entries: [Entry]
    /// The entry (an index into ``entries``) for clients that send no name or a name no entry
    /// serves; `nil` refuses them with `unrecognized_name`.
    public var defaultIndex: Int?

    /// Creates a set; by default the first entry also answers unknown and absent names.
    public init(entries: [Entry], defaultIndex: Int? = 0) {
        self.entries = entries
        self.defaultIndex = defaultIndex
    }
}

/// A certificate set with its files read and checked: what each transport builds its TLS
/// contexts from. Loading does all the file I/O, so a handshake never touches the disk.
package struct LoadedCertificateSet: Sendable {
    /// One entry's bytes and names.
    package struct Entry: Sendable {
        /// The chain, PEM.
        package let chainPEM: [UInt8]
        /// The key, PEM.
        package let keyPEM: [UInt8]
        /// The names it serves (given, or the leaf's DNS SANs).
        package let names: [String]
        /// The leaf's subject (RFC 4514), for logs.
        package let subject: String
    }

    package let entries: [Entry]
    package let defaultIndex: Int?
    package let matcher: SNINameMatcher

    /// Reads and checks every file of `set`.
    ///
    /// - Throws: ``QUICError/fileError(_:)`` for an unreadable file,
    ///   ``QUICError/invalidArgument(_:)`` for an empty set, a bad default index, a file
    ///   that holds no certificate, or a key that does not match its certificate.
    package init(_ set: TLSCertificateSet) throws(QUICError) {
        guard !set.entries.isEmpty else { throw .invalidArgument("the certificate set is empty") }
        if let index = set.defaultIndex, !set.entries.indices.contains(index) {
            throw .invalidArgument("the default certificate index \(index) is out of range")
        }
        var entries: [Entry] = []
        for (position, entry) in set.entries.enumerated() {
            let what = "certificate entry \(position + 1)"
            let chain = try Self.read(entry.certificateChain, what: "\(what): certificate chain")
            let key = try Self.read(entry.privateKey, what: "\(what): private key")
            let leaf = try LeafCertificate(pem: chain, what: what)
            try Self.checkPair(chain: chain, key: key, what: what)
            let names = entry.names ?? leaf.dnsNames
            entries.append(Entry(chainPEM: chain, keyPEM: key, names: names, subject: leaf.subject))
        }
        self.entries = entries
        self.defaultIndex = set.defaultIndex
        self.matcher = SNINameMatcher(names: entries.map(\.names), defaultIndex: set.defaultIndex)
    }

    private static func read(_ source: QUICTLSConfiguration.PEMSource, what: String) throws(QUICError) -> [UInt8] {
        switch source {
        case .pem(let text):
            return Array(text.utf8)
        case .file(let path):
            guard let data = FileManager.default.contents(atPath: path) else {
                throw .fileError("\(what): cannot read \(path)")
            }
            return Array(data)
        }
    }

    /// GnuTLS checks that the key parses and belongs to the leaf.
    private static func checkPair(chain: [UInt8], key: [UInt8], what: String) throws(QUICError) {
        var cred: gnutls_certificate_credentials_t?
        guard gnutls_certificate_allocate_credentials(&cred) == GNUTLS_E_SUCCESS, let cred else {
            throw .internalError("could not allocate TLS credentials")
        }
        defer { gnutls_certificate_free_credentials(cred) }
        let rv = chain.withDatum { chainDatum in
            key.withDatum { keyDatum in
                gnutls_certificate_set_x509_key_mem2(cred, &chainDatum, &keyDatum, GNUTLS_X509_FMT_PEM, nil, 0)
            }
        }
        if rv < 0 {
            throw .invalidArgument("\(what): certificate chain or private key not usable: \(gnutlsMessage(rv))")
        }
    }
}

/// The first certificate of a PEM chain, read for its names.
private struct LeafCertificate {
    let subject: String
    let dnsNames: [String]

    init(pem: [UInt8], what: String) throws(QUICError) {
        var certificate: gnutls_x509_crt_t?
        guard gnutls_x509_crt_init(&certificate) == GNUTLS_E_SUCCESS, let certificate else {
            throw .internalError("gnutls_x509_crt_init failed")
        }
        defer { gnutls_x509_crt_deinit(certificate) }
        let rv = pem.withDatum { gnutls_x509_crt_import(certificate, &$0, GNUTLS_X509_FMT_PEM) }
        guard rv == GNUTLS_E_SUCCESS else {
            throw .invalidArgument("\(what): no PEM certificate could be read: \(gnutlsMessage(rv))")
        }
        var out = gnutls_datum_t()
        if gnutls_x509_crt_get_dn2(certificate, &out) == GNUTLS_E_SUCCESS, let data = out.data {
            subject = String(decoding: UnsafeBufferPointer(start: data, count: Int(out.size)), as: UTF8.self)
            swift_gnutls_free(data)
        } else {
            subject = "?"
        }
        var names: [String] = []
        var sequence: UInt32 = 0
        while sequence < 1000 {
            var buffer = [CChar](repeating: 0, count: 512)
            var size = buffer.count
            let type = gnutls_x509_crt_get_subject_alt_name(certificate, sequence, &buffer, &size, nil)
            if type < 0 {
                // The end of the list; a name too long for the buffer is skipped.
                if type == GNUTLS_E_SHORT_MEMORY_BUFFER { sequence += 1; continue }
                break
            }
            if type == Int32(GNUTLS_SAN_DNSNAME.rawValue) {
                names.append(String(decoding: buffer.prefix(size).map { UInt8(bitPattern: $0) }, as: UTF8.self))
            }
            sequence += 1
        }
        dnsNames = names
    }
}
