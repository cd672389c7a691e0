import Foundation
import HTTP3
import HTTPAPI
import HTTPTypes
import NIOCore
import QUIC

/// The server role: serves WWW over hq-interop (or h3 for the http3 case) until SIGTERM.
struct InteropServer {
    let settings: EndpointSettings

    init(_ settings: EndpointSettings) { self.settings = settings }

    func run() async throws {
        let stop = AsyncStream<Void> { continuation in
            for number in [SIGTERM, SIGINT] {
                signal(number, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
                source.setEventHandler { continuation.yield() }
                source.resume()
                SignalSources.keep(source)
            }
        }
        let alpn = settings.mode == .h3 ? "h3" : "hq-interop"
        let tls = QUICTLSConfiguration.makeServerConfiguration(
            certificateChain: .file(settings.certificates + "/cert.pem"),
            privateKey: .file(settings.certificates + "/priv.key"), applicationProtocols: [alpn])
        var quic = QUICConfiguration(tls: tls)
        quic.qlogDirectory = settings.qlogDirectory
        quic.maxIncomingBidirectionalStreams = 1000
        var serverConfiguration = QUICServerConfiguration(quic: quic, requireAddressValidation: settings.retry)
        serverConfiguration.maxConnections = 1000
        if let preferred = settings.preferredAddress {
            serverConfiguration.preferredAddress = .init(host: preferred.host, port: preferred.port,
                                                         bindHost: preferred.bindHost, bindPort: preferred.bindPort)
        }
        let files = FileStore(root: settings.www)

        switch settings.mode {
        case .hq:
            let listener = try await QUICListener.bind(host: settings.bindAddress, port: settings.port,
                                                       configuration: serverConfiguration)
            log("serving \(settings.www) over hq-interop on \(listener.localAddress)")
            let accepting = Task {
                await withDiscardingTaskGroup { group in
                    for await connection in listener.connections {
                        group.addTask { await serveHQ(connection, files: files) }
                    }
                }
            }
            for await _ in stop { break }
            accepting.cancel()
            await listener.close()
        case .h3:
            var configuration = HTTP3ServerConfiguration(host: settings.bindAddress, port: settings.port, tls: tls,
                                                         gracefulShutdownTimeout: .seconds(2))
            configuration.quic = serverConfiguration
            configuration.quic.quic.tls.applicationProtocols = ["h3"]
            let server = try await HTTP3Server.bind(configuration: configuration, handler: H3FileHandler(files: files))
            log("serving \(settings.www) over h3 on \(server.localAddress)")
            for await _ in stop { break }
            await server.shutdown()
        }
    }

    /// HTTP/0.9: each bidirectional stream carries `GET /path\r\n`; the answer is the file, then FIN.
    private func serveHQ(_ connection: QUICConnection, files: FileStore) async {
        await withDiscardingTaskGroup { group in
            for await stream in connection.incomingStreams where stream.isBidirectional {
                group.addTask {
                    do {
                        let request = try await stream.readAll(limit: 8192)
                        let line = String(buffer: request).split(whereSeparator: \.isNewline).first.map(String.init) ?? ""
                        let parts = line.split(separator: " ")
                        guard parts.count >= 2, parts[0] == "GET", let file = files.open(String(parts[1])) else {
                            await stream.reset(applicationError: 0x1)
                            return
                        }
                        defer { try? file.close() }
                        while let data = try file.read(upToCount: 256 << 10), !data.isEmpty {
                            try await stream.write(ByteBuffer(bytes: data))
                        }
                        try await stream.finish()
                    } catch {
                        await stream.reset(applicationError: 0x2)
                    }
                }
            }
        }
    }
}

/// Files under the served directory; no path leaves it.
struct FileStore: Sendable {
    let root: String

    func open(_ requestPath: String) -> FileHandle? {
        let path = requestPath.split(separator: "?").first.map(String.init) ?? ""
        guard path.hasPrefix("/"), let decoded = path.removingPercentEncoding else { return nil }
        let segments = decoded.split(separator: "/")
        guard !segments.contains(where: { $0 == ".." || $0 == "." }), !decoded.contains("\0") else { return nil }
        var isDirectory: ObjCBool = false
        let full = root + "/" + segments.joined(separator: "/")
        guard FileManager.default.fileExists(atPath: full, isDirectory: &isDirectory), !isDirectory.boolValue else {
            return nil
        }
        return FileHandle(forReadingAtPath: full)
    }
}

/// GET of files over HTTP/3.
struct H3FileHandler: HTTPHandler {
    let files: FileStore

    func handle(_ request: HTTPRequest, body: HTTPBody, context: HTTPRequestContext,
                response: HTTPResponseWriter) async throws {
        body.discard()
        guard request.method == .get || request.method == .head, let file = files.open(request.path ?? "/") else {
            try await response.respond(HTTPResponse(status: .notFound))
            return
        }
        defer { try? file.close() }
        var head = HTTPResponse(status: .ok)
        if let size = try? file.seekToEnd() {
            head.headerFields[.contentLength] = String(size)
            try file.seek(toOffset: 0)
        }
        try await response.writeHead(head)
        if request.method == .get {
            while let data = try file.read(upToCount: 256 << 10), !data.isEmpty {
                try await response.write(ByteBuffer(bytes: data))
            }
        }
        try await response.finish()
    }
}

/// Keeps signal sources alive for the life of the process.
enum SignalSources {
    nonisolated(unsafe) private static var sources: [any DispatchSourceSignal] = []
    private static let lock = NSLock()

    static func keep(_ source: any DispatchSourceSignal) {
        lock.withLock { sources.append(source) }
    }
}

func log(_ text: String) {
    FileHandle.standardError.write(Data("interop-endpoint: \(text)\n".utf8))
}
