import CGnuTLS
import Foundation
import NIOCore
import NIOPosix
import QUIC

/// A test PKI made at run time: a CA, a server leaf for localhost/127.0.0.1, written to files.
public struct TestPKI: Sendable {
    public let directory: URL
    package let ca: GeneratedCertificate
    package let server: GeneratedCertificate
    public let caFile: String
    public let certFile: String
    public let keyFile: String

    public static let shared: TestPKI = {
        do { return try TestPKI() } catch { preconditionFailure("cannot make test certificates: \(error)") }
    }()

    init() throws {
        // One folder per test process under one parent; folders of processes that are gone are
        // removed, so repeated runs do not pile up files (the interop files are 50 MB).
        let parent = FileManager.default.temporaryDirectory.appendingPathComponent("swift-h3-tests")
        try FileManager.default.createDirectory(at: parent, withIntermediateDirectories: true)
        for name in (try? FileManager.default.contentsOfDirectory(atPath: parent.path)) ?? [] {
            if let pid = Int32(name), pid != getpid(), kill(pid, 0) != 0 {
                try? FileManager.default.removeItem(at: parent.appendingPathComponent(name))
            }
        }
        directory = parent.appendingPathComponent("\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        ca = try CertificateGenerator.makeCertificateAuthority(commonName: "swift-h3 test CA")
        server = try CertificateGenerator.makeLeaf(.init(commonName: "localhost", dnsNames: ["localhost"],
                                                         ipAddresses: ["127.0.0.1", "::1"]), issuer: ca)
        caFile = directory.appendingPathComponent("ca.pem").path
        certFile = directory.appendingPathComponent("server.pem").path
        keyFile = directory.appendingPathComponent("server.key").path
        try ca.certificatePEM.write(toFile: caFile, atomically: true, encoding: .utf8)
        try server.certificatePEM.write(toFile: certFile, atomically: true, encoding: .utf8)
        try server.privateKeyPEM.write(toFile: keyFile, atomically: true, encoding: .utf8)
    }

    public func serverTLS(alpn: [String] = ["test"]) -> QUICTLSConfiguration {
        .makeServerConfiguration(certificateChain: .file(certFile), privateKey: .file(keyFile), applicationProtocols: alpn)
    }

    public func clientTLS(alpn: [String] = ["test"], serverName: String? = "localhost") -> QUICTLSConfiguration {
        var tls = QUICTLSConfiguration.makeClientConfiguration(applicationProtocols: alpn)
        tls.trustRoots = .certificates(.file(caFile))
        tls.serverName = serverName
        return tls
    }
}

public struct TimeoutError: Error, CustomStringConvertible {
    public let seconds: Double
    public var description: String { "test step timed out after \(seconds) s" }
}

/// Runs `body`, failing with ``TimeoutError`` if it takes longer than `seconds`.
public func withTimeout<T: Sendable>(_ seconds: Double, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(nanoseconds: UInt64(seconds * 1e9))
            throw TimeoutError(seconds: seconds)
        }
        defer { group.cancelAll() }
        guard let first = try await group.next() else { throw TimeoutError(seconds: seconds) }
        return first
    }
}

/// SHA-256 with GnuTLS, fed incrementally.
public struct SHA256 {
    private var handle: gnutls_hash_hd_t?

    public init() { gnutls_hash_init(&handle, GNUTLS_DIG_SHA256) }

    public mutating func update(_ buffer: ByteBuffer) {
        buffer.withUnsafeReadableBytes { _ = gnutls_hash(handle, $0.baseAddress, $0.count) }
    }

    public mutating func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { _ = gnutls_hash(handle, $0.baseAddress, $0.count) }
    }

    public mutating func finalize() -> [UInt8] {
        var digest = [UInt8](repeating: 0, count: 32)
        gnutls_hash_deinit(handle, &digest)
        handle = nil
        return digest
    }
}

/// Deterministic pseudo-random bytes (xorshift), so large payloads need no storage.
public struct PatternGenerator {
    private var state: UInt64

    public init(seed: UInt64) { state = seed | 1 }

    public mutating func next(_ count: Int) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(count)
        var state = self.state
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: count) { raw in
            let base = raw.baseAddress!
            var index = 0
            while index + 8 <= count {
                state ^= state << 13; state ^= state >> 7; state ^= state << 17
                base.storeBytes(of: state.littleEndian, toByteOffset: index, as: UInt64.self)
                index += 8
            }
            if index < count {
                state ^= state << 13; state ^= state >> 7; state ^= state << 17
                var word = state.littleEndian
                withUnsafeBytes(of: &word) { base.advanced(by: index).copyMemory(from: $0.baseAddress!, byteCount: count - index) }
            }
            return count
        }
        self.state = state
        return buffer
    }

    /// The SHA-256 of `total` bytes of this pattern made in `chunk`-sized pieces (yields between
    /// pieces, so a long computation does not starve other tasks).
    public static func hash(seed: UInt64, total: Int, chunk: Int = 256 << 10) async -> [UInt8] {
        var generator = PatternGenerator(seed: seed)
        var hash = SHA256()
        var made = 0
        while made < total {
            let piece = generator.next(Swift.min(chunk, total - made))
            hash.update(piece)
            made += piece.readableBytes
            await Task.yield()
        }
        return hash.finalize()
    }
}

/// Lets one heavy (CPU- and bandwidth-hungry) test run at a time, so that parallel heavy
/// transfers on a 2-core machine do not starve the servers under test of CPU.
public actor HeavyTestGate {
    public static let shared = HeavyTestGate()
    private var busy = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    public func run<T: Sendable>(_ body: @Sendable () async throws -> T) async throws -> T {
        if busy {
            await withCheckedContinuation { waiters.append($0) }
        }
        busy = true
        defer {
            if waiters.isEmpty { busy = false } else { waiters.removeFirst().resume() }
        }
        return try await body()
    }
}

public func serverConfiguration(alpn: [String] = ["test"], _ adjust: (inout QUICServerConfiguration) -> Void = { _ in }) -> QUICServerConfiguration {
    var configuration = QUICServerConfiguration(quic: QUICConfiguration(tls: TestPKI.shared.serverTLS(alpn: alpn)))
    adjust(&configuration)
    return configuration
}

public func clientConfiguration(alpn: [String] = ["test"], serverName: String? = "localhost",
                         _ adjust: (inout QUICConfiguration) -> Void = { _ in }) -> QUICConfiguration {
    var configuration = QUICConfiguration(tls: TestPKI.shared.clientTLS(alpn: alpn, serverName: serverName))
    adjust(&configuration)
    return configuration
}

/// A free UDP port on 127.0.0.1 (bound and released; good enough for a test's next step).
public func freeUDPPort() throws -> Int {
    try freePort(type: Int32(SOCK_DGRAM.rawValue))
}

/// A free TCP port on 127.0.0.1 (bound and released; good enough for a test's next step).
public func freeTCPPort() throws -> Int {
    try freePort(type: Int32(SOCK_STREAM.rawValue))
}

private func freePort(type: Int32) throws -> Int {
    let fd = socket(AF_INET, type, 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer -> Int32 in
            guard bind(fd, pointer, length) == 0 else { return -1 }
            return getsockname(fd, pointer, &length)
        }
    }
    guard bound == 0 else { throw QUICError.internalError("cannot find a free port") }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// ``withTimeout(_:_:)`` for a heavy test: waits its turn at ``HeavyTestGate`` first (the
/// wait does not count against the timeout).
public func withHeavyTimeout<T: Sendable>(_ seconds: Double, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await HeavyTestGate.shared.run { try await withTimeout(seconds, body) }
}
