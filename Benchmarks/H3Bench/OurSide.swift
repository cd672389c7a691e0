// Our side of each benchmark, run as separate processes of this same binary:
//   h3-bench serve --port P --cert C --key K            an HTTP3Server answering /bytes-N
//   h3-bench fetch --port P --ca C --path /bytes-N ...  an HTTP3Transport client (counts bytes)
//   h3-bench idle  --port P --ca C --connections N ...  holds N idle connections open
// They print one machine-readable line (READY / RESULT / OPEN / VERIFIED) on standard output.
import Foundation
import Prometheus
import HTTP2
import HTTP3
import HTTPAPI
import HTTPProxy
import HTTPTypes
import NIOCore
import QUIC
#if canImport(Glibc)
import Glibc
#endif

/// The bytes every server in the benchmark serves: byte i of a body is `i % 251`, so that a
/// client can check where each chunk it receives belongs. The files given to gtlsserver hold the
/// same bytes.
enum Content {
    static let period = 251
    /// A multiple of the period, so that consecutive whole slices continue the pattern.
    static let block: ByteBuffer = {
        var buffer = ByteBufferAllocator().buffer(capacity: period * 4096)
        for i in 0..<(period * 4096) { buffer.writeInteger(UInt8(i % period)) }
        return buffer
    }()

    static func path(size: Int) -> String { "/bytes-\(size)" }

    static func writeFile(_ path: String, size: Int) throws {
        guard let handle = FileHandle(forWritingAtPath: path) ?? {
            _ = FileManager.default.createFile(atPath: path, contents: nil)
            return FileHandle(forWritingAtPath: path)
        }() else { throw BenchFailure("cannot create \(path)") }
        defer { try? handle.close() }
        let bytes = Data(Content.block.readableBytesView)
        var remaining = size
        while remaining > 0 {
            let n = min(remaining, bytes.count)
            try handle.write(contentsOf: bytes.prefix(n))
            remaining -= n
        }
    }
}

/// Minimal `--name value` parsing for the subcommands.
struct Arguments {
    private var values: [String: String] = [:]
    private(set) var flags: Set<String> = []

    init(_ arguments: ArraySlice<String>) throws {
        var iterator = arguments.makeIterator()
        while let argument = iterator.next() {
            guard argument.hasPrefix("--") else { throw BenchFailure("unexpected argument \(argument)") }
            let name = String(argument.dropFirst(2))
            if ["quick", "no-peers", "http2", "handlers-on-event-loop", "proxy-http2"].contains(name) { flags.insert(name); continue }
            guard let value = iterator.next() else { throw BenchFailure("\(argument) needs a value") }
            values[name, default: ""] += values[name] == nil ? value : ",\(value)"
        }
    }

    func string(_ name: String) throws -> String {
        guard let value = values[name] else { throw BenchFailure("--\(name) is required") }
        return value
    }

    func int(_ name: String, default fallback: Int? = nil) throws -> Int {
        guard let text = values[name] else {
            if let fallback { return fallback }
            throw BenchFailure("--\(name) is required")
        }
        guard let value = Int(text) else { throw BenchFailure("--\(name) needs a number, not \(text)") }
        return value
    }

    func optional(_ name: String) -> String? { values[name] }
}

/// What both of our sides pin so that rows compare: AES-128-GCM, 1452-byte UDP payloads,
/// CUBIC (our only congestion controller), and idle timeouts long enough for scenario 4.
enum Pinned {
    static let maxUDPPayloadSize = 1452
    static let idleTimeout: Duration = .seconds(600)
}

