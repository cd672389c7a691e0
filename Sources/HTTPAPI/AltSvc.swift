/// One alternative service from an `Alt-Svc` header field (RFC 7838, section 3): a protocol
/// the same origin is also reachable over, at another (or the same) host and port.
public struct AltService: Sendable, Hashable, CustomStringConvertible {
    /// The ALPN protocol id, percent-decoded (`h3`, `h2`, ...).
    public var protocolID: String
    /// The alternative's host; empty means the origin's own host.
    public var host: String
    /// The alternative's port.
    public var port: Int
    /// How long the alternative may be used, in seconds from when it was received (`ma`,
    /// 24 hours when absent).
    public var maxAge: Int64
    /// Whether the alternative survives network changes (`persist=1`).
    public var persist: Bool

    /// Creates an alternative.
    public init(protocolID: String, host: String, port: Int, maxAge: Int64 = AltService.defaultMaxAge,
                persist: Bool = false) {
        self.protocolID = protocolID
        self.host = host
        self.port = port
        self.maxAge = maxAge
        self.persist = persist
    }

    /// The freshness lifetime when `ma` is absent (RFC 7838, section 3.1): 24 hours.
    public static let defaultMaxAge: Int64 = 86_400

    /// The alternative as it appears in a header field, e.g. `h3=":443"; ma=3600`.
    public var description: String {
        let authority = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        var text = "\(AltSvcField.percentEncode(protocolID))=\"\(authority)\""
        if maxAge != Self.defaultMaxAge { text += "; ma=\(maxAge)" }
        if persist { text += "; persist=1" }
        return text
    }
}

/// Why an `Alt-Svc` field value was refused.
public struct AltSvcParseError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What is wrong, in a sentence.
    public var reason: String
    /// The byte offset in the field value where parsing stopped.
    public var offset: Int

    /// Creates an error.
    public init(_ reason: String, at offset: Int) {
        self.reason = reason
        self.offset = offset
    }

    public var description: String { "malformed Alt-Svc at byte \(offset): \(reason)" }
}

/// A parsed `Alt-Svc` header field value (RFC 7838, section 3).
public enum AltSvcField: Sendable, Hashable {
    /// `clear`: forget every alternative of the origin.
    case clear
    /// One or more alternatives, in the server's order of preference.
    case alternatives([AltService])

    /// The longest field value accepted; longer ones are refused.
    public static let maxLength = 16 << 10
    /// The most alternatives accepted in one field value.
    public static let maxAlternatives = 32

    /// Parses a field value. Several field lines are combined with `", "` first (RFC 9110,
    /// section 5.3). Unknown parameters are ignored; anything that breaks the grammar refuses
    /// the whole value, so a half-understood header never changes what the client does.
    public static func parse(_ value: String) throws(AltSvcParseError) -> AltSvcField {
        let bytes = Array(value.utf8)
        guard bytes.count <= maxLength else {
            throw AltSvcParseError("longer than \(maxLength) bytes", at: maxLength)
        }
        var parser = AltSvcParser(bytes: bytes)
        return try parser.parseField()
    }

    /// Percent-encodes an ALPN id for the `protocol-id` token (RFC 7838, section 3).
    static func percentEncode(_ id: String) -> String {
        var out = ""
        for byte in id.utf8 {
            if AltSvcParser.isTokenChar(byte) && byte != UInt8(ascii: "%") {
                out.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                let hex = Array("0123456789ABCDEF".utf8)
                out += "%" + String(decoding: [hex[Int(byte >> 4)], hex[Int(byte & 0xF)]], as: UTF8.self)
            }
        }
        return out
    }
}

/// A recursive-descent parser over the bytes of one field value.
struct AltSvcParser {
    let bytes: [UInt8]
    var index = 0

    init(bytes: [UInt8]) { self.bytes = bytes }

