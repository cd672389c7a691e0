/// Why a QUIC-LB configuration or connection ID was rejected.
public struct QUICLBError: Error, Sendable, Hashable, CustomStringConvertible {
    /// A sentence saying what is wrong.
    public let message: String

    init(_ message: String) {
        self.message = message
    }

    public var description: String { "QUIC-LB: \(message)" }
}
