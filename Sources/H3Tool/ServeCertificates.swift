import Foundation
import QUIC

/// Where `h3 serve` takes its certificates from: `--cert`/`--key` pairs (repeatable), a
/// directory of pairs (`--cert-dir`), or the generated local certificate. Read again on SIGHUP.
struct ServeCertificates: Sendable {
    /// `--cert`/`--key` pairs, in order.
    var pairs: [(certificate: String, key: String)]
    /// `--cert-dir`: every `NAME.pem` or `NAME.crt` with a `NAME.key` beside it, by file name.
    var directory: String?
    /// `--strict-sni`: no default certificate; unknown or absent names get `unrecognized_name`.
    var strict: Bool

    /// The pairs to serve now, each with the names of its certificate (SANs).
    func files() throws(ToolError) -> [(certificate: String, key: String)] {
        guard let directory else { return pairs }
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: directory).sorted()
        } catch {
            throw ToolError(ToolError.readError, "cannot list the certificate directory \(directory): \(error.localizedDescription)")
        }
        var found: [(certificate: String, key: String)] = []
        for name in names where name.hasSuffix(".pem") || name.hasSuffix(".crt") {
            let stem = String(name.dropLast(4))
            let key = directory + "/" + stem + ".key"
            if FileManager.default.fileExists(atPath: key) {
                found.append((directory + "/" + name, key))
            }
        }
        if found.isEmpty {
            throw ToolError(ToolError.readError, "no certificate pairs (NAME.pem or NAME.crt with NAME.key) in \(directory)")
        }
        return found
    }

    /// Reads every file: the set to serve. The first pair also answers unknown and absent
    /// names unless `strict`.
    func load() throws(ToolError) -> TLSCertificateSet {
        let files = try files()
        for file in files.flatMap({ [$0.certificate, $0.key] }) where !FileManager.default.isReadableFile(atPath: file) {
            throw ToolError(ToolError.readError, "cannot read '\(file)'")
        }
        // The PEM text is read here, once: a file that changes between this read and the TLS
        // contexts being built cannot mix two versions.
        var entries: [TLSCertificateSet.Entry] = []
        for file in files {
            guard let chain = try? String(contentsOfFile: file.certificate, encoding: .utf8),
                  let key = try? String(contentsOfFile: file.key, encoding: .utf8) else {
                throw ToolError(ToolError.readError, "cannot read '\(file.certificate)' or '\(file.key)' as text")
            }
            entries.append(.init(certificateChain: .pem(chain), privateKey: .pem(key)))
        }
        return TLSCertificateSet(entries: entries, defaultIndex: strict ? nil : 0)
    }

    /// An error of a certificate set, with the file each entry it names came from
    /// ("certificate entry 2" becomes "certificate entry 2 (b.pem, b.key)").
    func explain(_ error: any Error) -> String {
        var text = "\(error)"
        guard let files = try? files() else { return text }
        for (index, file) in files.enumerated().reversed() {
            text = text.replacingOccurrences(of: "certificate entry \(index + 1):",
                                             with: "certificate entry \(index + 1) (\(file.certificate), \(file.key)):")
        }
        return text
    }

    /// A line per entry for the log: file, names, fingerprint.
    func describe(_ store: TLSCertificateStore) -> [String] {
        let files = (try? self.files()) ?? []
        let set = store.certificateSet
        return zip(set.entries.indices, store.servedNames).map { index, names in
            let file = index < files.count ? files[index].certificate : "entry \(index + 1)"
            var line = "certificate \(file) for \(names.isEmpty ? "(no DNS names)" : names.joined(separator: ", "))"
            if case .pem(let pem) = set.entries[index].certificateChain,
               let facts = try? CertificateGenerator.inspect(certificatePEM: pem) {
                line += ", SHA-256 \(facts.sha256Fingerprint)"
            }
            if index == set.defaultIndex { line += " (default)" }
            return line
        }
    }
}
