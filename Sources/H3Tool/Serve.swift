import ArgumentParser
import Foundation
import HTTP2
import HTTP3
import HTTPServer
import HTTPAPI
import NIOCore
import QUIC

/// `h3 serve [DIR]`: an HTTP/3 file server (or an echo server) in one command.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve a directory over HTTP/3 (and HTTP/2 with --tcp).",
        discussion: """
            Without --cert/--key, h3 generates a certificate for localhost, 127.0.0.1 and ::1, signed by a \
            local CA made with it, on first use and keeps it in $XDG_CACHE_HOME/swift-h3 (or \
            ~/.cache/swift-h3); clients need --cacert with localhost-cert.pem from there (it ends with the \
            CA; localhost-ca.pem holds the CA alone), or -k. SIGINT or SIGTERM stop the server gracefully: GOAWAY, requests \
            in flight finish, then the connections close. With --tcp the same port also serves HTTP/2 \
            (HTTP/1.1 for clients that do not offer h2) over TCP, and TCP responses carry \
            Alt-Svc: h3=":PORT"; ma=86400 so that clients move to HTTP/3.
            """)

    @Argument(help: "The directory to serve.")
    var directory = "."
    @Option(help: "The address to listen on (:: for every IPv6 and IPv4 address).")
    var host = "127.0.0.1"
    @Option(name: [.customShort("p"), .long], help: "The UDP (and with --tcp, TCP) port (0 picks a free one).")
    var port = 4433
    @Option(help: ArgumentHelp("The certificate chain (PEM).", valueName: "file"))
    var cert: String?
    @Option(help: ArgumentHelp("The certificate's private key (PEM).", valueName: "file"))
    var key: String?
    @Option(name: .customLong("client-ca"),
            help: ArgumentHelp("Require a client certificate signed by a CA in this PEM file (mutual TLS).",
                               valueName: "file"))
    var clientCA: String?
    @Option(name: .customLong("cert-cache"),
            help: ArgumentHelp("Where the generated certificate is kept.", valueName: "dir"))
    var certificateCache: String?
    @Flag(help: "Answer every request with its own body (for upload tests).")
    var echo = false
    @Flag(help: "Validate client addresses with a Retry before accepting a connection.")
    var retry = false
    @Option(name: .customLong("qlog-dir"), help: ArgumentHelp("Write a qlog file per connection into this directory.", valueName: "dir"))
    var qlogDirectory: String?
    @Flag(name: [.customShort("q"), .long], help: "No access log.")
    var quiet = false
    @Flag(help: "Serve HTTP/2 and HTTP/1.1 over TCP on the same port as well, advertising HTTP/3 with Alt-Svc.")
    var tcp = false
    @Option(name: .customLong("alt-svc-port"),
            help: ArgumentHelp("With --tcp: the UDP port Alt-Svc advertises (behind a port-mapping proxy).",
                               valueName: "port"))
    var altSvcPort: Int?
    @Option(name: .customLong("alt-svc-max-age"),
            help: ArgumentHelp("With --tcp: how long clients may remember the Alt-Svc advertisement.", valueName: "seconds"))
    var altSvcMaxAge = 86400
    @Option(name: .customLong("shutdown-timeout"),
            help: ArgumentHelp("Seconds a graceful shutdown waits for requests in flight.", valueName: "seconds"))
    var shutdownTimeout = 10.0
    @Option(name: .customLong("request-head-timeout"),
            help: ArgumentHelp("With --tcp: seconds a TCP connection may take to send a whole request head "
                               + "(0: no limit).", valueName: "seconds"))
    var requestHeadTimeout = 30.0
    @Option(name: .customLong("max-connections-per-address"),
            help: ArgumentHelp("With --tcp: TCP connections one client address may have open (0: no limit).",
                               valueName: "n"))
    var maxConnectionsPerAddress = 256

    func validate() throws {
        if (cert == nil) != (key == nil) { throw ValidationError("--cert and --key go together") }
        if !(0...65535).contains(port) { throw ValidationError("--port must be between 0 and 65535") }
        if let altSvcPort, !(1...65535).contains(altSvcPort) {
            throw ValidationError("--alt-svc-port must be between 1 and 65535")
        }
        if !(0...Int(Int32.max)).contains(altSvcMaxAge) {
            throw ValidationError("--alt-svc-max-age must be between 0 and \(Int32.max)")
        }
        if !tcp && (altSvcPort != nil || altSvcMaxAge != 86400) {
            throw ValidationError("--alt-svc-port and --alt-svc-max-age go with --tcp")
        }
        if !(requestHeadTimeout >= 0 && requestHeadTimeout <= 1e8) {
            throw ValidationError("--request-head-timeout must be between 0 and 1e8 seconds")
        }
        if maxConnectionsPerAddress < 0 {
            throw ValidationError("--max-connections-per-address must not be negative")
        }
        if !tcp && (requestHeadTimeout != 30 || maxConnectionsPerAddress != 256) {
            throw ValidationError("--request-head-timeout and --max-connections-per-address go with --tcp")
        }
        if !(shutdownTimeout >= 0 && shutdownTimeout <= 1e8) {
            throw ValidationError("--shutdown-timeout must be between 0 and 1e8 seconds")
        }
    }

    func run() async throws {
        // Signals first, so a SIGTERM that arrives while starting up is not lost.
        let signals = SignalWaiter([SIGINT, SIGTERM])
        let log = AccessLog(enabled: !quiet)
        let handler: any HTTPHandler
        var served = "echo"
        if echo {
            handler = EchoHandler(log: log)
        } else {
            let files = try FileServer(directory: directory, log: log)
            handler = files
            served = files.root
        }

        let certificatePath: String, keyPath: String
        if let cert, let key {
            for file in [cert, key] where !FileManager.default.isReadableFile(atPath: file) {
                throw ToolError(ToolError.usage, "cannot read '\(file)'")
            }
            certificatePath = cert
            keyPath = key
            if let pem = try? String(contentsOfFile: cert, encoding: .utf8),
               let facts = try? CertificateGenerator.inspect(certificatePEM: pem) {
                Console.error("h3 serve: certificate \(cert), SHA-256 \(facts.sha256Fingerprint)")
            }
        } else {
            let cached = try CertificateCache.loadOrCreate(directory: certificateCache)
            certificatePath = cached.certificatePath
            keyPath = cached.keyPath
            Console.error("h3 serve: \(cached.created ? "generated a" : "using the") local certificate "
                          + "\(cached.certificatePath) (key \(cached.keyPath), CA \(cached.caPath)), "
                          + "SHA-256 \(cached.fingerprint); clients: --cacert \(cached.certificatePath)")
        }

        var tls = QUICTLSConfiguration.makeServerConfiguration(
            certificateChain: .file(certificatePath), privateKey: .file(keyPath), applicationProtocols: ["h3"])
        if let clientCA {
            guard FileManager.default.isReadableFile(atPath: clientCA) else {
                throw ToolError(ToolError.readError, "cannot read the client CA file \(clientCA)")
            }
            tls.clientAuthentication = .required
            tls.trustRoots = .certificates(.file(clientCA))
        }
        let shutdownAfter = Duration.milliseconds(Int64(shutdownTimeout * 1000))
        var configuration = HTTP3ServerConfiguration(host: host, port: port, tls: tls, gracefulShutdownTimeout: shutdownAfter)
        configuration.quic.requireAddressValidation = retry
        configuration.quic.quic.qlogDirectory = qlogDirectory
        let stop: @Sendable () async -> Void
        let boundPort: Int
        var transports = "HTTP/3 over UDP"
        if tcp {
            var combined = HTTPServerConfiguration(host: host, port: port, tls: tls, advertisedPort: altSvcPort,
                                                   altSvcMaxAge: altSvcMaxAge)
            combined.http3 = configuration
            combined.http2.gracefulShutdownTimeout = shutdownAfter
            combined.http2.requestHeadTimeout = requestHeadTimeout > 0
                ? .milliseconds(max(1, Int64(requestHeadTimeout * 1000))) : nil
            combined.http2.maxConnectionsPerAddress = maxConnectionsPerAddress > 0 ? maxConnectionsPerAddress : nil
            let server: HTTPServer
            do {
                server = try await HTTPServer.bind(configuration: combined, handler: handler)
            } catch {
                throw ToolError(1, "cannot serve on udp and tcp \(host) port \(port): \(error)")
            }
            boundPort = server.port
            stop = { await server.shutdown() }
            transports += ", HTTP/2 and HTTP/1.1 over TCP; Alt-Svc: \(server.altSvc ?? "")"
        } else {
            let server: HTTP3Server
            do {
                server = try await HTTP3Server.bind(configuration: configuration, handler: handler)
            } catch {
                throw ToolError(1, "cannot serve on udp \(host) port \(port): \(error)")
            }
            boundPort = server.localAddress.port ?? port
            stop = { await server.shutdown() }
        }
        let shownHost = host.contains(":") ? "[\(host)]" : host
        Console.error("h3 serve: serving \(served) on https://\(shownHost):\(boundPort)/ (\(transports)); Ctrl-C stops")

        let signal = await signals.next() ?? SIGTERM
        Console.error("h3 serve: \(signal == SIGINT ? "SIGINT" : "SIGTERM"): shutting down gracefully "
                      + "(again to stop at once)")
        let forced = Task {
            // `nil` when this task is cancelled because the shutdown finished.
            guard await signals.next() != nil, !Task.isCancelled else { return }
            Console.error("h3 serve: stopping now")
            Glibc.exit(1)
        }
        await stop()
        forced.cancel()
        Console.error("h3 serve: stopped")
    }
}

