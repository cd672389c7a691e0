/// A load balancer's view of QUIC-LB (draft-ietf-quic-load-balancers-19, sections 3 and 4.4):
/// from a datagram or a connection ID to the server ID it encodes, or to "route by the
/// 4-tuple" when it encodes none.
///
/// It knows up to seven configurations (one per config rotation codepoint) and no server
/// state. Not thread-safe (it owns cipher handles): give each thread its own.
public final class QUICLBDecoder {
    /// Where a datagram goes.
    public enum Route: Sendable, Hashable {
        /// To the server with this ID.
        case server(id: [UInt8], configID: UInt8)
        /// To a server chosen from the client's address and port (a fallback algorithm): the
        /// destination connection ID carries no usable server ID.
        case fourTuple(Unroutable)
    }

    /// Why a datagram has to be routed by its 4-tuple.
    public enum Unroutable: Sendable, Hashable {
        /// The datagram is empty or too short for a header with a connection ID.
        case truncated
        /// The config rotation bits are 0b111 (a server without a configuration).
        case unroutableCodepoint
        /// The config rotation bits name no configuration this decoder knows (a client's own
        /// Initial destination ID, usually).
        case unknownConfiguration(UInt8)
        /// The connection ID is shorter than its configuration's IDs.
        case shortConnectionID
    }

    private var configurations: [QUICLBConfiguration?] = Array(repeating: nil, count: 7)
    private var transforms: [QUICLBBlockTransform?] = Array(repeating: nil, count: 7)

    /// A decoder for these configurations.
    /// - Throws: ``QUICLBError`` if two share a config ID or a key cannot be used.
    public init(_ configurations: [QUICLBConfiguration]) throws(QUICLBError) {
        for configuration in configurations {
            let id = Int(configuration.configID)
            guard self.configurations[id] == nil else { throw QUICLBError("config ID \(id) is given twice") }
            self.configurations[id] = configuration
            transforms[id] = try QUICLBBlockTransform(configuration: configuration)
        }
    }

    /// The configuration for a config ID, if the decoder has one.
    public func configuration(id: UInt8) -> QUICLBConfiguration? {
        id < 7 ? configurations[Int(id)] : nil
    }

    /// The route for a connection ID (a long header's destination ID, or the bytes that follow
    /// a short header's first byte, which may run past the ID).
    public func route(connectionID: some Collection<UInt8>) -> Route {
        switch plaintext(connectionID: connectionID) {
        case .decoded(let plaintext, let configuration):
            return .server(id: Array(plaintext.prefix(configuration.serverIDLength)), configID: configuration.configID)
        case .unroutable(let reason):
            return .fourTuple(reason)
        }
    }

    /// The server ID and nonce of a connection ID, decrypted (servers use it to read what they
    /// put in the nonce).
    public func decode(connectionID: some Collection<UInt8>) -> (serverID: [UInt8], nonce: [UInt8])? {
        guard case .decoded(let plaintext, let configuration) = plaintext(connectionID: connectionID) else { return nil }
        return (Array(plaintext.prefix(configuration.serverIDLength)), Array(plaintext.dropFirst(configuration.serverIDLength)))
    }

    private enum Decoded {
        case decoded([UInt8], QUICLBConfiguration)
        case unroutable(Unroutable)
    }

    private func plaintext(connectionID: some Collection<UInt8>) -> Decoded {
        guard let first = connectionID.first else { return .unroutable(.truncated) }
        let id = first >> 5
        guard id != 7 else { return .unroutable(.unroutableCodepoint) }
        guard let configuration = configurations[Int(id)], let transform = transforms[Int(id)] else {
            return .unroutable(.unknownConfiguration(id))
        }
        let block = Array(connectionID.dropFirst().prefix(configuration.plaintextLength))
        guard block.count == configuration.plaintextLength else { return .unroutable(.shortConnectionID) }
        return .decoded(transform.decrypt(block), configuration)
    }

    /// The route for a whole UDP datagram: the destination connection ID of a long header
    /// (whatever its version, per RFC 8999), or of a short header (taken at the configured
    /// length, which the packet does not state).
    public func route(datagram: some Collection<UInt8>) -> Route {
        guard let first = datagram.first else { return .fourTuple(.truncated) }
        if first & 0x80 != 0 {
            // Long header: first byte, 4-byte version, DCID length, DCID.
            let afterVersion = datagram.dropFirst(5)
            guard let length = afterVersion.first else { return .fourTuple(.truncated) }
            let id = afterVersion.dropFirst().prefix(Int(length))
            guard id.count == Int(length) else { return .fourTuple(.truncated) }
            return route(connectionID: id)
        }
        return route(connectionID: datagram.dropFirst())
    }
}

@available(*, unavailable, message: "QUICLBDecoder owns cipher handles: give each thread its own")
extension QUICLBDecoder: Sendable {}
