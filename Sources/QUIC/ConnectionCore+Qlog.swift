internal import CGnuTLS
internal import CNgtcp2
internal import CNgtcp2CryptoGnuTLS
import Glibc
import Logging
import NIOCore
import QUICSocket

/// qlog: ngtcp2 writes its event log through a callback into one file per connection.
extension ConnectionCore {
    /// Turns on ngtcp2's qlog when the configuration names a directory. A file that cannot be
    /// created is logged and skipped: qlog never stops a connection.
    func enableQlog(_ settings: inout ngtcp2_settings, originalDestinationID: ConnectionID, isServer: Bool) {
        guard let directory = configuration.qlogDirectory else { return }
        let name = originalDestinationID.bytes.map { String($0, radix: 16).leftPad(2) }.joined()
        let path = "\(directory)/\(name)_\(isServer ? "server" : "client").sqlog"
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            logger.warning("cannot create the qlog file", metadata: ["path": "\(path)", "errno": "\(errno)"])
            return
        }
        qlogDescriptor = fd
        settings.qlog.odcid = originalDestinationID.cid
        settings.qlog.write = { userData, flags, data, length in
            guard let userData else { return }
            Unmanaged<ConnectionCore>.fromOpaque(userData)._withUnsafeGuaranteedRef { core in
                core.writeQlog(data, length, final: flags & UInt32(NGTCP2_QLOG_WRITE_FLAG_FIN) != 0)
            }
        }
    }

    func writeQlog(_ data: UnsafeRawPointer?, _ length: Int, final: Bool) {
        guard qlogDescriptor >= 0 else { return }
        if let data, length > 0 {
            var offset = 0
            while offset < length {
                let n = write(qlogDescriptor, data + offset, length - offset)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                offset += n
            }
        }
        if final {
            Glibc.close(qlogDescriptor)
            qlogDescriptor = -1
        }
    }
}