/// Delivers SIGINT/SIGTERM as async events instead of killing the process.
final class SignalWaiter: @unchecked Sendable {
    private var sources: [any DispatchSourceSignal] = []
    private let stream: AsyncStream<Int32>
    private let continuation: AsyncStream<Int32>.Continuation
    private let lock = NSLock()
    private var iterator: AsyncStream<Int32>.Iterator

    init(_ numbers: [Int32]) {
        (stream, continuation) = AsyncStream.makeStream(of: Int32.self)
        iterator = stream.makeAsyncIterator()
        for number in numbers {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            let continuation = self.continuation
            source.setEventHandler { continuation.yield(number) }
            source.resume()
            sources.append(source)
        }
    }

    /// The next signal; `nil` if the waiting task is cancelled.
    func next() async -> Int32? {
        var iterator = lock.withLock { self.iterator }
        let value = await iterator.next()
        lock.withLock { self.iterator = iterator }
        return value
    }
}

/// The certificate `h3 serve` makes on first use and reuses afterwards: a leaf for localhost,
/// 127.0.0.1 and ::1, signed by a CA made with it (BoringSSL, under the HTTP/2 client, does not
/// take a self-signed leaf as its own trust anchor; GnuTLS does). `localhost-cert.pem` holds the
/// leaf followed by the CA: the server sends it as its chain, and as a client's `--cacert` it
/// trusts the CA, so the one file works for both. `localhost-ca.pem` holds the CA alone. A cache
/// from an older version (a self-signed leaf, no CA file) is replaced.
enum CertificateCache {
    struct Entry {
        let certificatePath: String
        let keyPath: String
        let caPath: String
        let fingerprint: String
        let created: Bool
    }

