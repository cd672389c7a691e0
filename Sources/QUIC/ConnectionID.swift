internal import CGnuTLS
internal import CNgtcp2

/// A QUIC connection ID: 0 to 20 opaque bytes that route packets to a connection.
public struct ConnectionID: Hashable, Sendable, CustomStringConvertible {
    // The bytes are kept inline (no heap allocation): a server builds an ID for every datagram
    // it routes.
    private var words: Words = Words()
    private var length: UInt8 = 0

    /// 20 bytes of inline storage, zero past `length` (so equal IDs have equal words).
    private struct Words: Hashable, Sendable {
        var first: UInt64 = 0, second: UInt64 = 0, third: UInt32 = 0
    }

    /// The ID's bytes.
    public var bytes: [UInt8] {
        withBytes { Array($0) }
    }

    /// Calls `body` with the ID's bytes.
    func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try withUnsafeBytes(of: words) { raw in
            try body(UnsafeRawBufferPointer(rebasing: raw.prefix(Int(length))))
        }
    }

    /// The number of bytes.
    var count: Int { Int(length) }

    /// Length of the connection IDs this stack issues.
    static let issuedLength = 16

    /// Wraps bytes; returns `nil` if there are more than 20.
    public init?(_ bytes: [UInt8]) {
        guard bytes.count <= 20 else { return nil }
        self.init(unchecked: bytes)
    }

    init(unchecked bytes: [UInt8]) {
        self = bytes.withUnsafeBytes { ConnectionID(copying: $0) }
    }

    /// Copies up to 20 bytes.
    private init(copying raw: UnsafeRawBufferPointer) {
        let count = min(raw.count, 20)
        var words = Words()
        withUnsafeMutableBytes(of: &words) { destination in
            UnsafeMutableRawBufferPointer(rebasing: destination.prefix(count))
                .copyMemory(from: UnsafeRawBufferPointer(rebasing: raw.prefix(count)))
        }
        self.words = words
        self.length = UInt8(count)
    }

    init(_ cid: ngtcp2_cid) {
        var copy = cid
        let count = min(Int(cid.datalen), 20)
        self = withUnsafeBytes(of: &copy.data) { ConnectionID(copying: UnsafeRawBufferPointer(rebasing: $0.prefix(count))) }
    }

    init(pointer: UnsafePointer<UInt8>?, length: Int) {
        guard let pointer, length > 0 else { self.init(copying: UnsafeRawBufferPointer(start: nil, count: 0)); return }
        self.init(copying: UnsafeRawBufferPointer(start: pointer, count: min(length, 20)))
    }

    /// A random connection ID of ``issuedLength`` bytes from GnuTLS's CSPRNG.
    static func random(length: Int = issuedLength) -> ConnectionID {
        ConnectionID(unchecked: secureRandomBytes(length))
    }

    /// This ID as an `ngtcp2_cid`.
    var cid: ngtcp2_cid {
        var cid = ngtcp2_cid()
        withBytes { raw in ngtcp2_cid_init(&cid, raw.baseAddress?.assumingMemoryBound(to: UInt8.self), raw.count) }
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
