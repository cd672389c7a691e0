import ArgumentParser
import Foundation
import HTTP2
import HTTP3
import HTTPServer
import HTTPAPI
import HTTPProxy
import HTTPTypes
import NIOCore
import Logging
import QUIC
import ServiceLifecycle
import UnixSignals

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
            Alt-Svc: h3=":PORT"; ma=86400 so that clients move to HTTP/3. Several certificates: repeat \
            --cert/--key (or give --cert-dir); each serves the DNS names of its certificate (exact or \
            *. wildcard), chosen by the client's SNI, and the first also answers other names (unless \
            --strict-sni). SIGHUP reads the certificate files again: new handshakes get the new \
            certificates, open connections carry on; if a file is unreadable or malformed, the reload \
            is refused and the previous certificates keep serving.
            """)

    @Argument(help: "The directory to serve.")
    var directory = "."
    @Option(help: "The address to listen on (:: for every IPv6 and IPv4 address).")
    var host = "127.0.0.1"
    @Option(name: [.customShort("p"), .long], help: "The UDP (and with --tcp, TCP) port (0 picks a free one).")
    var port = 4433
    @Option(help: ArgumentHelp("A certificate chain (PEM); repeat with --key for several, chosen by SNI.", valueName: "file"))
    var cert: [String] = []
    @Option(help: ArgumentHelp("The private key (PEM) of the --cert at the same position.", valueName: "file"))
    var key: [String] = []
    @Option(name: .customLong("cert-dir"),
            help: ArgumentHelp("Serve every NAME.pem (or NAME.crt) with NAME.key in this directory, chosen by SNI; "
                               + "the first by file name is the default.", valueName: "dir"))
    var certificateDirectory: String?
    @Flag(name: .customLong("strict-sni"),
          help: "No default certificate: refuse a client whose SNI no certificate serves (unrecognized_name).")
    var strictSNI = false
    @Option(name: .customLong("client-ca"),
            help: ArgumentHelp("Require a client certificate signed by a CA in this PEM file (mutual TLS).",
                               valueName: "file"))
    var clientCA: String?
    @Option(name: .customLong("cert-cache"),
            help: ArgumentHelp("Where the generated certificate is kept.", valueName: "dir"))
    var certificateCache: String?
    @Flag(help: "Answer every request with its own body (for upload tests).")
    var echo = false
    @OptionGroup var proxy: ServeProxyOptions
    @Option(name: .customLong("health-path"),
            help: ArgumentHelp("Answer GET/HEAD on this path with 200 ok, without the backend or the disk.", valueName: "path"))
    var healthPath: String?
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
    @Option(name: .customLong("metrics"),
            help: ArgumentHelp("Serve the server's metrics in Prometheus' text format at http://HOST:PORT/metrics (0 picks a free port).",
                               valueName: "port"))
    var metricsPort: Int?

    @Option(help: ArgumentHelp("Event loops serving HTTP/3, each with its own SO_REUSEPORT socket on the port (default: one per core).",
                               valueName: "n"))
    var threads = System.coreCount

    @OptionGroup(title: "QUIC-LB routable connection IDs") var loadBalancing: QUICLBOptions
    @Option(name: .customLong("request-head-timeout"),
            help: ArgumentHelp("With --tcp: seconds a TCP connection may take to send a whole request head "
                               + "(0: no limit).", valueName: "seconds"))
    var requestHeadTimeout = 30.0
    @Option(name: .customLong("max-connections-per-address"),
            help: ArgumentHelp("With --tcp: TCP connections one client address may have open (0: no limit).",
                               valueName: "n"))
    var maxConnectionsPerAddress = 256

    func validate() throws {
        try proxy.validate()
        if let healthPath, !healthPath.hasPrefix("/") { throw ValidationError("--health-path must start with /") }
        if proxy.isEnabled && echo { throw ValidationError("--proxy and --echo exclude each other") }
        if cert.count != key.count { throw ValidationError("--cert and --key go together, one --key for each --cert") }
        if certificateDirectory != nil && !cert.isEmpty { throw ValidationError("--cert-dir replaces --cert and --key") }
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
        if !(1...min(255, System.coreCount)).contains(threads) {
            throw ValidationError("--threads must be between 1 and the number of cores (\(System.coreCount))")
        }
        if let metricsPort, !(0...65535).contains(metricsPort) {
            throw ValidationError("--metrics must be a port between 0 and 65535")
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
        // SIGHUP (reload) is trapped first, so one that arrives while starting up is not lost
        // (SIGINT and SIGTERM are trapped by the ServiceGroup below).
        let hangups = await UnixSignalsSequence(trapping: .sighup)
        let log = AccessLog(enabled: !quiet)
        var handler: any HTTPHandler
        var served = "echo"
        let proxyCache = ProxyHandlerCache()
        var router: ProxyRouter?
        if proxy.isEnabled {
            let made = ProxyRouter(routes: try proxy.makeRoutes(cache: proxyCache))
            router = made
            handler = made
            served = "a proxy"
            for line in proxy.describeRoutes() { Console.error("h3 serve: \(line)") }
        } else if echo {
            handler = EchoHandler(log: log)
        } else {
            let files = try FileServer(directory: directory, log: log)
            handler = files
            served = files.root
        }
        if let healthPath { handler = HealthCheckHandler(path: healthPath, inner: handler) }

        var source = ServeCertificates(pairs: Array(zip(cert, key)), directory: certificateDirectory, strict: strictSNI)
        if cert.isEmpty && certificateDirectory == nil {
            let cached = try CertificateCache.loadOrCreate(directory: certificateCache)
            source.pairs = [(cached.certificatePath, cached.keyPath)]
            Console.error("h3 serve: \(cached.created ? "generated a" : "using the") local certificate "
                          + "\(cached.certificatePath) (key \(cached.keyPath), CA \(cached.caPath)), "
                          + "SHA-256 \(cached.fingerprint); clients: --cacert \(cached.certificatePath)")
        }
        let store: TLSCertificateStore
        do {
            store = try TLSCertificateStore(try source.load())
        } catch let error as ToolError {
            throw error
        } catch {
            throw ToolError(ToolError.readError, "certificates not usable: \(source.explain(error))")
        }
        for line in source.describe(store) { Console.error("h3 serve: \(line)") }

        var tls = QUICTLSConfiguration.makeServerConfiguration(certificates: store, applicationProtocols: ["h3"])
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
        configuration.quic.quicLB = try loadBalancing.serverConfiguration()
        configuration.loops = threads
        var metricsEndpoint: MetricsEndpoint?
        if let metricsPort {
            do {
                let endpoint = try await MetricsEndpoint.bind(host: host, port: metricsPort)
                configuration.quic.metrics = endpoint.metricsConfiguration
                metricsEndpoint = endpoint
            } catch {
                throw ToolError(1, "cannot serve metrics on tcp \(host) port \(metricsPort): \(error)")
            }
        } else {
            configuration.quic.metrics = .disabled
        }
        let server: any Service
        let closeNow: @Sendable () async -> Void
        let loopSummary: @Sendable () async -> String
        let boundPort: Int
        var transports = "HTTP/3 over UDP"
        if tcp {
            var combined = HTTPServerConfiguration(host: host, port: port, tls: tls, advertisedPort: altSvcPort,
                                                   altSvcMaxAge: altSvcMaxAge)
            combined.http3 = configuration
            combined.metrics = configuration.quic.metrics
            combined.http2.gracefulShutdownTimeout = shutdownAfter
            combined.http2.requestHeadTimeout = requestHeadTimeout > 0
                ? .milliseconds(max(1, Int64(requestHeadTimeout * 1000))) : nil
            combined.http2.maxConnectionsPerAddress = maxConnectionsPerAddress > 0 ? maxConnectionsPerAddress : nil
            let combinedServer: HTTPServer
            do {
                combinedServer = try await HTTPServer.bind(configuration: combined, handler: handler)
            } catch {
                throw ToolError(1, "cannot serve on udp and tcp \(host) port \(port): \(error)")
            }
            boundPort = combinedServer.port
            server = combinedServer
            closeNow = { await combinedServer.closeNow() }
            loopSummary = { await Self.loopSummary(combinedServer.http3) }
            transports += ", HTTP/2 and HTTP/1.1 over TCP; Alt-Svc: \(combinedServer.altSvc ?? "")"
        } else {
            let http3Server: HTTP3Server
            do {
                http3Server = try await HTTP3Server.bind(configuration: configuration, handler: handler)
            } catch {
                throw ToolError(1, "cannot serve on udp \(host) port \(port): \(error)")
            }
            boundPort = http3Server.localAddress.port ?? port
            server = http3Server
            closeNow = { await http3Server.closeNow() }
            loopSummary = { await Self.loopSummary(http3Server) }
        }
        let shownHost = host.contains(":") ? "[\(host)]" : host
        let banner = "h3 serve: serving \(served) on https://\(shownHost):\(boundPort)/ (\(transports)); Ctrl-C stops"
        // The library traps SIGINT and SIGTERM (graceful shutdown) while the group runs; the
        // banner is printed from inside it, so a signal sent once it shows is never lost.
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
        if let metricsEndpoint {
            // First in the group, so it is shut down last: the final figures stay readable while draining.
            services.append(.init(service: metricsEndpoint))
            let shown = host.contains(":") ? "[\(host)]" : host
            Console.error("h3 serve: metrics on http://\(shown):\(metricsEndpoint.localAddress?.port ?? 0)/metrics")
        }
        let proxyOptions = proxy, certificateSource = source, proxyRouter = router
        services.append(.init(service: ReloadService(hangups: hangups) {
            Self.reload(store, from: certificateSource)
            if let proxyRouter, proxyOptions.routesFile != nil {
                Self.reloadRoutes(proxyRouter, options: proxyOptions, cache: proxyCache)
            }
        }))
        services.append(.init(service: ServeService(server: server, closeNow: closeNow, banner: banner,
                                                   summary: loopSummary)))
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(
            services: services, gracefulShutdownSignals: [.sigterm, .sigint],
            logger: Logger(label: "h3.serve", factory: { _ in SwiftLogNoOpLogHandler() })))
        do {
            try await group.run()
        } catch let error as ToolError {
            throw error
        } catch {
            throw ToolError(1, "\(error)")
        }
    }

    /// SIGHUP: reads the routes file again and replaces the routes, or keeps the previous ones
    /// if it is unreadable or has a bad line.
    private static func reloadRoutes(_ router: ProxyRouter, options proxy: ServeProxyOptions, cache: ProxyHandlerCache) {
        do {
            router.replace(routes: try proxy.makeRoutes(cache: cache))
            Console.error("h3 serve: SIGHUP: reloaded \(router.routes.count) proxy route(s)")
            for line in proxy.describeRoutes() { Console.error("h3 serve: \(line)") }
        } catch {
            Console.error("h3 serve: SIGHUP: routes reload refused, still serving the previous routes: \(error)")
        }
    }

    /// SIGHUP: reads the certificate files again and replaces the served set, or keeps the
    /// previous one if any file is unusable.
    private static func reload(_ store: TLSCertificateStore, from source: ServeCertificates) {
        do {
            try store.replace(with: try source.load())
            Console.error("h3 serve: SIGHUP: reloaded \(store.certificateSet.entries.count) certificate(s)")
            for line in source.describe(store) { Console.error("h3 serve: \(line)") }
        } catch {
            Console.error("h3 serve: SIGHUP: reload refused, still serving the previous certificates: \(source.explain(error))")
        }
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
