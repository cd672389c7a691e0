internal import CGnuTLS
import Foundation
import NIOConcurrencyHelpers

/// What a client keeps from a connection to resume the next one: the TLS session ticket and
/// the server's transport parameters (needed to send 0-RTT data).
public struct QUICSessionTicket: Sendable, Hashable {
    /// GnuTLS session data (the ticket and resumption secret). Secret: store it like a key.
    public var tlsSession: [UInt8]
    /// The server's transport parameters, encoded as in its EncryptedExtensions.
    public var transportParameters: [UInt8]
    /// When the ticket was received (seconds since 1970).
    public var received: Int

    /// Creates a ticket record.
    public init(tlsSession: [UInt8], transportParameters: [UInt8], received: Int) {
        self.tlsSession = tlsSession
        self.transportParameters = transportParameters
        self.received = received
    }
}

/// A client-side store of session tickets, keyed by server (name and port): pass one in
/// ``QUICConfiguration/sessionCache`` and later connections to the same server resume their
/// TLS session (an abbreviated handshake with no certificate).
///
/// Bounded: at most ``capacity`` servers, least recently stored dropped first; tickets older
/// than ``lifetime`` are not used (TLS 1.3 caps ticket lifetime at 7 days). The cache can be
/// saved to and loaded from a file (``save(to:)``, ``init(contentsOf:capacity:lifetime:)``),
/// which is how `h3 --session-file` keeps tickets between runs.
///
/// The cache also keeps each server's latest address-validation token (NEW_TOKEN, RFC 9000
/// section 8.1.3): the next connection puts it in its first Initial, so a server that
/// validates addresses lets it in without a Retry. A token is used once, then dropped.
public final class QUICSessionCache: Sendable, Hashable {
    /// How many servers' tickets are kept.
    public let capacity: Int
    /// How long a ticket is used after it arrived.
    public let lifetime: Duration
    let entries = NIOLockedValueBox<[(key: String, ticket: QUICSessionTicket)]>([])
    private let tokens = NIOLockedValueBox<[(key: String, token: [UInt8], received: Int)]>([])

    /// Creates an empty cache.
    public init(capacity: Int = 256, lifetime: Duration = .seconds(86_400)) {
        self.capacity = max(1, capacity)
        self.lifetime = lifetime
    }

