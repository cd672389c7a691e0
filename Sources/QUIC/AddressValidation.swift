internal import CNgtcp2
internal import CNgtcp2CryptoGnuTLS
import NIOCore

/// Makes and checks Retry tokens (RFC 9000, section 8.1.2): authenticated with the server's
/// secret, bound to the client's address and the connection IDs, and expiring.
///
/// A pure value: no I/O, time is passed in (ngtcp2 nanoseconds).
struct RetryTokenCodec: Sendable {
    let secret: [UInt8]
    let lifetime: Duration

    /// A token for a client at `remote` whose first Initial went to `originalDestinationID`;
    /// our Retry packet uses `retrySourceID`.
    func makeToken(remote: SocketAddress, retrySourceID: ConnectionID, originalDestinationID: ConnectionID,
                   version: UInt32, now: UInt64) -> [UInt8]? {
        var token = [UInt8](repeating: 0, count: swift_ngtcp2_crypto_max_retry_tokenlen())
        var retry = retrySourceID.cid, original = originalDestinationID.cid
        let length = remote.withSockAddr { addr, addrLength in
            token.withUnsafeMutableBufferPointer { out in
                ngtcp2_crypto_generate_retry_token(out.baseAddress, secret, secret.count, version, addr,
                                                   ngtcp2_socklen(addrLength), &retry, &original, now)
            }
        }
        guard length > 0 else { return nil }
        return Array(token.prefix(Int(length)))
    }

    /// Checks a token that arrived in an Initial sent to `destinationID` from `remote`.
    /// Returns the client's original destination connection ID, or `nil` if the token is
    /// forged, altered, for another address, or expired.
    func validate(_ token: [UInt8], remote: SocketAddress, destinationID: ConnectionID,
                  version: UInt32, now: UInt64) -> ConnectionID? {
        guard token.first == UInt8(NGTCP2_CRYPTO_TOKEN_MAGIC_RETRY) else { return nil }
        var original = ngtcp2_cid()
        var destination = destinationID.cid
        let rv = remote.withSockAddr { addr, addrLength in
            ngtcp2_crypto_verify_retry_token(&original, token, token.count, secret, secret.count, version, addr,
                                             ngtcp2_socklen(addrLength), &destination, lifetime.nanoseconds, now)
        }
        return rv == 0 ? ConnectionID(original) : nil
    }
}

/// Makes and checks the address-validation tokens a server hands out in NEW_TOKEN frames
/// (RFC 9000, section 8.1.3): authenticated with the server's secret, bound to the client's
/// address, and expiring. A client that presents a valid one in its Initial has proven its
/// address, so a server that validates addresses lets it in without a Retry.
///
/// A pure value: no I/O, time is passed in (ngtcp2 nanoseconds).
struct NewTokenCodec: Sendable {
    let secret: [UInt8]
    let lifetime: Duration

    /// A token for the client at `remote`.
    func makeToken(remote: SocketAddress, now: UInt64) -> [UInt8]? {
        var token = [UInt8](repeating: 0, count: swift_ngtcp2_crypto_max_regular_tokenlen())
        let length = remote.withSockAddr { addr, addrLength in
            token.withUnsafeMutableBufferPointer { out in
                ngtcp2_crypto_generate_regular_token(out.baseAddress, secret, secret.count, addr, ngtcp2_socklen(addrLength), now)
            }
        }
        guard length > 0 else { return nil }
        return Array(token.prefix(Int(length)))
    }

    /// Whether `token` (from a client's Initial sent from `remote`) is one of ours, unaltered,
    /// for this address, and not expired.
    func validate(_ token: [UInt8], remote: SocketAddress, now: UInt64) -> Bool {
        guard token.first == UInt8(NGTCP2_CRYPTO_TOKEN_MAGIC_REGULAR) else { return false }
        let rv = remote.withSockAddr { addr, addrLength in
            ngtcp2_crypto_verify_regular_token(token, token.count, secret, secret.count, addr, ngtcp2_socklen(addrLength),
                                               lifetime.nanoseconds, now)
        }
        return rv == 0
    }
}

/// Derives stateless reset tokens from a static key (RFC 9000, section 10.3.2), so that a
/// server that lost a connection's state can still end it.
struct StatelessResetKey: Sendable {
    let secret: [UInt8]

    func token(for id: ConnectionID) -> [UInt8] {
        var token = [UInt8](repeating: 0, count: Int(NGTCP2_STATELESS_RESET_TOKENLEN))
        var cid = id.cid
        let rv = token.withUnsafeMutableBufferPointer {
            ngtcp2_crypto_generate_stateless_reset_token($0.baseAddress, secret, secret.count, &cid)
        }
        return rv == 0 ? token : secureRandomBytes(Int(NGTCP2_STATELESS_RESET_TOKENLEN))
    }
}