    static func defaultDirectory() -> String {
        let environment = ProcessInfo.processInfo.environment
        if let cache = environment["XDG_CACHE_HOME"], cache.hasPrefix("/") { return cache + "/swift-h3" }
        if let home = environment["HOME"], !home.isEmpty { return home + "/.cache/swift-h3" }
        return NSTemporaryDirectory() + "swift-h3-\(getuid())"
    }

    /// Loads the cached certificate, or makes one (again, if the cached one expires within a
    /// day, or has no CA beside it).
    static func loadOrCreate(directory: String?) throws(ToolError) -> Entry {
        let directory = directory ?? defaultDirectory()
        let certificatePath = directory + "/localhost-cert.pem"
        let keyPath = directory + "/localhost-key.pem"
        let caPath = directory + "/localhost-ca.pem"
        if let pem = try? String(contentsOfFile: certificatePath, encoding: .utf8),
           FileManager.default.isReadableFile(atPath: keyPath),
           let caPEM = try? String(contentsOfFile: caPath, encoding: .utf8),
           pem.hasSuffix(caPEM),
           let facts = try? CertificateGenerator.inspect(certificatePEM: pem),
           facts.notAfter > Int(time(nil)) + 86_400 {
            return Entry(certificatePath: certificatePath, keyPath: keyPath, caPath: caPath,
                         fingerprint: facts.sha256Fingerprint, created: false)
        }
        let authority: GeneratedCertificate, leaf: GeneratedCertificate
        do {
            authority = try CertificateGenerator.makeCertificateAuthority(commonName: "h3 serve local CA", validDays: 366)
            leaf = try CertificateGenerator.makeLeaf(
                .init(commonName: "localhost", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1", "::1"]),
                issuer: authority, validDays: 365)
        } catch {
            throw ToolError(1, "cannot generate a certificate: \(error)")
        }
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
            try write(leaf.privateKeyPEM, to: keyPath, mode: 0o600)
            try write(authority.certificatePEM, to: caPath, mode: 0o644)
            try write(leaf.certificatePEM + authority.certificatePEM, to: certificatePath, mode: 0o644)
        } catch let error as ToolError {
            throw error
        } catch {
            throw ToolError(ToolError.writeError, "cannot write the certificate to \(directory): \(error)")
        }
        return Entry(certificatePath: certificatePath, keyPath: keyPath, caPath: caPath,
                     fingerprint: leaf.sha256Fingerprint, created: true)
    }

    /// Writes a file atomically (temporary file, then rename) with the given permissions.
    private static func write(_ text: String, to path: String, mode: mode_t) throws(ToolError) {
        let temporary = path + ".tmp-\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard fd >= 0 else {
            throw ToolError(ToolError.writeError, "cannot write \(path): \(String(cString: strerror(errno)))")
        }
        let bytes = Array(text.utf8)
        let written = bytes.withUnsafeBytes { raw in raw.baseAddress.map { Glibc.write(fd, $0, raw.count) } ?? 0 }
        let closed = close(fd)
        guard written == bytes.count, closed == 0, rename(temporary, path) == 0 else {
            unlink(temporary)
            throw ToolError(ToolError.writeError, "cannot write \(path): \(String(cString: strerror(errno)))")
        }
    }
}