    mutating func parseField() throws(AltSvcParseError) -> AltSvcField {
        skipWhitespace()
        // `clear` is case-sensitive and must stand alone.
        let clear = Array("clear".utf8)
        if bytes[index...].starts(with: clear),
           bytes[(index + clear.count)...].allSatisfy({ $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") }) {
            return .clear
        }
        var alternatives: [AltService] = []
        var sawElement = false
        while true {
            skipWhitespace()
            if index == bytes.count { break }
            if bytes[index] == UInt8(ascii: ",") {  // empty list elements are allowed (RFC 9110, 5.6.1)
                index += 1
                continue
            }
            let alternative = try parseAlternative()
            sawElement = true
            guard alternatives.count < AltSvcField.maxAlternatives else {
                throw AltSvcParseError("more than \(AltSvcField.maxAlternatives) alternatives", at: index)
            }
            alternatives.append(alternative)
            skipWhitespace()
            if index == bytes.count { break }
            guard bytes[index] == UInt8(ascii: ",") else {
                throw AltSvcParseError("expected ',' or ';' after an alternative", at: index)
            }
            index += 1
        }
        guard sawElement else { throw AltSvcParseError("no alternative", at: index) }
        return .alternatives(alternatives)
    }

    private mutating func parseAlternative() throws(AltSvcParseError) -> AltService {
        let start = index
        let rawID = token()
        guard !rawID.isEmpty else { throw AltSvcParseError("expected a protocol id", at: start) }
        let protocolID = try percentDecode(rawID, at: start)
        guard index < bytes.count, bytes[index] == UInt8(ascii: "=") else {
            throw AltSvcParseError("expected '=' after the protocol id", at: index)
        }
        index += 1
        let authorityStart = index
        guard let authority = try quotedString() else {
            throw AltSvcParseError("the alt-authority must be a quoted string", at: authorityStart)
        }
        let (host, port) = try splitAuthority(authority, at: authorityStart)
        var alternative = AltService(protocolID: protocolID, host: host, port: port)
        var sawMaxAge = false, sawPersist = false
        while true {
            let save = index
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: ";") else {
                index = save
                break
            }
            index += 1
            skipWhitespace()
            let nameStart = index
            let name = token()
            guard !name.isEmpty else { throw AltSvcParseError("expected a parameter name", at: nameStart) }
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: "=") else {
                throw AltSvcParseError("expected '=' after parameter \(String(decoding: name, as: UTF8.self))", at: index)
            }
            index += 1
            skipWhitespace()
            let valueStart = index
            let value: [UInt8]
            if let quoted = try quotedString() {
                value = quoted
            } else {
                value = token()
                guard !value.isEmpty else { throw AltSvcParseError("expected a parameter value", at: valueStart) }
            }
            switch String(decoding: name, as: UTF8.self).lowercased() {
            case "ma" where !sawMaxAge:
                sawMaxAge = true
                alternative.maxAge = try deltaSeconds(value, at: valueStart)
            case "persist" where !sawPersist:
                sawPersist = true
                // Only the value 1 means anything; others are ignored (RFC 7838, 3.1).
                alternative.persist = value == Array("1".utf8)
            default:
                break  // unknown (or repeated) parameters are ignored
            }
        }
        return alternative
    }

    /// `delta-seconds`; values too large for the cache saturate (RFC 9111, 1.2.2).
    private func deltaSeconds(_ value: [UInt8], at offset: Int) throws(AltSvcParseError) -> Int64 {
        guard !value.isEmpty else { throw AltSvcParseError("empty ma", at: offset) }
        var result: Int64 = 0
        for byte in value {
            guard byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") else {
                throw AltSvcParseError("ma is not a number of seconds", at: offset)
            }
            result = min(Int64(Int32.max), result * 10 + Int64(byte - UInt8(ascii: "0")))
        }
        return result
    }

    /// `[uri-host] ":" port`, with IPv6 literals in brackets.
    private func splitAuthority(_ authority: [UInt8], at offset: Int) throws(AltSvcParseError) -> (String, Int) {
        guard let colon = authority.lastIndex(of: UInt8(ascii: ":")) else {
            throw AltSvcParseError("the alt-authority has no port", at: offset)
        }
        var host = Array(authority[..<colon])
        let portBytes = authority[(colon + 1)...]
        guard !portBytes.isEmpty, portBytes.count <= 5,
              portBytes.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
              let port = Int(String(decoding: portBytes, as: UTF8.self)), (1...65535).contains(port) else {
            throw AltSvcParseError("the alt-authority's port is not 1-65535", at: offset)
        }
        if host.first == UInt8(ascii: "[") {
            guard host.count > 2, host.last == UInt8(ascii: "]") else {
                throw AltSvcParseError("unclosed IPv6 literal in the alt-authority", at: offset)
            }
            host = Array(host.dropFirst().dropLast())
            guard host.allSatisfy({ Self.isHexDigit($0) || $0 == UInt8(ascii: ":") || $0 == UInt8(ascii: ".") }) else {
                throw AltSvcParseError("bad IPv6 literal in the alt-authority", at: offset)
            }
        } else {
            // reg-name or IPv4: unreserved, sub-delims and pct-encoded characters; no ':' or brackets.
            guard host.allSatisfy({ Self.isHostChar($0) }) else {
                throw AltSvcParseError("bad host in the alt-authority", at: offset)
            }
        }
        return (String(decoding: host, as: UTF8.self), port)
    }

    private func percentDecode(_ raw: [UInt8], at offset: Int) throws(AltSvcParseError) -> String {
        var out: [UInt8] = []
        var i = 0
        while i < raw.count {
            if raw[i] == UInt8(ascii: "%") {
                guard i + 2 < raw.count, let high = Self.hexValue(raw[i + 1]), let low = Self.hexValue(raw[i + 2]) else {
                    throw AltSvcParseError("bad percent-encoding in the protocol id", at: offset + i)
                }
                out.append(high << 4 | low)
                i += 3
            } else {
                out.append(raw[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// A quoted string's unescaped content, or nil when the next byte is not a quote.
    private mutating func quotedString() throws(AltSvcParseError) -> [UInt8]? {
        guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { return nil }
        let start = index
        index += 1
        var out: [UInt8] = []
        while index < bytes.count {
            let byte = bytes[index]
            index += 1
            switch byte {
            case UInt8(ascii: "\""):
                return out
            case UInt8(ascii: "\\"):
                guard index < bytes.count, Self.isQuotedPairChar(bytes[index]) else {
                    throw AltSvcParseError("bad escape in a quoted string", at: index)
                }
                out.append(bytes[index])
                index += 1
            default:
                guard Self.isQuotedTextChar(byte) else {
                    throw AltSvcParseError("control character in a quoted string", at: index - 1)
                }
                out.append(byte)
            }
        }
        throw AltSvcParseError("unterminated quoted string", at: start)
    }

    private mutating func token() -> [UInt8] {
        let start = index
        while index < bytes.count, Self.isTokenChar(bytes[index]) { index += 1 }
        return Array(bytes[start..<index])
    }

    private mutating func skipWhitespace() {
        while index < bytes.count, bytes[index] == UInt8(ascii: " ") || bytes[index] == UInt8(ascii: "\t") { index += 1 }
    }

    /// `tchar` (RFC 9110, 5.6.2).
    static func isTokenChar(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        default:
            return Array("!#$%&'*+-.^_`|~".utf8).contains(byte)
        }
    }

    private static func isQuotedTextChar(_ byte: UInt8) -> Bool {
        byte == 0x09 || byte == 0x20 || byte == 0x21 || (0x23...0x5B).contains(byte) || (0x5D...0x7E).contains(byte) || byte >= 0x80
    }

    private static func isQuotedPairChar(_ byte: UInt8) -> Bool {
        byte == 0x09 || (0x20...0x7E).contains(byte) || byte >= 0x80
    }

    private static func isHostChar(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        default:
            return Array("-._~%!$&'()*+,;=".utf8).contains(byte)
        }
    }

    private static func isHexDigit(_ byte: UInt8) -> Bool { hexValue(byte) != nil }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}
