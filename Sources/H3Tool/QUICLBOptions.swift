import ArgumentParser
import QUICLB

/// `h3 serve`'s QUIC-LB options: with `--server-id`, every connection ID the server hands out
/// is a QUIC-LB routable ID carrying that server ID (draft-ietf-quic-load-balancers).
struct QUICLBOptions: ParsableArguments {
    @Option(name: .customLong("server-id"),
            help: ArgumentHelp("QUIC-LB: this instance's server ID, in hex (turns QUIC-LB connection IDs on).",
                               valueName: "hex"))
    var serverID: String?
    @Option(name: .customLong("server-id-length"),
            help: ArgumentHelp("QUIC-LB: the pool's server ID length in bytes (default: that of --server-id).",
                               valueName: "bytes"))
    var serverIDLength: Int?
    @Option(name: .customLong("quic-lb-config-id"), help: "QUIC-LB: the config rotation codepoint, 0 to 6.")
    var configID = 0
    @Option(name: .customLong("nonce-length"), help: ArgumentHelp("QUIC-LB: nonce length in bytes (4 or more; server ID + nonce at most 19).", valueName: "bytes"))
    var nonceLength = 8
    @Option(name: .customLong("quic-lb-key"),
            help: ArgumentHelp("QUIC-LB: the pool's 16-byte AES key in hex (32 digits); without it IDs are plaintext.",
                               valueName: "hex"))
    var key: String?

    func validate() throws {
        _ = try serverConfiguration()
    }

    /// The server configuration the options describe, or `nil` without `--server-id`.
    func serverConfiguration() throws -> QUICLBServerConfiguration? {
        guard let serverID else {
            if serverIDLength != nil || key != nil || configID != 0 || nonceLength != 8 {
                throw ValidationError("the QUIC-LB options go with --server-id")
            }
            return nil
        }
        guard let id = [UInt8](quicLBHex: serverID), !id.isEmpty else {
            throw ValidationError("--server-id must be hexadecimal bytes (an even number of digits), not '\(serverID)'")
        }
        let keyBytes: [UInt8]?
        if let key {
            guard let bytes = [UInt8](quicLBHex: key), bytes.count == 16 else {
                throw ValidationError("--quic-lb-key must be 32 hexadecimal digits (16 bytes)")
            }
            keyBytes = bytes
        } else {
            keyBytes = nil
        }
        guard (0...6).contains(configID) else { throw ValidationError("--quic-lb-config-id must be 0 to 6") }
        do {
            let configuration = try QUICLBConfiguration(configID: UInt8(configID), serverIDLength: serverIDLength ?? id.count,
                                                        nonceLength: nonceLength, key: keyBytes)
            return try QUICLBServerConfiguration(configuration: configuration, serverID: id)
        } catch {
            throw ValidationError(error.description)
        }
    }
}
