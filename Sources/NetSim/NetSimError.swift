/// An error thrown by the network simulator: a bad configuration, or a socket operation that
/// failed while starting the relay or rebinding its server-facing socket.
public struct NetSimError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What kind of failure this is.
    public enum Kind: Sendable, Equatable {
        /// An address could not be parsed or is of the wrong family.
        case invalidAddress
        /// A configuration value is out of range.
        case invalidConfiguration
        /// A socket could not be created, configured or bound.
        case socketFailure
        /// The pcap file could not be opened or written.
        case pcapFailure
        /// The simulator has already been stopped.
        case stopped
    }

    /// What kind of failure this is.
    public var kind: Kind
    /// A sentence that says what went wrong.
    public var message: String
    /// The `errno` value of the failed system call, if there was one.
    public var errno: Int32?

    /// Creates an error.
    public init(_ kind: Kind, _ message: String, errno: Int32? = nil) {
        self.kind = kind
        self.message = message
        self.errno = errno
    }

    /// The message, with the `errno` value when there is one.
    public var description: String {
        if let errno {
            return "\(message) (errno \(errno))"
        }
        return message
    }
}
