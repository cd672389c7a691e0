/// The reversible transform between a connection ID's plaintext block (server ID and nonce)
/// and what goes on the wire (draft-ietf-quic-load-balancers-19, sections 4.3 and 4.4):
/// nothing without a key, one AES block when the block is 16 bytes, otherwise a four-round
/// Feistel network whose round function is AES on an expanded half.
///
/// Not thread-safe (it owns a cipher handle).
final class QUICLBBlockTransform {
    let length: Int
    private let cipher: AESBlockCipher?

    init(configuration: QUICLBConfiguration) throws(QUICLBError) {
        length = configuration.plaintextLength
        cipher = try configuration.key.map { key throws(QUICLBError) in try AESBlockCipher(key: key) }
    }

    /// The wire form of `plaintext` (``length`` bytes).
    func encrypt(_ plaintext: [UInt8]) -> [UInt8] {
        guard let cipher else { return plaintext }
        if length == 16 { return cipher.encrypt(plaintext) }
        var (left, right) = split(plaintext)
        right = xorRound(right, with: left, pass: 1, cipher: cipher, clearHighNibble: true)
        left = xorRound(left, with: right, pass: 2, cipher: cipher, clearHighNibble: false)
        right = xorRound(right, with: left, pass: 3, cipher: cipher, clearHighNibble: true)
        left = xorRound(left, with: right, pass: 4, cipher: cipher, clearHighNibble: false)
        return join(left, right)
    }

    /// The plaintext of `ciphertext` (``length`` bytes).
    func decrypt(_ ciphertext: [UInt8]) -> [UInt8] {
        guard let cipher else { return ciphertext }
        if length == 16 { return cipher.decrypt(ciphertext) }
        var (left, right) = split(ciphertext)
        left = xorRound(left, with: right, pass: 4, cipher: cipher, clearHighNibble: false)
        right = xorRound(right, with: left, pass: 3, cipher: cipher, clearHighNibble: true)
        left = xorRound(left, with: right, pass: 2, cipher: cipher, clearHighNibble: false)
        right = xorRound(right, with: left, pass: 1, cipher: cipher, clearHighNibble: true)
        return join(left, right)
    }

    private var halfLength: Int { (length + 1) / 2 }
    private var isOdd: Bool { length % 2 == 1 }

    /// Splits a block into equal halves; with an odd length the middle byte is shared, its high
    /// nibble going left and its low nibble right.
    private func split(_ block: [UInt8]) -> ([UInt8], [UInt8]) {
        var left = Array(block[0..<halfLength])
        var right = Array(block[(length - halfLength)..<length])
        if isOdd {
            left[halfLength - 1] &= 0xf0
            right[0] &= 0x0f
        }
        return (left, right)
    }

    /// The inverse of ``split(_:)``.
    private func join(_ left: [UInt8], _ right: [UInt8]) -> [UInt8] {
        guard isOdd else { return left + right }
        var block = Array(left[0..<(halfLength - 1)])
        block.append(left[halfLength - 1] | right[0])
        block.append(contentsOf: right[1...])
        return block
    }

    /// `target` XOR the first half of AES(expand(length, pass, source)), with the nibble the
    /// other half owns cleared.
    private func xorRound(_ target: [UInt8], with source: [UInt8], pass: UInt8, cipher: AESBlockCipher,
                          clearHighNibble: Bool) -> [UInt8] {
        var input = [UInt8](repeating: 0, count: 16)
        for index in 0..<halfLength { input[index] = source[index] }
        input[14] = UInt8(length)
        input[15] = pass
        let mask = cipher.encrypt(input)
        var result = target
        for index in 0..<halfLength { result[index] ^= mask[index] }
        if isOdd {
            if clearHighNibble { result[0] &= 0x0f } else { result[halfLength - 1] &= 0xf0 }
        }
        return result
    }
}
