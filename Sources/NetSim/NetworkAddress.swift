import Glibc

/// A numeric IPv4 or IPv6 address with a UDP port, such as `127.0.0.1:4433` or `[::1]:4433`.
///
/// Host names are not resolved: the simulator only deals in literal addresses.
public struct NetworkAddress: Sendable, Hashable, CustomStringConvertible {
    /// The numeric host, without brackets (`127.0.0.1`, `::1`).
    public let host: String
    /// The UDP port; `0` asks for any free port when binding.
    public let port: UInt16
    /// Whether the host is an IPv6 address.
    public let isIPv6: Bool

    /// Creates an address from a numeric host and a port.
    /// - Throws: ``NetSimError`` (`.invalidAddress`) when `host` is not a numeric IPv4 or IPv6 address.
    public init(host: String, port: UInt16) throws {
        var host = host
        if host.hasPrefix("["), host.hasSuffix("]") {
            host = String(host.dropFirst().dropLast())
        }
        var v4 = in_addr()
        var v6 = in6_addr()
        if inet_pton(AF_INET, host, &v4) == 1 {
            isIPv6 = false
        } else if inet_pton(AF_INET6, host, &v6) == 1 {
            isIPv6 = true
        } else {
            throw NetSimError(.invalidAddress, "'\(host)' is not a numeric IPv4 or IPv6 address")
        }
        self.host = host
        self.port = port
    }

    /// Parses `HOST:PORT`, with IPv6 hosts in brackets (`[::1]:4433`).
    /// - Throws: ``NetSimError`` (`.invalidAddress`) when the text is not of that form.
    public init(parsing text: String) throws {
        let hostPart: Substring
        let portPart: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"),
                  text[text.index(after: close)...].hasPrefix(":") else {
                throw NetSimError(.invalidAddress, "'\(text)' is not of the form [IPV6]:PORT")
            }
            hostPart = text[text.index(after: text.startIndex)..<close]
            portPart = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":"),
                  !text[..<colon].contains(":") else {
                throw NetSimError(.invalidAddress,
                                  "'\(text)' is not of the form HOST:PORT (IPv6 hosts go in brackets)")
            }
            hostPart = text[..<colon]
            portPart = text[text.index(after: colon)...]
        }
        guard let port = UInt16(portPart) else {
            throw NetSimError(.invalidAddress, "'\(portPart)' in '\(text)' is not a port number (0-65535)")
        }
        try self.init(host: String(hostPart), port: port)
    }

    /// `HOST:PORT`, with IPv6 hosts in brackets.
    public var description: String {
        isIPv6 ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    /// The same host with another port.
    public func withPort(_ port: UInt16) -> NetworkAddress {
        // The host was validated when self was made.
        (try? NetworkAddress(host: host, port: port)) ?? self
    }
}

/// A `sockaddr_in` or `sockaddr_in6` in a `sockaddr_storage`, as the socket calls want it.
struct SocketAddress {
    var storage = sockaddr_storage()
    var length: socklen_t = 0

    init() {}

    init(_ address: NetworkAddress) {
        if address.isIPv6 {
            var sin6 = sockaddr_in6()
            sin6.sin6_family = sa_family_t(AF_INET6)
            sin6.sin6_port = address.port.bigEndian
            _ = inet_pton(AF_INET6, address.host, &sin6.sin6_addr)
            withUnsafeMutableBytes(of: &storage) { raw in
                raw.storeBytes(of: sin6, as: sockaddr_in6.self)
            }
            length = socklen_t(MemoryLayout<sockaddr_in6>.size)
        } else {
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_port = address.port.bigEndian
            _ = inet_pton(AF_INET, address.host, &sin.sin_addr)
            withUnsafeMutableBytes(of: &storage) { raw in
                raw.storeBytes(of: sin, as: sockaddr_in.self)
            }
            length = socklen_t(MemoryLayout<sockaddr_in>.size)
        }
    }

    var family: Int32 { Int32(storage.ss_family) }
    var isIPv6: Bool { family == AF_INET6 }

    /// The port in host byte order.
    var port: UInt16 {
        withUnsafeBytes(of: storage) { raw in
            // sin_port and sin6_port are both at offset 2.
            UInt16(bigEndian: raw.loadUnaligned(fromByteOffset: 2, as: UInt16.self))
        }
    }

    /// The raw address bytes: 4 for IPv4, 16 for IPv6.
    func withAddressBytes<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R {
        withUnsafeBytes(of: storage) { raw in
            if isIPv6 {
                return body(UnsafeRawBufferPointer(rebasing: raw[8..<24]))
            }
            return body(UnsafeRawBufferPointer(rebasing: raw[4..<8]))
        }
    }

    /// Same family, address and port (ignores padding, flow info and scope).
    func sameEndpoint(as other: SocketAddress) -> Bool {
        guard family == other.family, port == other.port else { return false }
        return withAddressBytes { mine in
            other.withAddressBytes { theirs in
                mine.elementsEqual(theirs)
            }
        }
    }

    var networkAddress: NetworkAddress? {
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        let ok: Bool = withUnsafeBytes(of: storage) { raw in
            let offset = isIPv6 ? 8 : 4
            guard let base = raw.baseAddress else { return false }
            return inet_ntop(family, base + offset, &text, socklen_t(text.count)) != nil
        }
        guard ok else { return nil }
        let host = String(decoding: text.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) },
                          as: UTF8.self)
        return try? NetworkAddress(host: host, port: port)
    }
}
