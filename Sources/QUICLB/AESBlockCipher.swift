internal import CGnuTLS

/// AES-128 on single 16-byte blocks (the ECB primitive QUIC-LB uses), from GnuTLS.
///
/// GnuTLS offers no ECB mode; CBC over exactly one block with an all-zero IV is the same
/// function, so the IV is reset to zero before every block. The one owner of its
/// `gnutls_cipher_hd_t`; not thread-safe.
final class AESBlockCipher {
    private var handle: gnutls_cipher_hd_t?
    private static let zeroIV = [UInt8](repeating: 0, count: 16)

    /// - Throws: ``QUICLBError`` if the key is not 16 bytes or GnuTLS refuses it.
    init(key: [UInt8]) throws(QUICLBError) {
        guard key.count == 16 else { throw QUICLBError("the key must be 16 bytes, not \(key.count)") }
        var keyCopy = key
        var iv = Self.zeroIV
        let rv = keyCopy.withUnsafeMutableBufferPointer { keyBytes in
            iv.withUnsafeMutableBufferPointer { ivBytes in
                var keyDatum = gnutls_datum_t(data: keyBytes.baseAddress, size: 16)
                var ivDatum = gnutls_datum_t(data: ivBytes.baseAddress, size: 16)
                return gnutls_cipher_init(&handle, GNUTLS_CIPHER_AES_128_CBC, &keyDatum, &ivDatum)
            }
        }
        guard rv == 0, handle != nil else {
            throw QUICLBError("GnuTLS cannot set up AES-128: \(String(cString: gnutls_strerror(rv)))")
        }
    }

    deinit {
        if let handle { gnutls_cipher_deinit(handle) }
    }

    /// Encrypts one block (`block` must hold 16 bytes).
    func encrypt(_ block: [UInt8]) -> [UInt8] { transform(block, encrypting: true) }

    /// Decrypts one block (`block` must hold 16 bytes).
    func decrypt(_ block: [UInt8]) -> [UInt8] { transform(block, encrypting: false) }

    /// One block through the cipher, the IV reset to zero first (so CBC is ECB here).
    private func transform(_ block: [UInt8], encrypting: Bool) -> [UInt8] {
        precondition(block.count == 16, "AES works on 16-byte blocks")
        var output = [UInt8](repeating: 0, count: 16)
        Self.zeroIV.withUnsafeBytes { iv in
            gnutls_cipher_set_iv(handle, UnsafeMutableRawPointer(mutating: iv.baseAddress), 16)
        }
        let rv = block.withUnsafeBytes { input in
            output.withUnsafeMutableBytes { out in
                encrypting ? gnutls_cipher_encrypt2(handle, input.baseAddress, 16, out.baseAddress, 16)
                           : gnutls_cipher_decrypt2(handle, input.baseAddress, 16, out.baseAddress, 16)
            }
        }
        // A whole block with a valid handle does not fail; a zero block would only make the
        // connection ID unroutable, never unsafe.
        assert(rv == 0)
        return output
    }
}

/// Random bytes from GnuTLS's generator (nonces, random first-octet bits).
func quicLBRandomBytes(_ count: Int) -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: count)
    if count > 0 {
        _ = bytes.withUnsafeMutableBytes { gnutls_rnd(GNUTLS_RND_NONCE, $0.baseAddress, count) }
    }
    return bytes
}
