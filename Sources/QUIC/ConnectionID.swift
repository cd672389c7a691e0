internal import CGnuTLS
internal import CNgtcp2

/// A QUIC connection ID: 0 to 20 opaque bytes that route packets to a connection.
public struct ConnectionID: Hashable, Sendable, CustomStringConvertible {
    /// The ID's bytes.
    public let bytes: [UInt8]

    /// Length of the connection IDs this stack issues.
    static let issuedLength = 16

    /// Wraps bytes; returns `nil` if there are more than 20.
    public init?(_ bytes: [UInt8]) {
        guard bytes.count <= 20 else { return nil }
        self.bytes = bytes
    }

    init(unchecked bytes: [UInt8]) {
        self.bytes = bytes
    }

    init(_ cid: ngtcp2_cid) {
        var copy = cid
        self.bytes = withUnsafeBytes(of: &copy.data) { Array($0.prefix(min(Int(cid.datalen), 20))) }
    }

    init(pointer: UnsafePointer<UInt8>?, length: Int) {
        guard let pointer, length > 0 else { self.bytes = []; return }
        self.bytes = Array(UnsafeBufferPointer(start: pointer, count: min(length, 20)))
    }

    /// A random connection ID of ``issuedLength`` bytes from GnuTLS's CSPRNG.
    static func random(length: Int = issuedLength) -> ConnectionID {
        ConnectionID(unchecked: secureRandomBytes(length))
    }

    /// This ID as an `ngtcp2_cid`.
    var cid: ngtcp2_cid {
        var cid = ngtcp2_cid()
        bytes.withUnsafeBufferPointer { ngtcp2_cid_init(&cid, $0.baseAddress, $0.count) }
        return cid
    }

    public var description: String {
        bytes.map { String($0, radix: 16).leftPad(2) }.joined()
    }
}

extension String {
    func leftPad(_ width: Int, with pad: Character = "0") -> String {
        count >= width ? self : String(repeating: pad, count: width - count) + self
    }
}

/// Bytes from GnuTLS's cryptographically secure generator.
func secureRandomBytes(_ count: Int) -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: count)
    if count > 0 {
        _ = bytes.withUnsafeMutableBytes { gnutls_rnd(GNUTLS_RND_RANDOM, $0.baseAddress, count) }
    }
    return bytes
}
