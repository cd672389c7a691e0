/// Chooses which certificate entry answers a TLS server name (SNI). I/O-free.
///
/// Names are compared without regard to ASCII case and without a trailing dot. An exact name
/// wins over a wildcard; a wildcard `*.example.com` stands for exactly one leftmost label
/// (`a.example.com`, not `example.com` nor `a.b.example.com`, as RFC 6125 section 6.4.3 reads it
/// for certificates). When two entries claim the same name, the earlier one wins. A client
/// that sends no name, or a name no entry claims, gets the default entry; without a default,
/// there is no answer (the handshake fails with `unrecognized_name`).
package struct SNINameMatcher: Sendable, Hashable {
    private var exact: [String: Int] = [:]
    private var wildcard: [String: Int] = [:]
    /// The entry for an absent or unknown name.
    package let defaultIndex: Int?

    /// - Parameters:
    ///   - names: for each entry, the names it serves (`host.example` or `*.example`).
    ///   - defaultIndex: the entry for an absent or unknown name, or `nil` to refuse those.
    package init(names: [[String]], defaultIndex: Int?) {
        self.defaultIndex = defaultIndex
        for (index, list) in names.enumerated() {
            for name in list {
                let normalized = Self.normalize(name)
                if normalized.hasPrefix("*.") {
                    let parent = String(normalized.dropFirst(2))
                    guard !parent.isEmpty, !parent.contains("*") else { continue }
                    if wildcard[parent] == nil { wildcard[parent] = index }
                } else if !normalized.isEmpty, !normalized.contains("*") {
                    if exact[normalized] == nil { exact[normalized] = index }
                }
            }
        }
    }

    /// The entry for `serverName` (as the client sent it), or `nil` when none serves it and there is no default.
    package func entryIndex(for serverName: String?) -> Int? {
        guard let serverName else { return defaultIndex }
        let name = Self.normalize(serverName)
        if let index = exact[name] { return index }
        if let dot = name.firstIndex(of: "."), dot != name.startIndex {
            let parent = String(name[name.index(after: dot)...])
            if !parent.isEmpty, let index = wildcard[parent] { return index }
        }
        return defaultIndex
    }

    /// Whether `serverName` is served by an entry's own names (not only by the default).
    package func claims(_ serverName: String) -> Bool {
        let name = Self.normalize(serverName)
        if exact[name] != nil { return true }
        guard let dot = name.firstIndex(of: "."), dot != name.startIndex else { return false }
        return wildcard[String(name[name.index(after: dot)...])] != nil
    }

    /// Lower-cases ASCII letters and drops one trailing dot.
    static func normalize(_ name: String) -> String {
        var bytes = Array(name.utf8)
        if bytes.last == UInt8(ascii: ".") { bytes.removeLast() }
        for i in bytes.indices where (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(bytes[i]) {
            bytes[i] += 32
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
