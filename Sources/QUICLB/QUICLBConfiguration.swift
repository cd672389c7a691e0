/// The parameters of one QUIC-LB configuration (draft-ietf-quic-load-balancers-19,
/// section 4.2) that a load balancer and every server of a pool share: which config rotation
/// codepoint it uses, how long server IDs and nonces are, and the optional AES-128 key.
///
/// Connection IDs made with it are `1 + serverIDLength + nonceLength` bytes long: a first
/// octet (config ID in the three high bits, the length of the rest in the five low bits), then
/// the server ID and nonce, encrypted when there is a key.
public struct QUICLBConfiguration: Sendable, Hashable {
    /// The config rotation codepoint, 0 to 6 (7 marks unroutable connection IDs).
    public let configID: UInt8
    /// Length of a server ID in bytes, at least 1.
    public let serverIDLength: Int
    /// Length of the nonce in bytes, at least 4; with the server ID at most 19 in all.
    public let nonceLength: Int
    /// The 16-byte AES-128 key, or `nil` for plaintext connection IDs (which let any observer
    /// read the server ID).
    public let key: [UInt8]?
    /// Whether the five low bits of the first octet carry the connection ID's length minus one
    /// (length self-description); otherwise they are random.
    public let encodesLength: Bool

    /// Checks and creates a configuration.
    /// - Throws: ``QUICLBError`` when a value is outside the draft's limits.
    public init(configID: UInt8, serverIDLength: Int, nonceLength: Int, key: [UInt8]? = nil,
                encodesLength: Bool = true) throws(QUICLBError) {
        guard configID <= 6 else { throw QUICLBError("the config ID must be 0 to 6, not \(configID)") }
        guard serverIDLength >= 1 else { throw QUICLBError("the server ID length must be at least 1") }
        guard nonceLength >= 4 else { throw QUICLBError("the nonce length must be at least 4") }
        guard serverIDLength + nonceLength <= 19 else {
            throw QUICLBError("server ID and nonce lengths must sum to at most 19, not \(serverIDLength + nonceLength)")
        }
        if let key, key.count != 16 { throw QUICLBError("the key must be 16 bytes, not \(key.count)") }
        self.configID = configID
        self.serverIDLength = serverIDLength
        self.nonceLength = nonceLength
        self.key = key
        self.encodesLength = encodesLength
    }

    /// The length of the server ID and nonce together (the part that is encrypted).
    public var plaintextLength: Int { serverIDLength + nonceLength }

    /// The length of the connection IDs of this configuration.
    public var connectionIDLength: Int { 1 + plaintextLength }
}

/// What one server of a pool needs to make its connection IDs: the shared configuration and
/// the server ID allocated to it.
public struct QUICLBServerConfiguration: Sendable, Hashable {
    /// The pool's shared parameters.
    public let configuration: QUICLBConfiguration
    /// This server's ID (``QUICLBConfiguration/serverIDLength`` bytes).
    public let serverID: [UInt8]

    /// Checks and creates a server configuration.
    /// - Throws: ``QUICLBError`` when the server ID does not have the configured length.
    public init(configuration: QUICLBConfiguration, serverID: [UInt8]) throws(QUICLBError) {
        guard serverID.count == configuration.serverIDLength else {
            throw QUICLBError("the server ID has \(serverID.count) bytes; the configuration says \(configuration.serverIDLength)")
        }
        self.configuration = configuration
        self.serverID = serverID
    }
}

extension Array where Element == UInt8 {
    /// Bytes from a hexadecimal string (an optional `0x`, no separators); `nil` if it is not
    /// an even number of hexadecimal digits.
    public init?(quicLBHex text: String) {
        var digits = Substring(text)
        if digits.hasPrefix("0x") || digits.hasPrefix("0X") { digits = digits.dropFirst(2) }
        guard digits.count % 2 == 0 else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(digits.count / 2)
        var index = digits.startIndex
        while index < digits.endIndex {
            let next = digits.index(index, offsetBy: 2)
            guard let byte = UInt8(digits[index..<next], radix: 16) else { return nil }
            bytes.append(byte)
            index = next
        }
        self = bytes
    }
}
