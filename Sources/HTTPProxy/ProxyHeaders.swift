import Foundation
import HTTPTypes
import QUIC

/// How a proxy rewrites a request's header fields for its backend. I/O-free.
///
/// - Hop-by-hop fields (RFC 9110 section 7.6.1: `Connection` and the fields it names,
///   `Keep-Alive`, `Proxy-Connection`, `TE`, `Transfer-Encoding`, `Upgrade`,
///   `Proxy-Authorization`, `Proxy-Authenticate`) are removed.
/// - `Forwarded` (RFC 7239: `for`, `by`, `proto`, `host`) and `X-Forwarded-For`, `-Proto`,
///   `-Host`, `-Port` are added per ``ForwardedMode``.
/// - The identity header fields (client certificate CN and O) are always removed as the
///   client sent them, and set from the verified client certificate when there is one.
/// - `Host`/`:authority` is kept unless ``preserveHost`` is off.
public struct ProxyHeaders: Sendable, Hashable {
    /// What happens to the forwarding fields a client sent, and whether the proxy adds its own.
    public enum ForwardedMode: String, Sendable, Hashable, CaseIterable {
        /// `Forwarded` and `X-Forwarded-For` get this hop appended to the client's values;
        /// `X-Forwarded-Proto`, `-Host` and `-Port` are set to this hop's. The default.
        case append
        /// The client's forwarding fields are dropped; only this hop's are sent.
        case replace
        /// No forwarding fields are added; the client's pass through unchanged.
        case off
    }

    /// The header names that carry a client certificate's identity (Kubernetes' front-proxy convention by default).
    public struct IdentityFields: Sendable, Hashable {
        /// Carries the subject's common name (the user).
        public var user: HTTPField.Name
        /// Carries each of the subject's organizations (the groups), one field each.
        public var group: HTTPField.Name

        // Valid field names written out, so these cannot fail.
        /// `X-Remote-User`, the default for ``user``.
        public static let defaultUser = HTTPField.Name("x-remote-user")!
        /// `X-Remote-Group`, the default for ``group``.
        public static let defaultGroup = HTTPField.Name("x-remote-group")!

        /// Creates identity field names; the defaults are `X-Remote-User` and `X-Remote-Group`.
        public init(user: HTTPField.Name = defaultUser, group: HTTPField.Name = defaultGroup) {
            self.user = user
            self.group = group
        }
    }

    /// What the proxy knows of one request's client hop.
    public struct Hop: Sendable, Hashable {
        /// The client's address, `ip:port` or `[ipv6]:port`.
        public var clientAddress: String?
        /// The proxy's own address on this hop, same form.
        public var proxyAddress: String?
        /// The scheme the client used (`https` for every transport of ours).
        public var scheme: String
        /// The client certificate's identity, when it presented a verified one.
        public var identity: CertificateIdentity?

        /// Creates a hop description.
        public init(clientAddress: String?, proxyAddress: String?, scheme: String = "https",
                    identity: CertificateIdentity? = nil) {
            self.clientAddress = clientAddress
            self.proxyAddress = proxyAddress
            self.scheme = scheme
            self.identity = identity
        }
    }

    /// How forwarding fields are handled.
    public var forwarded: ForwardedMode
    /// Keep the client's `Host`/`:authority` (the default) instead of the backend's.
    public var preserveHost: Bool
    /// The identity field names, or `nil` to send no identity (client copies are still removed
    /// under the default names).
    public var identityFields: IdentityFields?

    /// Creates rewriting rules.
    public init(forwarded: ForwardedMode = .append, preserveHost: Bool = true,
                identityFields: IdentityFields? = IdentityFields()) {
        self.forwarded = forwarded
        self.preserveHost = preserveHost
        self.identityFields = identityFields
    }

    /// Fields that concern one connection only and never cross a proxy.
    static let hopByHop: Set<String> = ["connection", "keep-alive", "proxy-connection", "te", "transfer-encoding",
                                        "upgrade", "proxy-authorization", "proxy-authenticate"]

    // The forwarding fields (valid names written out, so these cannot fail), made once rather
    // than per request.
    static let forwardedName = HTTPField.Name("forwarded")!
    static let forwardedForName = HTTPField.Name("x-forwarded-for")!
    static let forwardedProtoName = HTTPField.Name("x-forwarded-proto")!
    static let forwardedHostName = HTTPField.Name("x-forwarded-host")!
    static let forwardedPortName = HTTPField.Name("x-forwarded-port")!
    static let forwardingNames: Set<String> = [forwardedName, forwardedForName, forwardedProtoName, forwardedHostName,
                                               forwardedPortName].reduce(into: []) { $0.insert($1.canonicalName) }