enum OurServer {
    static func run(_ arguments: Arguments) async throws {
        let port = try arguments.int("port")
        var tls = QUICTLSConfiguration.makeServerConfiguration(
            certificateChain: .file(try arguments.string("cert")), privateKey: .file(try arguments.string("key")),
            applicationProtocols: ["h3"])
        tls.cipherSuites = .aes128GCM
        var configuration = HTTP3ServerConfiguration(host: "127.0.0.1", port: port, tls: tls)
        configuration.quic.quic.maxUDPPayloadSize = Pinned.maxUDPPayloadSize
        configuration.quic.quic.idleTimeout = Pinned.idleTimeout
        configuration.gracefulShutdownTimeout = .seconds(1)
        // --handlers-on-event-loop: HTTPHandlerExecution.eventLoop on either protocol.
        let execution: HTTPHandlerExecution = arguments.flags.contains("handlers-on-event-loop") ? .eventLoop : .globalExecutor
        configuration.handlerExecution = execution
        // --metrics off|prometheus (scenario 6); without it, the library's default (on, into
        // MetricsSystem.factory, which nobody bootstraps here).
        switch arguments.optional("metrics") {
        case nil: break
        case "off": configuration.quic.metrics = .disabled
        case "prometheus":
            configuration.quic.metrics = QUICMetricsConfiguration(factory: PrometheusMetricsFactory(registry: PrometheusCollectorRegistry()))
        case let other?: throw BenchFailure("--metrics takes off or prometheus, not \(other)")
        }
        let block = Content.block
        let handler = ClosureHTTPHandler { request, _, _, response in
            guard request.method == .get, let path = request.path, path.hasPrefix("/bytes-"),
                  let size = Int(path.dropFirst("/bytes-".count)), size >= 0 else {
                try await response.respond(HTTPResponse(status: .notFound))
                return
            }
            var head = HTTPResponse(status: .ok)
            head.headerFields[.contentLength] = String(size)
            if size <= block.readableBytes {
                try await response.respond(head, body: block.getSlice(at: block.readerIndex, length: size)!)
                return
            }
            try await response.writeHead(head)
            var remaining = size
            while remaining > 0 {
                let n = min(remaining, block.readableBytes)
                try await response.write(block.getSlice(at: block.readerIndex, length: n)!)
                remaining -= n
            }
            try await response.finish()
        }
        // --proxy URL --ca FILE [--proxy-http2]: an HTTP/3 reverse proxy to that backend instead.
        let stop: @Sendable () async -> Void
        if let backend = arguments.optional("proxy") {
            var backendTLS = QUICTLSConfiguration.makeClientConfiguration(applicationProtocols: ["h2"])
            backendTLS.trustRoots = .certificates(.file(try arguments.string("ca")))
            let proxy = try ProxyHandler(configuration: .init(
                backend: backend, backendProtocol: arguments.flags.contains("proxy-http2") ? .http2 : .http1,
                backendTLS: backendTLS))
            let server = try await HTTP3Server.bind(configuration: configuration, handler: proxy)
            writeLine("READY \(server.localAddress.port ?? port)")
            stop = { await server.shutdown() }
        } else if arguments.flags.contains("http2") {
            // The same handler over HTTP/2 (TCP + TLS) with --http2.
            var http2 = HTTP2ServerConfiguration(host: "127.0.0.1", port: port, tls: tls)
            http2.gracefulShutdownTimeout = .seconds(1)
            http2.idleTimeout = Pinned.idleTimeout
            http2.handlerExecution = execution
            let server = try await HTTP2Server.bind(configuration: http2, handler: handler)
            writeLine("READY \(server.localAddress.port ?? port)")
            stop = { await server.shutdown() }
        } else {
            let server = try await HTTP3Server.bind(configuration: configuration, handler: handler)
            writeLine("READY \(server.localAddress.port ?? port)")
            stop = { await server.shutdown() }
        }
        // Serve until the benchmark (our parent) stops us or goes away.
        let parent = getppid()
        while getppid() == parent {
            try? await Task.sleep(for: .milliseconds(500))
        }
        await stop()
    }
}

enum OurClient {
    /// A directory for qlog files (`--qlog-dir`, for diagnosing a run), or nil.
    nonisolated(unsafe) static var qlogDirectory: String?

    static func makeTransport(port: Int, ca: String) -> HTTP3Transport {
        var tls = QUICTLSConfiguration.makeClientConfiguration(applicationProtocols: ["h3"])
        tls.trustRoots = .certificates(.file(ca))
        tls.cipherSuites = .aes128GCM
        var configuration = HTTP3Transport.Configuration(
            tls: tls, idleConnectionTimeout: .seconds(3600), resolve: ["localhost:\(port)": "127.0.0.1"])
        configuration.quic.maxUDPPayloadSize = Pinned.maxUDPPayloadSize
        configuration.quic.idleTimeout = Pinned.idleTimeout
        configuration.quic.qlogDirectory = qlogDirectory
        return HTTP3Transport(configuration: configuration)
    }

    /// Our HTTP/2 client (TCP + TLS), configured like the HTTP/3 one.
    static func makeHTTP2Transport(port: Int, ca: String) -> HTTP2Transport {
        var tls = QUICTLSConfiguration.makeClientConfiguration(applicationProtocols: ["h2"])
        tls.trustRoots = .certificates(.file(ca))
        return HTTP2Transport(configuration: .init(tls: tls, idleConnectionTimeout: .seconds(3600),
                                                   resolve: ["localhost:\(port)": "127.0.0.1"]))
    }

    /// A client of either transport, and how to shut it down.
    static func makeClient(port: Int, ca: String, http2: Bool) -> (any HTTPRoundTripper, @Sendable () async -> Void) {
        if http2 {
            let transport = makeHTTP2Transport(port: port, ca: ca)
            return (transport, { await transport.shutdown() })
        }
        let transport = makeTransport(port: port, ca: ca)
        return (transport, { await transport.shutdown() })
    }

