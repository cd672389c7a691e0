/// Makes a server's QUIC-LB connection IDs: each carries the server's ID, so that a load
/// balancer with the same configuration routes every packet of the connection to this server,
/// whatever the client's address.
///
/// Not thread-safe (it owns a cipher handle): give each event loop its own.
public final class QUICLBEncoder {
    /// The configuration and server ID it encodes.
    public let server: QUICLBServerConfiguration
    private let transform: QUICLBBlockTransform

    /// - Throws: ``QUICLBError`` if the key cannot be used.
    public init(_ server: QUICLBServerConfiguration) throws(QUICLBError) {
        self.server = server
        self.transform = try QUICLBBlockTransform(configuration: server.configuration)
    }

    /// The length of the connection IDs it makes.
    public var connectionIDLength: Int { server.configuration.connectionIDLength }

    /// The connection ID for `nonce` (exactly ``QUICLBConfiguration/nonceLength`` bytes).
    /// - Throws: ``QUICLBError`` if the nonce has another length.
    public func connectionID(nonce: [UInt8]) throws(QUICLBError) -> [UInt8] {
        guard nonce.count == server.configuration.nonceLength else {
            throw QUICLBError("the nonce has \(nonce.count) bytes; the configuration says \(server.configuration.nonceLength)")
        }
        return encode(nonce: nonce)
    }

    private func encode(nonce: [UInt8]) -> [UInt8] {
        let configuration = server.configuration
        let lowBits = configuration.encodesLength
            ? UInt8(configuration.plaintextLength) : (quicLBRandomBytes(1)[0] & 0x1f)
        return [configuration.configID << 5 | lowBits] + transform.encrypt(server.serverID + nonce)
    }

    /// A new connection ID with a random nonce, or one whose first nonce byte is `tag` (the
    /// multi-loop server puts its loop index there) and the rest random.
    public func makeConnectionID(tag: UInt8? = nil) -> [UInt8] {
        var nonce = quicLBRandomBytes(server.configuration.nonceLength)
        if let tag { nonce[0] = tag }
        return encode(nonce: nonce)
    }
}

@available(*, unavailable, message: "QUICLBEncoder owns a cipher handle: give each thread its own")
extension QUICLBEncoder: Sendable {}
