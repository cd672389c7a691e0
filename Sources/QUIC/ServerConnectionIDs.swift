import QUICLB

/// Where a server endpoint's connection IDs come from: random bytes, or QUIC-LB routable IDs
/// (``QUICServerConfiguration/quicLB``) that carry the server ID, so that a load balancer
/// with the same configuration routes every packet of a connection to this server whatever
/// the client's address.
///
/// Every ID the server hands out comes from here: the first source ID (given to
/// `ngtcp2_conn_server_new`), the preferred address's ID, the IDs of NEW_CONNECTION_ID frames
/// (ngtcp2's `get_new_connection_id` callback) and a Retry's source ID (which the client's next
/// Initial is addressed to, so it must reach the same server).
///
/// The loop index of a multi-loop server travels in the first nonce byte (``loopTag``); the
/// nonce is encrypted with the rest when the configuration has a key, so only the server (and
/// the balancer, which ignores it) can read it.
///
/// Confined to its endpoint's event loop (the encoder owns a cipher handle).
final class ServerConnectionIDs {
    private let encoder: QUICLBEncoder?
    private let decoder: QUICLBDecoder?
    /// The byte written at the start of each nonce (a loop index); `nil`: random.
    let loopTag: UInt8?
    /// The length of every ID issued, which is also the length short headers are parsed with.
    let length: Int
    /// How many IDs were made, and the latest few (for diagnostics and tests).
    private(set) var issuedCount = 0
    private(set) var recentlyIssued: [ConnectionID] = []

    init(configuration: QUICLBServerConfiguration?, loopTag: UInt8? = nil) throws(QUICError) {
        self.loopTag = loopTag
        guard let configuration else {
            encoder = nil
            decoder = nil
            length = ConnectionID.issuedLength
            return
        }
        do {
            encoder = try QUICLBEncoder(configuration)
            decoder = try QUICLBDecoder([configuration.configuration])
        } catch {
            throw .invalidArgument("QUIC-LB: \(error.message)")
        }
        length = configuration.configuration.connectionIDLength
    }

    /// A new ID for this server. `requestedLength` is what ngtcp2 asked for; a QUIC-LB ID
    /// always has its configuration's length (ngtcp2 asks for the length of the first source
    /// ID, which is the same).
    func make(requestedLength: Int? = nil) -> ConnectionID {
        let id: ConnectionID
        if let encoder {
            id = ConnectionID(unchecked: encoder.makeConnectionID(tag: loopTag))
        } else {
            id = ConnectionID.random(length: requestedLength ?? length)
        }
        issuedCount += 1
        if recentlyIssued.count >= 64 { recentlyIssued.removeFirst() }
        recentlyIssued.append(id)
        return id
    }

    /// The loop tag a QUIC-LB ID of this server carries, if it is one (`nil` for IDs of another
    /// configuration or server, and without QUIC-LB).
    func loopTag(of id: ConnectionID) -> UInt8? {
        guard let decoder, let encoder else { return nil }
        guard let decoded = id.withBytes({ decoder.decode(connectionID: $0) }),
              decoded.serverID == encoder.server.serverID else { return nil }
        return decoded.nonce.first
    }
}

/// A connection host that makes the connection IDs its connections hand out (a server
/// endpoint); other hosts (clients) use random IDs.
protocol ConnectionIDIssuer: AnyObject {
    /// A new connection ID; `requestedLength` is what ngtcp2 asked for, if it asked.
    func issueConnectionID(requestedLength: Int?) -> ConnectionID
}

extension ConnectionID {
    /// A new ID from `host` if it issues IDs, otherwise a random one of `length` bytes.
    static func issued(by host: (any ConnectionHost)?, length: Int = issuedLength) -> ConnectionID {
        if let issuer = host as? any ConnectionIDIssuer { return issuer.issueConnectionID(requestedLength: length) }
        return .random(length: length)
    }
}
