import NIOCore

extension ConnectionCore {
    /// Client: the application has queued its first request (in 0-RTT if it may go early), so
    /// the server datagrams held back since the first flight can now be read. Does nothing when
    /// none are held (see `QUICClient.connectCore(holdsInboundForEarlyData:)`). On the loop.
    package func releaseInboundHeldForEarlyData() {
        eventLoop.preconditionInEventLoop()
        (host as? ClientHost)?.releaseHeldInbound()
    }
}
