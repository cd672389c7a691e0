// h3-bench fallback [--runs N]: the delay the racing client (curl's --http3 behaviour) adds
// when UDP is blocked. One process: an HTTP2Server on TCP 127.0.0.1:P, a socket on UDP P that
// swallows every datagram (QUIC neither connects nor is refused), and fresh clients timing one
// GET each, HTTP/2-only against race mode. Reported as medians and their difference, which
// should be close to the race delay (250 ms): TCP starts when that delay runs out.
import ChoosingClient
import Foundation
import HTTP2
import HTTP3
import HTTPAPI
import HTTPTypes
import NIOCore
import QUIC
#if canImport(Glibc)
import Glibc
#endif

enum FallbackBench {
    static func run(_ arguments: Arguments) async throws {
        let runs = try arguments.int("runs", default: 10)
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("h3-bench-fallback-\(getpid())").path
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: work) }
        // BoringSSL (HTTP/2) does not take a self-signed leaf as its own root: issue from a CA.
        let authority = try CertificateGenerator.makeCertificateAuthority(commonName: "h3-bench CA")
        let certificate = try CertificateGenerator.makeLeaf(
            .init(commonName: "localhost", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"]), issuer: authority)
        let certFile = "\(work)/cert.pem", keyFile = "\(work)/key.pem", caFile = "\(work)/ca.pem"
        try certificate.certificatePEM.write(toFile: certFile, atomically: true, encoding: .utf8)
        try authority.certificatePEM.write(toFile: caFile, atomically: true, encoding: .utf8)
        try certificate.privateKeyPEM.write(toFile: keyFile, atomically: true, encoding: .utf8)

        let (hole, port) = try bindBlackhole()
        defer { close(hole) }
        let serverTLS = QUICTLSConfiguration.makeServerConfiguration(certificateChain: .file(certFile), privateKey: .file(keyFile),
                                                                    applicationProtocols: ["h2"])
        let server = try await HTTP2Server.bind(
            configuration: HTTP2ServerConfiguration(host: "127.0.0.1", port: port, tls: serverTLS),
            handler: ClosureHTTPHandler { _, _, _, response in
                try await response.respond(HTTPResponse(status: .ok), body: ByteBuffer(string: "ok"))
            })
        var tls = QUICTLSConfiguration.makeClientConfiguration(applicationProtocols: ["h3"])
        tls.trustRoots = .certificates(.file(caFile))
        let resolve = ["localhost:\(port)": "127.0.0.1"]
        var results: [HTTPClient.Mode: [Double]] = [:]
        for _ in 0..<runs {
            for mode in [HTTPClient.Mode.http2Only, .race] {
                let client = HTTPClient(configuration: .init(mode: mode), tls: tls, resolve: resolve)
                let started = ContinuousClock.now
                let response = try await client.roundTrip(HTTPRequest(method: .get, scheme: "https",
                                                                      authority: "localhost:\(port)", path: "/"))
                _ = try await response.body.collect(upTo: 1024)
                let elapsed = ContinuousClock.now - started
                guard response.metadata.protocolVersion == .http2 else { throw BenchFailure("\(mode) did not use HTTP/2") }
                results[mode, default: []].append(Double(elapsed.components.attoseconds) / 1e15
                                                  + Double(elapsed.components.seconds) * 1000)
                await client.shutdown()
            }
        }
        await server.shutdown()
        let direct = median(results[.http2Only] ?? []), raced = median(results[.race] ?? [])
        print("| client mode, UDP blackholed | first response, median of \(runs) (ms) |")
        print("| --- | --- |")
        print("| HTTP/2 only | \(fmt(direct)) |")
        print("| race (QUIC first, TCP after 250 ms) | \(fmt(raced)) |")
        print("")
        print("Added by racing: \(fmt(raced - direct)) ms (race / HTTP/2-only = \(fmt(raced / max(direct, 0.001), 2)))")
    }

    /// A UDP socket on 127.0.0.1 that is never read; returns it and its port.
    static func bindBlackhole() throws -> (Int32, Int) {
        let descriptor = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard descriptor >= 0 else { throw BenchFailure("socket() failed") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, length) }
        }
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) }
        }
        guard bound == 0, named == 0 else {
            close(descriptor)
            throw BenchFailure("cannot bind a UDP port")
        }
        return (descriptor, Int(UInt16(bigEndian: address.sin_port)))
    }
}
