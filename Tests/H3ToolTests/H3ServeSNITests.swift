import Foundation
import QUIC
import QUICTestSupport
import Testing

/// `h3 serve` with several certificates chosen by SNI, reloaded on SIGHUP: checked with the
/// built binaries, our `h3` client over HTTP/3 and curl over HTTP/2.
@Suite("h3 serve: certificates by SNI, reloaded on SIGHUP")
struct H3ServeSNITests {
    let pki = TestPKI.shared
    let files = ServedFiles.shared

    /// Writes a leaf for `names` signed by the test CA as `NAME.pem` + `NAME.key` in `directory`.
    @discardableResult
    func writeLeaf(_ name: String, commonName: String, dnsNames: [String], in directory: URL) throws -> (cert: String, key: String) {
        let leaf = try CertificateGenerator.makeLeaf(.init(commonName: commonName, dnsNames: dnsNames), issuer: pki.ca)
        let cert = directory.appendingPathComponent("\(name).pem").path
        let key = directory.appendingPathComponent("\(name).key").path
        try leaf.privateKeyPEM.write(toFile: key, atomically: true, encoding: .utf8)
        try leaf.certificatePEM.write(toFile: cert, atomically: true, encoding: .utf8)
        return (cert, key)
    }

    /// The certificate subject `h3 -v` (HTTP/3) reports for `host`, or its error output.
    func h3Subject(_ host: String, port: Int) async throws -> (subject: String?, run: ToolRun) {
        let run = try await runH3(trust + ["-v", "-sS", "--http3-only", "--resolve", "\(host):\(port):127.0.0.1",
                                           "https://\(host):\(port)/small.txt"])
        let line = run.stderr.split(separator: "\n").first { $0.hasPrefix("*  subject: ") }
        return (line.map { String($0.dropFirst("*  subject: ".count)) }, run)
    }

    /// The certificate subject curl (HTTP/2 over TCP) reports for `host`, and its verbose output.
    func curlSubject(_ host: String, port: Int) async throws -> (subject: String?, output: String, status: Int32?) {
        let curl = try #require(peerProgram("curl"))
        let process = try PeerProcess(curl, ["-v", "-sS", "--http2", "--cacert", pki.caFile, "-o", "/dev/null",
                                             "--resolve", "\(host):\(port):127.0.0.1", "https://\(host):\(port)/small.txt"],
                                      directory: pki.directory, separateStandardOutput: true)
        let status = await process.waitForExit(seconds: 60)
        let output = process.output
        let subject = output.split(separator: "\n").compactMap { line -> String? in
            guard let range = line.range(of: "subject: ") else { return nil }
            return String(line[range.upperBound...])
        }.first
        return (subject, output, status)
    }