    /// Loads a cache saved with ``save(to:)``. A missing file gives an empty cache; a damaged
    /// one throws ``QUICError/fileError(_:)``.
    public convenience init(contentsOf path: String, capacity: Int = 256, lifetime: Duration = .seconds(86_400)) throws(QUICError) {
        self.init(capacity: capacity, lifetime: lifetime)
        guard FileManager.default.fileExists(atPath: path) else { return }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw .fileError("cannot read the session file \(path)")
        }
        try load(contentsOf: Array(data), path: path)
    }

    /// Creates a cache from the bytes of a file written by ``save(to:)``; `path` only names the
    /// file in errors. The fuzz targets and their regression replay call this directly.
    package convenience init(contentsOf bytes: [UInt8], path: String, capacity: Int = 256,
                             lifetime: Duration = .seconds(86_400)) throws(QUICError) {
        self.init(capacity: capacity, lifetime: lifetime)
        try load(contentsOf: bytes, path: path)
    }

    /// Replaces the entries with those in `bytes`, all or nothing.
    private func load(contentsOf bytes: [UInt8], path: String) throws(QUICError) {
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw .fileError("cannot read the session file \(path)")
        }
        var loaded: [(String, QUICSessionTicket)] = []
        var loadedTokens: [(key: String, token: [UInt8], received: Int)] = []
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            let fields = line.split(separator: " ")
            if fields.first == "@token" {
                guard fields.count == 4, let key = String(fields[1]).removingPercentEncoding, let received = Int(fields[2]),
                      let token = Data(base64Encoded: String(fields[3])), !token.isEmpty else {
                    throw .fileError("the session file \(path) is damaged")
                }
                loadedTokens.append((key, Array(token), received))
                continue
            }
            // A ticket line from before the checksum: skipped (the next connection is a full handshake).
            if fields.count == 4 { continue }
            // The checksum guards GnuTLS: it trusts the length fields inside a session it is
            // handed, and a damaged one made it allocate 51 GB and crash (found by Fuzz/).
            guard fields.count == 5, Self.checksum(fields[0..<4].joined(separator: " ")) == fields[4],
                  let received = Int(fields[1]),
                  let session = Data(base64Encoded: String(fields[2])), let parameters = fields[3] == "=" ? Data() : Data(base64Encoded: String(fields[3])),
                  let key = String(fields[0]).removingPercentEncoding else {
                throw .fileError("the session file \(path) is damaged")
            }
            loaded.append((key, QUICSessionTicket(tlsSession: Array(session), transportParameters: Array(parameters),
                                                  received: received)))
        }
        entries.withLockedValue { $0 = Array(loaded.suffix(self.capacity)).map { (key: $0.0, ticket: $0.1) } }
        tokens.withLockedValue { $0 = Array(loadedTokens.suffix(self.capacity)) }
    }

    /// The SHA-256 of a ticket line's fields, as unpadded hex: a damaged line does not match.
    static func checksum(_ fields: String) -> String {
        var digest = [UInt8](repeating: 0, count: 32)
        var bytes = Array(fields.utf8)
        let rv = bytes.withUnsafeMutableBytes { raw in
            digest.withUnsafeMutableBytes { out in
                gnutls_hash_fast(GNUTLS_DIG_SHA256, raw.baseAddress, raw.count, out.baseAddress)
            }
        }
        guard rv == 0 else { return "" }
        let hex = Array("0123456789abcdef".utf8)
        return String(decoding: digest.flatMap { [hex[Int($0 >> 4)], hex[Int($0 & 0xF)]] }, as: UTF8.self)
    }

    /// Writes the cache to a file readable only by its owner.
    public func save(to path: String) throws(QUICError) {
        var text = "# swift-h3 QUIC session tickets: server, received, TLS session, transport parameters, SHA-256 of those\n"
        for (key, ticket) in entries.withLockedValue({ $0 }) {
            let name = key.addingPercentEncoding(withAllowedCharacters: .urlHostAllowed) ?? key
            // "=" for no parameters keeps the field (an empty one would vanish when split).
            let parameters = ticket.transportParameters.isEmpty ? "=" : Data(ticket.transportParameters).base64EncodedString()
            let fields = "\(name) \(ticket.received) \(Data(ticket.tlsSession).base64EncodedString()) \(parameters)"
            text += "\(fields) \(Self.checksum(fields))\n"
        }
        for (key, token, received) in tokens.withLockedValue({ $0 }) {
            let name = key.addingPercentEncoding(withAllowedCharacters: .urlHostAllowed) ?? key
            text += "@token \(name) \(received) \(Data(token).base64EncodedString())\n"
        }
        let temporary = path + ".tmp-\(getpid())"
        guard FileManager.default.createFile(atPath: temporary, contents: Data(text.utf8),
                                             attributes: [.posixPermissions: 0o600]),
              rename(temporary, path) == 0 else {
            unlink(temporary)
            throw .fileError("cannot write the session file \(path)")
        }
    }

    /// Stores the newest ticket for a server.
    public func store(_ ticket: QUICSessionTicket, for server: String) {
        entries.withLockedValue { entries in
            entries.removeAll { $0.key == server }
            entries.append((server, ticket))
            if entries.count > capacity { entries.removeFirst(entries.count - capacity) }
        }
    }

    /// The ticket for a server, if there is a fresh one.
    public func ticket(for server: String) -> QUICSessionTicket? {
        let now = Int(Date().timeIntervalSince1970)
        let maximumAge = Int(lifetime.components.seconds)
        return entries.withLockedValue { entries in
            guard let entry = entries.last(where: { $0.key == server }) else { return nil }
            return now - entry.ticket.received <= maximumAge ? entry.ticket : nil
        }
    }

    /// Forgets a server's ticket (for example after the server rejected it).
    public func remove(for server: String) {
        entries.withLockedValue { $0.removeAll { $0.key == server } }
    }

    /// Stores the newest address-validation token (NEW_TOKEN) from a server.
    public func storeAddressToken(_ token: [UInt8], for server: String) {
        guard !token.isEmpty else { return }
        tokens.withLockedValue { tokens in
            tokens.removeAll { $0.key == server }
            tokens.append((server, token, Int(Date().timeIntervalSince1970)))
            if tokens.count > capacity { tokens.removeFirst(tokens.count - capacity) }
        }
    }

    /// Takes a server's address-validation token, if there is a fresh one: it is removed, as
    /// a token reused across connections would let observers link them (RFC 9000, 8.1.3).
    public func takeAddressToken(for server: String) -> [UInt8]? {
        let now = Int(Date().timeIntervalSince1970)
        let maximumAge = Int(lifetime.components.seconds)
        return tokens.withLockedValue { tokens in
            guard let index = tokens.lastIndex(where: { $0.key == server }) else { return nil }
            let entry = tokens.remove(at: index)
            return now - entry.received <= maximumAge ? entry.token : nil
        }
    }

    /// How many servers have an address-validation token waiting.
    public var addressTokenCount: Int { tokens.withLockedValue { $0.count } }

    /// How many servers have a ticket.
    public var count: Int { entries.withLockedValue { $0.count } }

    public static func == (lhs: QUICSessionCache, rhs: QUICSessionCache) -> Bool { lhs === rhs }
    public func hash(into hasher: inout Hasher) { hasher.combine(ObjectIdentifier(self)) }
}