    /// One GET; the body is discarded but counted, and the first byte of each chunk is checked
    /// against the content pattern. Anything but exactly `size` bytes is an error.
    static func get(_ transport: any HTTPRoundTripper, port: Int, path: String, size: Int) async throws -> (bytes: Int, reused: Bool, connected: Double) {
        let request = HTTPRequest(method: .get, scheme: "https", authority: "localhost:\(port)", path: path)
        let response = try await transport.roundTrip(request)
        guard response.head.status == .ok else {
            throw BenchFailure("GET \(path): status \(response.head.status.code)")
        }
        var count = 0
        for try await chunk in response.body {
            if let first = chunk.getInteger(at: chunk.readerIndex, as: UInt8.self),
               Int(first) != count % Content.period {
                throw BenchFailure("GET \(path): wrong content at offset \(count)")
            }
            count += chunk.readableBytes
        }
        guard count == size else { throw BenchFailure("GET \(path): received \(count) bytes, expected \(size)") }
        let connected = response.metadata.timings.connected.components
        return (count, response.metadata.connectionReused,
                Double(connected.seconds) + Double(connected.attoseconds) / 1e18)
    }

    /// `fetch`: `requests` GETs with `concurrency` in flight on one connection, or (with
    /// `--new-connections 1`) each on a new connection, one after another.
    static func fetch(_ arguments: Arguments) async throws {
        let port = try arguments.int("port"), ca = try arguments.string("ca")
        let path = try arguments.string("path"), size = try arguments.int("size")
        let requests = try arguments.int("requests", default: 1)
        let concurrency = max(1, min(requests, try arguments.int("concurrency", default: 1)))
        let newConnections = try arguments.int("new-connections", default: 0) != 0
        let http2 = arguments.flags.contains("http2")
        qlogDirectory = arguments.optional("qlog-dir")
        let started = now()
        var total = 0
        var phases = ""
        if newConnections {
            // Where the time of a new connection goes: handshake, the GET after it, the shutdown.
            var connect: [Double] = [], request: [Double] = [], shutdown: [Double] = []
            for _ in 0..<requests {
                let (transport, stop) = makeClient(port: port, ca: ca, http2: http2)
                let t0 = now()
                let result = try await get(transport, port: port, path: path, size: size)
                let t1 = now()
                total += result.bytes
                await stop()
                let t2 = now()
                connect.append(result.connected)
                request.append(t1 - t0 - result.connected)
                shutdown.append(t2 - t1)
            }
            func ms(_ values: [Double]) -> String { String(format: "%.2f", values.sorted()[values.count / 2] * 1000) }
            phases = " connect_ms=\(ms(connect)) request_ms=\(ms(request)) shutdown_ms=\(ms(shutdown))"
        } else {
            let (transport, shutdown) = makeClient(port: port, ca: ca, http2: http2)
            total = try await withThrowingTaskGroup(of: Int.self) { group in
                for worker in 0..<concurrency {
                    let share = requests / concurrency + (worker < requests % concurrency ? 1 : 0)
                    group.addTask {
                        var bytes = 0
                        for _ in 0..<share { bytes += try await get(transport, port: port, path: path, size: size).bytes }
                        return bytes
                    }
                }
                return try await group.reduce(0, +)
            }
            await shutdown()
        }
        let seconds = now() - started
        guard total == requests * size else {
            throw BenchFailure("moved \(total) bytes, expected \(requests * size)")
        }
        writeLine("RESULT bytes=\(total) requests=\(requests) seconds=\(seconds)\(phases)")
    }

    /// `idle`: opens `connections` connections (one transport each, one small GET each), reports
    /// OPEN, waits for the `--go` file, then checks that every connection is still the same open
    /// connection (a second GET on each must reuse it) and reports VERIFIED.
    static func idle(_ arguments: Arguments) async throws {
        let port = try arguments.int("port"), ca = try arguments.string("ca")
        let connections = try arguments.int("connections"), go = try arguments.string("go")
        var limit = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        limit.rlim_cur = limit.rlim_max
        setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        let path = Content.path(size: 1024)
        let transports = (0..<connections).map { _ in makeTransport(port: port, ca: ca) }
        let started = now()
        try await withThrowingTaskGroup(of: Void.self) { group in
            var next = 0
            for _ in 0..<min(50, connections) {
                let transport = transports[next]; next += 1
                group.addTask { _ = try await get(transport, port: port, path: path, size: 1024) }
            }
            while try await group.next() != nil {
                if next < connections {
                    let transport = transports[next]; next += 1
                    group.addTask { _ = try await get(transport, port: port, path: path, size: 1024) }
                }
            }
        }
        writeLine("OPEN \(connections) seconds=\(now() - started)")
        let deadline = now() + 900
        while !FileManager.default.fileExists(atPath: go) {
            guard now() < deadline else { throw BenchFailure("no go file after 900 s") }
            try await Task.sleep(for: .milliseconds(100))
        }
        var reused = 0
        for transport in transports {
            if try await get(transport, port: port, path: path, size: 1024).reused { reused += 1 }
        }
        writeLine("VERIFIED reused=\(reused) of=\(connections)")
    }
}
