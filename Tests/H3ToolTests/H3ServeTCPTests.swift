import Foundation
import QUIC
import QUICTestSupport
import Testing

/// `h3 serve --tcp`: the built binary serves HTTP/3 over UDP and HTTP/2 + HTTP/1.1 over TCP on
/// one port, checked with curl (nghttp2) as the independent TCP client.
@Suite("h3 serve --tcp, end to end")
struct H3ServeTCPTests {
    let files = ServedFiles.shared

    /// Runs curl; returns what `-w` printed, the response head and the body.
    func curl(_ arguments: [String]) async throws -> (written: String, head: String, body: Data) {
        let curl = try #require(peerProgram("curl"))
        let scratch = try scratchDirectory()
        let headFile = scratch.appendingPathComponent("head").path
        let bodyFile = scratch.appendingPathComponent("body").path
        let process = try PeerProcess(curl, ["-sS", "-D", headFile, "-o", bodyFile] + arguments,
                                      directory: TestPKI.shared.directory, separateStandardOutput: true)
        let status = await process.waitForExit(seconds: 60)
        #expect(status == 0, "curl \(arguments): \(process.output)")
        let head = (try? String(contentsOfFile: headFile, encoding: .utf8)) ?? ""
        return (String(decoding: process.standardOutput, as: UTF8.self), head,
                FileManager.default.contents(atPath: bodyFile) ?? Data())
    }

    @Test("curl --http2 and --http1.1 download byte-exact and see Alt-Svc; h3 still fetches over HTTP/3 on the same port")
    func serveBoth() async throws {
        guard peerProgram("curl") != nil else { return }
        let pki = TestPKI.shared
        let server = try await ServeProcess.start([files.root.path, "--cert", pki.certFile, "--key", pki.keyFile, "--tcp"])
        #expect(server.log.contains("HTTP/2 and HTTP/1.1 over TCP"), "startup line: \(server.log)")
        for (flag, version) in [("--http2", "2"), ("--http1.1", "1.1")] {
            let run = try await curl(["--cacert", pki.caFile, flag, "-w", "%{http_version}", "\(server.url)/random.bin"])
            #expect(run.written == version)
            #expect(sameBytes(run.body, files.random))
            #expect(run.head.lowercased().contains("alt-svc: h3=\":\(server.port)\"; ma=86400"), "\(flag) head: \(run.head)")
        }
        // -k: the generated certificate is not trusted; curl skips verification as users do.
        let insecure = try await curl(["-k", "--http2", "-w", "%{http_version}", "\(server.url)/small.txt"])
        #expect(insecure.written == "2")
        #expect(insecure.body == Data("hello h3\n".utf8))
        // The UDP side answers on the same port.
        let overUDP = try await runH3(trust + ["-sS", "-w", "%{http_version}", "\(server.url)/small.txt"])
        #expect(overUDP.status == 0, "\(overUDP)")
        #expect(overUDP.text == "hello h3\n3")
        // The access log names each protocol.
        for line in ["\"GET /random.bin HTTP/2\" 200", "\"GET /random.bin HTTP/1.1\" 200", "\"GET /small.txt HTTP/3\" 200"] {
            #expect(server.log.contains(line), "access log lacks \(line): \(server.log)")
        }
    }

    @Test("--alt-svc-port advertises another port; the Alt-Svc options need --tcp")
    func advertisedPort() async throws {
        guard peerProgram("curl") != nil else { return }
        let pki = TestPKI.shared
        let server = try await ServeProcess.start([files.root.path, "--cert", pki.certFile, "--key", pki.keyFile, "--tcp",
                                                   "--alt-svc-port", "8443", "--alt-svc-max-age", "60"])
        let run = try await curl(["--cacert", pki.caFile, "--http2", "\(server.url)/small.txt"])
        #expect(run.head.lowercased().contains("alt-svc: h3=\":8443\"; ma=60"), "head: \(run.head)")
        let refused = try await runH3(["serve", "--alt-svc-port", "8443"])
        #expect(refused.status != 0, "\(refused)")
        #expect(refused.stderr.contains("go with --tcp"), "\(refused)")
    }

    @Test("the generated certificate works with --cacert over HTTP/2 (BoringSSL) and HTTP/3 (GnuTLS); an old self-signed cache is replaced")
    func generatedCertificateOverHTTP2() async throws {
        let cache = try scratchDirectory()
        // A cache from before: a self-signed leaf, which BoringSSL does not take as its own trust anchor.
        let old = try CertificateGenerator.makeLeaf(.init(commonName: "localhost", dnsNames: ["localhost"],
                                                          ipAddresses: ["127.0.0.1", "::1"]), validDays: 365)
        try old.certificatePEM.write(to: cache.appendingPathComponent("localhost-cert.pem"), atomically: true, encoding: .utf8)
        try old.privateKeyPEM.write(to: cache.appendingPathComponent("localhost-key.pem"), atomically: true, encoding: .utf8)
        let server = try await ServeProcess.start([files.root.path, "--cert-cache", cache.path, "--tcp"])
        let certificate = cache.appendingPathComponent("localhost-cert.pem").path
        let authority = cache.appendingPathComponent("localhost-ca.pem").path
        #expect(server.log.contains("generated a local certificate \(certificate)"), "old cache replaced: \(server.log)")
        #expect(server.log.contains("--cacert \(certificate)"), "the log says what to trust: \(server.log)")
        for anchor in [certificate, authority] {
            for mode in ["--http2", "--http3-only"] {
                let run = try await runH3([mode, "-sS", "--cacert", anchor, "-w", "%{http_version}",
                                           "https://localhost:\(server.port)/small.txt"])
                #expect(run.status == 0, "\(mode) --cacert \(anchor): \(run)")
                #expect(run.text == "hello h3\n" + (mode == "--http2" ? "2" : "3"), "\(mode): \(run)")
            }
        }
        // By IP address too (127.0.0.1 is in the certificate).
        let byAddress = try await runH3(["--http2", "-sS", "--cacert", certificate, "\(server.url)/small.txt"])
        #expect(byAddress.text == "hello h3\n", "\(byAddress)")
    }
}
