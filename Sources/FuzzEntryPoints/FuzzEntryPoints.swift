import H3Tool
import HTTPAPI
import QUIC

/// The per-input functions behind the libFuzzer targets in `Fuzz/`, shared with the regression
/// replay in `Tests/FuzzRegressionTests`: each takes one input's bytes, feeds them to one input
/// surface, and says what became of them. Bad input must come back as ``FuzzOutcome/rejected(_:)``
/// (a clear error), never as a crash; ``FuzzOutcome/invariantViolated(_:)`` reports a bug
/// that did not crash (for instance a value that does not survive its own round trip), which
/// the fuzz executables turn into a crash and the tests into a failure.
///
/// This library exists for `Fuzz/`; applications have no use for it.
public enum FuzzEntryPoints {
    /// The targets by name (the names of the fuzz executables and of the folders under
    /// `Fuzz/Corpus/` and `Fuzz/Regressions/`), for the inputs that need no running endpoint.
    public static let targets: [String: @Sendable ([UInt8]) -> FuzzOutcome] = [
        "altsvc-header": altSvcHeader,
        "altsvc-cache-file": altSvcCacheFile,
        "session-cache-file": sessionCacheFile,
        "h3-arguments": h3Arguments,
        "h3-values": h3Values,
        "file-server-request": fileServerRequest,
    ]

    /// An `Alt-Svc` response header value from the network: parsed, fed to a cache, and (when
    /// accepted) printed back and parsed again, which must give the same alternatives.
    public static func altSvcHeader(_ input: [UInt8]) -> FuzzOutcome {
        let text = String(decoding: input, as: UTF8.self)
        let field: AltSvcField
        do {
            field = try AltSvcField.parse(text)
        } catch {
            return .rejected(error.description)
        }
        var cache = AltSvcCache(protocols: nil)
        let origin = AltSvcOrigin(host: "example.com", port: 443)
        cache.update(origin: origin, with: field, now: 1_000_000)
        _ = cache.alternatives(for: origin, now: 1_000_001)
        guard case .alternatives(let alternatives) = field else { return .accepted }
        let printed = alternatives.map(\.description).joined(separator: ", ")
        do {
            let reparsed = try AltSvcField.parse(printed)
            guard reparsed == field else {
                return .invariantViolated("Alt-Svc \(printed) parses to \(reparsed), not \(field)")
            }
        } catch {
            return .invariantViolated("Alt-Svc printed as \(printed) is refused: \(error)")
        }
        return .accepted
    }

    /// An Alt-Svc cache file (curl's format) read from disk.
    public static func altSvcCacheFile(_ input: [UInt8]) -> FuzzOutcome {
        var cache = AltSvcCache(protocols: nil)
        do {
            try AltSvcCacheFile.load(contentsOf: input, path: "fuzz-input", into: &cache, now: 1_000_000)
        } catch {
            return .rejected(error.description)
        }
        _ = cache.allEntries(now: 1_000_000)
        return .accepted
    }

    /// A QUIC session cache file (session tickets and address tokens) read from disk; each
    /// ticket loaded then goes where a resuming client sends it (GnuTLS, ngtcp2), offline.
    public static func sessionCacheFile(_ input: [UInt8]) -> FuzzOutcome {
        let cache: QUICSessionCache
        do {
            cache = try QUICSessionCache(contentsOf: input, path: "fuzz-input", capacity: 16)
        } catch {
            return .rejected("\(error)")
        }
        guard cache.count <= 16, cache.addressTokenCount <= 16 else {
            return .invariantViolated("a cache of capacity 16 loaded \(cache.count) tickets, \(cache.addressTokenCount) tokens")
        }
        // What a resuming client does with each ticket: GnuTLS and ngtcp2 parse its bytes.
        do {
            _ = try cache.probeTicketsOffline()
        } catch {
            return .invariantViolated("the tickets could not be probed: \(error)")
        }
        return .accepted
    }

    /// `h3` command-line arguments: the input split on NUL bytes into argv (without the program
    /// name), parsed and validated but never run.
    public static func h3Arguments(_ input: [UInt8]) -> FuzzOutcome {
        let outcome = H3ToolFuzzing.parseCommandLine(splitOnNUL(input))
        if outcome.accepted { return .accepted }
        guard !outcome.message.isEmpty else { return .invariantViolated("a refused command line without a message") }
        return .rejected(outcome.message)
    }

    /// The values `h3` parses itself (the input split on NUL bytes): each through the URL,
    /// `--resolve`, `-w` template, Range, If-None-Match, If-Range and HTTP-date parsers. Fast,
    /// unlike ``h3Arguments(_:)``, whose time goes to swift-argument-parser.
    public static func h3Values(_ input: [UInt8]) -> FuzzOutcome {
        _ = H3ToolFuzzing.parseValues(splitOnNUL(input))
        return .accepted
    }

    /// A request to `h3 serve`'s file server: the target, then after a NUL byte a Range header.
    /// The path must not resolve outside the served directory (`..`, encoded dots, links), a
    /// redirect must stay on the server, and a satisfiable range must lie inside the file.
    public static func fileServerRequest(_ input: [UInt8]) -> FuzzOutcome {
        let parts = splitOnNUL(input)
        let target = parts.first ?? ""
        if let broken = H3ToolFuzzing.checkFileServerRequest(target: target, range: parts.count > 1 ? parts[1] : nil) {
            return .invariantViolated(broken)
        }
        return .accepted
    }

    private static func splitOnNUL(_ input: [UInt8]) -> [String] {
        input.split(separator: 0, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
    }
}

/// What one fuzz input came to.
public enum FuzzOutcome: Sendable, Hashable {
    /// The input was accepted.
    case accepted
    /// The input was refused with this (clear) error message.
    case rejected(String)
    /// A bug that did not crash: an invariant the surface promises was broken.
    case invariantViolated(String)
}