    /// The request to send to the backend at `backendAuthority` (`host:port`).
    public func rewrite(_ request: HTTPRequest, hop: Hop, backendAuthority: String) -> HTTPRequest {
        var out = request
        var fields = HTTPFields()
        var named = Self.hopByHop
        for field in request.headerFields where field.name.canonicalName == "connection" {
            for token in field.value.split(separator: ",") {
                named.insert(token.trimmedOfBlanks().lowercased())
            }
        }
        let identity = identityFields ?? IdentityFields()
        var clientForwarded: [String] = [], clientForwardedFor: [String] = []
        for field in request.headerFields {
            let name = field.name.canonicalName
            if named.contains(name) || name == identity.user.canonicalName || name == identity.group.canonicalName { continue }
            if forwardedMode(keeps: name, in: Self.forwardingNames) == false {
                if name == "forwarded" { clientForwarded.append(field.value) }
                if name == "x-forwarded-for" { clientForwardedFor.append(field.value) }
                continue
            }
            fields.append(field)
        }
        let host = request.authority ?? ""
        if forwarded != .off {
            let forElement = hop.clientAddress.map(Self.forwardedNode) ?? "unknown"
            var element = "for=\(forElement)"
            if let by = hop.proxyAddress { element += ";by=\(Self.forwardedNode(by))" }
            element += ";proto=\(hop.scheme)"
            if !host.isEmpty { element += ";host=\(Self.quotedIfNeeded(host))" }
            let forwardedValue = (forwarded == .append ? clientForwarded : []) + [element]
            fields[Self.forwardedName] = forwardedValue.joined(separator: ", ")
            let clientIP = hop.clientAddress.map(Self.address(of:)) ?? "unknown"
            let forValue = (forwarded == .append ? clientForwardedFor : []) + [clientIP]
            fields[Self.forwardedForName] = forValue.joined(separator: ", ")
            fields[Self.forwardedProtoName] = hop.scheme
            if !host.isEmpty {
                fields[Self.forwardedHostName] = host
                fields[Self.forwardedPortName] = Self.port(of: host) ?? (hop.scheme == "https" ? "443" : "80")
            }
        }
        if let identityFields, let id = hop.identity {
            if let user = id.commonName { fields.append(HTTPField(name: identityFields.user, value: user)) }
            for group in id.organizations { fields.append(HTTPField(name: identityFields.group, value: group)) }
        }
        out.headerFields = fields
        if !preserveHost { out.authority = backendAuthority }
        return out
    }

    /// Whether a forwarding field the client sent passes through (`nil`: not a forwarding field).
    private func forwardedMode(keeps name: String, in names: Set<String>) -> Bool? {
        guard names.contains(name) else { return nil }
        return forwarded == .off
    }

    /// Response fields from the backend that must not reach the client (hop-by-hop).
    public static func cleanResponse(_ fields: HTTPFields) -> HTTPFields {
        var named = hopByHop
        for field in fields where field.name.canonicalName == "connection" {
            for token in field.value.split(separator: ",") { named.insert(token.trimmedOfBlanks().lowercased()) }
        }
        var out = HTTPFields()
        for field in fields where !named.contains(field.name.canonicalName) { out.append(field) }
        return out
    }

    /// `ip:port` → the RFC 7239 node: `1.2.3.4` or `"[2001:db8::1]"` (ports are left out).
    static func forwardedNode(_ endpoint: String) -> String {
        let ip = address(of: endpoint)
        return ip.contains(":") ? "\"[\(ip)]\"" : ip
    }

    /// The address part of `ip:port` or `[ipv6]:port` (or of a bare address).
    static func address(of endpoint: String) -> String {
        if endpoint.hasPrefix("["), let close = endpoint.firstIndex(of: "]") {
            return String(endpoint[endpoint.index(after: endpoint.startIndex)..<close])
        }
        let colons = endpoint.filter { $0 == ":" }.count
        if colons == 1, let colon = endpoint.lastIndex(of: ":") { return String(endpoint[..<colon]) }
        return endpoint
    }

    /// The port of an authority `host:port` or `[v6]:port`, if it has one.
    static func port(of authority: String) -> String? {
        guard let colon = authority.lastIndex(of: ":"), !authority[colon...].contains("]") else { return nil }
        let port = authority[authority.index(after: colon)...]
        return !port.isEmpty && port.allSatisfy(\.isNumber) ? String(port) : nil
    }

    /// A `Forwarded` value as a token when it is one, else as a quoted string.
    static func quotedIfNeeded(_ value: String) -> String {
        let token = value.allSatisfy { $0.isLetter || $0.isNumber || "-._~!#$&'*+^`|".contains($0) }
        return token ? value : "\"" + value.replacingOccurrences(of: "\\", with: "\\\\")
            .replacingOccurrences(of: "\"", with: "\\\"") + "\""
    }
}

extension StringProtocol {
    fileprivate func trimmedOfBlanks() -> String {
        let set = " \t"
        var slice = Substring(self)
        while let first = slice.first, set.contains(first) { slice = slice.dropFirst() }
        while let last = slice.last, set.contains(last) { slice = slice.dropLast() }
        return String(slice)
    }
}