    /// Waits (bounded) until `condition` holds.
    func eventually(_ seconds: Double = 30, _ condition: () -> Bool) async -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if condition() { return true }
            try? await Task.sleep(for: .milliseconds(25))
        }
        return condition()
    }

    @Test("two hostnames, two certificates, one port: h3 (HTTP/3) and curl (HTTP/2) each see their own")
    func twoHostnames() async throws {
        guard peerProgram("curl") != nil else { return }
        let directory = try scratchDirectory()
        let alpha = try writeLeaf("alpha", commonName: "alpha", dnsNames: ["alpha.test"], in: directory)
        let beta = try writeLeaf("beta", commonName: "beta", dnsNames: ["*.beta.test"], in: directory)
        let server = try await ServeProcess.start([files.root.path, "--tcp", "--cert", alpha.cert, "--key", alpha.key,
                                                   "--cert", beta.cert, "--key", beta.key])
        #expect(server.log.contains("certificate \(alpha.cert) for alpha.test"), "\(server.log)")
        #expect(server.log.contains("certificate \(beta.cert) for *.beta.test"), "\(server.log)")
        for (host, subject) in [("alpha.test", "CN=alpha"), ("www.beta.test", "CN=beta")] {
            let h3 = try await h3Subject(host, port: server.port)
            #expect(h3.run.status == 0, "\(host): \(h3.run)")
            #expect(h3.subject == subject, "h3 \(host): \(h3.run.stderr)")
            #expect(h3.run.text == "hello h3\n")
            let curl = try await curlSubject(host, port: server.port)
            #expect(curl.status == 0, "curl \(host): \(curl.output)")
            #expect(curl.subject == subject, "curl \(host): \(curl.output)")
        }
    }

    @Test("--strict-sni: a name no certificate serves is refused with unrecognized_name (h3 and curl)")
    func strict() async throws {
        guard peerProgram("curl") != nil else { return }
        let directory = try scratchDirectory()
        let alpha = try writeLeaf("alpha", commonName: "alpha", dnsNames: ["alpha.test"], in: directory)
        let server = try await ServeProcess.start([files.root.path, "--tcp", "--strict-sni",
                                                   "--cert", alpha.cert, "--key", alpha.key])
        let h3 = try await h3Subject("other.test", port: server.port)
        #expect(h3.run.status != 0)
        #expect(h3.run.stderr.contains("unrecognized_name"), "\(h3.run.stderr)")
        let curl = try await curlSubject("other.test", port: server.port)
        #expect(curl.status != 0)
        #expect(curl.output.lowercased().contains("unrecognized name"), "\(curl.output)")
        // The served name still works.
        let served = try await h3Subject("alpha.test", port: server.port)
        #expect(served.subject == "CN=alpha", "\(served.run)")
    }

    @Test("SIGHUP under a running download: the download completes, the next handshake sees the new certificate; a broken reload keeps the old set")
    func reload() async throws {
        guard peerProgram("curl") != nil else { return }
        let directory = try scratchDirectory()
        try writeLeaf("alpha", commonName: "alpha", dnsNames: ["alpha.test"], in: directory)
        try writeLeaf("beta", commonName: "beta", dnsNames: ["beta.test"], in: directory)
        let server = try await ServeProcess.start([files.root.path, "--tcp", "--cert-dir", directory.path])
        let port = server.port
        let pid = server.process.process.processIdentifier
        #expect(try await h3Subject("alpha.test", port: port).subject == "CN=alpha")

        // A 4 MiB download at 512 KiB/s: about 8 s, over the reload.
        let scratch = try scratchDirectory()
        let output = scratch.appendingPathComponent("random.bin")
        let download = try PeerProcess(h3Binary, trust + ["-sS", "--http3-only", "--limit-rate", "512K", "-o", output.path,
                                                          "--resolve", "alpha.test:\(port):127.0.0.1",
                                                          "https://alpha.test:\(port)/random.bin"],
                                       directory: pki.directory)
        let started = await eventually {
            ((try? FileManager.default.attributesOfItem(atPath: output.path)[.size] as? Int) ?? 0) > 0
        }
        #expect(started, "the download did not start: \(download.output)")

        try writeLeaf("alpha", commonName: "alpha renewed", dnsNames: ["alpha.test"], in: directory)
        kill(pid, SIGHUP)
        #expect(await eventually { server.log.contains("SIGHUP: reloaded 2 certificate(s)") }, "\(server.log)")
        #expect(download.process.isRunning, "the download should still be running across the reload")
        let renewed = try await h3Subject("alpha.test", port: port)
        #expect(renewed.subject == "CN=alpha renewed", "\(renewed.run)")
        let renewedTCP = try await curlSubject("alpha.test", port: port)
        #expect(renewedTCP.subject == "CN=alpha renewed", "\(renewedTCP.output)")
        #expect(try await h3Subject("beta.test", port: port).subject == "CN=beta")

        let status = await download.waitForExit(seconds: 120)
        #expect(status == 0, "download: \(download.output)")
        #expect(sameBytes(FileManager.default.contents(atPath: output.path), files.random))

        // A broken file: the reload is refused with a clear line, the previous set keeps serving.
        try "-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n"
            .write(toFile: directory.appendingPathComponent("beta.pem").path, atomically: true, encoding: .utf8)
        kill(pid, SIGHUP)
        #expect(await eventually { server.log.contains("reload refused, still serving the previous certificates") }, "\(server.log)")
        let refusal = server.log.split(separator: "\n").first { $0.contains("reload refused") } ?? ""
        #expect(refusal.contains("certificate entry 2") && refusal.contains("beta.pem"), "the log names the entry and its file: \(refusal)")
        #expect(try await h3Subject("beta.test", port: port).subject == "CN=beta")
        #expect(try await h3Subject("alpha.test", port: port).subject == "CN=alpha renewed")
        #expect(try await curlSubject("beta.test", port: port).subject == "CN=beta")
    }
}
