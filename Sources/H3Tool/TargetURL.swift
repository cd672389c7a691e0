import Foundation

/// A URL given to `h3`, checked and split into what an HTTP/3 request needs.
struct TargetURL: Sendable, Hashable, CustomStringConvertible {
    /// The host without brackets (an IPv6 literal is bare here).
    let host: String
    let port: Int
    /// Path and query, starting with "/".
    let pathAndQuery: String
    let hasExplicitPort: Bool

    /// `host[:port]` as sent in `:authority` (IPv6 literals in brackets).
    var authority: String {
        let name = host.contains(":") ? "[\(host)]" : host
        return hasExplicitPort ? "\(name):\(port)" : name
    }

    var description: String { "https://\(authority)\(pathAndQuery)" }

    /// The last path segment, for `-O`: never a path (it cannot contain "/").
    var remoteFileName: String {
        let path = pathAndQuery.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        guard !path.hasSuffix("/") else { return "" }
        // As curl: the segment as it appears in the URL, not decoded (a decoded %2F would
        // name a file in another directory).
        let last = path.split(separator: "/").last.map(String.init) ?? ""
        return last == "." || last == ".." || last.contains("\0") ? "" : last
    }

    /// Parses a command-line URL. A URL without a scheme is taken as https (HTTP/3 has no
    /// cleartext form). Throws exit code 3 (malformed) or 1 (unsupported scheme).
    ///
    /// As curl, the URL's form is checked before its scheme: a malformed URL is exit 3 whatever
    /// its scheme (`http://[::1`), and an unsupported scheme is exit 1 only for a well-formed one.
    init(parsing text: String) throws(ToolError) {
        let original = text
        var scheme = "https"
        var rest = Substring(text)
        if let range = text.range(of: "://") {
            scheme = text[..<range.lowerBound].lowercased()
            rest = text[range.upperBound...]
            guard Self.isValidScheme(scheme) else {
                throw ToolError(ToolError.malformedURL, "URL rejected: bad scheme in '\(original)'")
            }
        }
        // curl refuses spaces and control characters anywhere in a URL.
        guard !text.unicodeScalars.contains(where: { $0.value <= 0x20 || $0.value == 0x7F }) else {
            throw ToolError(ToolError.malformedURL, "URL rejected: malformed input (spaces or control characters) in '\(original)'")
        }
        // The form is checked as https whatever the scheme, so that the answer does not depend on it.
        guard let components = URLComponents(string: "https://" + rest) else {
            throw ToolError(ToolError.malformedURL, "URL rejected: malformed URL '\(original)'")
        }
        let parsed = try TargetURL(components: components, original: original)
        guard scheme == "https" else {
            throw ToolError(ToolError.unsupportedProtocol,
                            "protocol \"\(scheme)\" not supported (h3 speaks HTTP/3, which needs https)")
        }
        self = parsed
    }

    /// RFC 3986 section 3.1: a letter, then letters, digits, "+", "-" or ".".
    private static func isValidScheme(_ scheme: String) -> Bool {
        guard let first = scheme.unicodeScalars.first, first.isASCII, first.properties.isAlphabetic else { return false }
        return scheme.unicodeScalars.allSatisfy { $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "+-.".unicodeScalars.contains($0)) }
    }

    /// Whether `host` (brackets removed) is a name curl would accept: letters, digits, "-",
    /// ".", "_" and "~" (and percent-encoded bytes), or an IPv6 literal with an optional zone.
    static func isValidHost(_ host: String, bracketed: Bool) -> Bool {
        if bracketed {
            let (address, zone) = host.firstIndex(of: "%").map { (host[..<$0], host[host.index(after: $0)...]) }
                ?? (Substring(host), Substring(""))
            return address.contains(":") && address.unicodeScalars.allSatisfy { $0.properties.isASCIIHexDigit || $0 == ":" || $0 == "." }
                && zone.unicodeScalars.allSatisfy { $0.isASCII && !$0.properties.isWhitespace }
        }
        return host.unicodeScalars.allSatisfy {
            $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "-._~%".unicodeScalars.contains($0))
        }
    }

    /// The target of a redirect's Location, resolved against this URL.
    func resolving(location: String) throws(ToolError) -> TargetURL {
        guard let base = URL(string: description), let resolved = URL(string: location, relativeTo: base)?.absoluteURL,
              let components = URLComponents(url: resolved, resolvingAgainstBaseURL: true) else {
            throw ToolError(ToolError.malformedURL, "the redirect Location '\(location)' is not a valid URL")
        }
        if let scheme = components.scheme?.lowercased(), scheme != "https" {
            throw ToolError(ToolError.unsupportedProtocol, "redirect to unsupported protocol \"\(scheme)\": \(location)")
        }
        return try TargetURL(components: components, original: location)
    }

    private init(components: URLComponents, original: String) throws(ToolError) {
        guard var host = components.percentEncodedHost, !host.isEmpty else {
            throw ToolError(ToolError.malformedURL, "URL rejected: no host name in '\(original)'")
        }
        let bracketed = host.hasPrefix("[") && host.hasSuffix("]")
        if bracketed { host = String(host.dropFirst().dropLast()) }
        guard Self.isValidHost(host, bracketed: bracketed) else {
            throw ToolError(ToolError.malformedURL, "URL rejected: bad host name in '\(original)'")
        }
        if let port = components.port, !(1...65535).contains(port) {
            throw ToolError(ToolError.malformedURL, "URL rejected: port number out of range in '\(original)'")
        }
        if components.user != nil || components.password != nil {
            throw ToolError(ToolError.malformedURL, "URL rejected: credentials in URLs are not supported")
        }
        self.host = host.lowercased()
        self.port = components.port ?? 443
        self.hasExplicitPort = components.port != nil
        var path = components.percentEncodedPath
        if path.isEmpty { path = "/" }
        if let query = components.percentEncodedQuery { path += "?" + query }
        self.pathAndQuery = path
    }
}
