import NIOCore
import QUICSocket

/// What a connection needs from whoever owns its socket: a server endpoint (many connections
/// on one socket, routed by connection ID) or a client (one socket per connection).
protocol ConnectionHost: AnyObject {
    /// The socket the connection's packets leave through.
    var socket: UDPSocket { get }
    /// Sends packets of this connection.
    func send(_ datagrams: [OutboundDatagram], from connection: ConnectionCore)
    /// Packets with this destination connection ID now belong to `connection`.
    func register(_ id: ConnectionID, for connection: ConnectionCore)
    /// Packets with this connection ID no longer belong to any connection.
    func unregister(_ id: ConnectionID)
    /// The stateless reset token that goes with a connection ID we issue.
    func statelessResetToken(for id: ConnectionID) -> [UInt8]
    /// The handshake completed.
    func connectionEstablished(_ connection: ConnectionCore)
    /// The connection is finished and its resources can go.
    func connectionDidFinish(_ connection: ConnectionCore)
    /// Whether some packets may leave through another socket than ``socket`` (a server's
    /// preferred address, a client validating a path to one); each written packet is then
    /// checked with ``leavesThroughPrimarySocket(local:remote:)``.
    var hasAlternatePaths: Bool { get }
    /// Whether a packet with these addresses leaves through ``socket``; the others go through
    /// ``send(_:from:)``, which picks their socket.
    func leavesThroughPrimarySocket(local: SocketAddress?, remote: SocketAddress) -> Bool
    /// Client: opens a socket towards the server's preferred address and returns its local
    /// address (`nil`: the preferred address is not used).
    func openPreferredPath(to remote: SocketAddress, for connection: ConnectionCore) -> SocketAddress?
    /// Client: validation of the path to the preferred address ended; on success the
    /// connection now uses it.
    func preferredPathValidated(_ success: Bool, for connection: ConnectionCore)
}

extension ConnectionHost {
    var hasAlternatePaths: Bool { false }
    func leavesThroughPrimarySocket(local: SocketAddress?, remote: SocketAddress) -> Bool { true }
    func openPreferredPath(to remote: SocketAddress, for connection: ConnectionCore) -> SocketAddress? { nil }
    func preferredPathValidated(_ success: Bool, for connection: ConnectionCore) {}
}
