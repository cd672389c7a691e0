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
    init(parsing text: String) throws(ToolError) {
        var text = text
        if let range = text.range(of: "://") {
            let scheme = text[..<range.lowerBound].lowercased()
            guard scheme == "https" else {
                throw ToolError(ToolError.unsupportedProtocol,
                                "protocol \"\(scheme)\" not supported (h3 speaks HTTP/3, which needs https)")
            }
        } else {
            text = "https://" + text
        }
        guard let components = URLComponents(string: text) else {
            throw ToolError(ToolError.malformedURL, "URL rejected: malformed URL '\(text)'")
        }
        try self.init(components: components, original: text)
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
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard host.allSatisfy({ $0.isASCII && !$0.isWhitespace }) else {
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
