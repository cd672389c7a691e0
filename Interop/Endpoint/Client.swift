import Foundation
import HTTP3
import HTTPAPI
import HTTPTypes
import NIOCore
import QUIC

/// The client role: downloads every URL in REQUESTS into DOWNLOADS over one connection.
struct InteropClient {
    let settings: EndpointSettings

    init(_ settings: EndpointSettings) { self.settings = settings }

    func run() async throws {
        try FileManager.default.createDirectory(atPath: settings.downloads, withIntermediateDirectories: true)
        let first = settings.requests[0]
        guard var host = first.host else { throw EndpointError("no host in \(first)") }
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        let port = first.port ?? 443
        var tls = QUICTLSConfiguration.makeClientConfiguration(applicationProtocols: [settings.mode == .h3 ? "h3" : "hq-interop"])
        tls.certificateVerification = .insecureNoVerification
        if settings.chacha20Only { tls.cipherSuites = .chacha20Poly1305 }
        var quic = QUICConfiguration(tls: tls)
        quic.qlogDirectory = settings.qlogDirectory
        // Lossy and slow cases (handshakeloss, longrtt, blackhole) need patience.
        quic.handshakeTimeout = .seconds(60)
        quic.idleTimeout = .seconds(60)

        switch settings.mode {
        case .hq where settings.resumption:
            // First URL on one connection; once its ticket arrived, the rest on a resumed one.
            let cache = QUICSessionCache()
            quic.sessionCache = cache
            let first = try await QUICClient.connect(host: host, port: port, configuration: quic)
            try await fetchHQ(settings.requests[0], on: first)
            for _ in 0..<500 where cache.count == 0 { try await Task.sleep(for: .milliseconds(10)) }
            await first.close()
            guard cache.count > 0 else { throw EndpointError("the server sent no session ticket") }
            // zerortt: connect returns once 0-RTT keys exist, and the requests go out early.
            quic.enableEarlyData = settings.zeroRTT
            let second = try await QUICClient.connect(host: host, port: port, configuration: quic)
            try await fetchAllHQ(Array(settings.requests.dropFirst()), on: second)
            if try await !second.isSessionResumed { log("the second connection was not resumed") }
            if settings.zeroRTT, try await !second.isEarlyDataAccepted { log("the server refused 0-RTT; requests were resent") }
            await second.close()
        case .hq where settings.connectionPerRequest:
            for url in settings.requests {
                let connection = try await QUICClient.connect(host: host, port: port, configuration: quic)
                try await fetchHQ(url, on: connection)
                await connection.close()
            }
        case .hq:
            let connection = try await QUICClient.connect(host: host, port: port, configuration: quic)
            if settings.keyUpdate { try await updateKeys(connection) }
            try await fetchAllHQ(settings.requests, on: connection)
            await connection.close()
        case .h3:
            var configuration = HTTP3Transport.Configuration(tls: tls)
            configuration.quic = quic
            configuration.quic.tls.applicationProtocols = ["h3"]
            if settings.resumption {
                // First URL on one connection; after its ticket arrived, the rest on a resumed one.
                let cache = QUICSessionCache()
                configuration.quic.sessionCache = cache
                try await fetchAllH3([settings.requests[0]], configuration: configuration)
                guard cache.count > 0 else { throw EndpointError("the server sent no session ticket") }
                // zerortt: the resumed connection sends the GETs in 0-RTT (refused ones go again).
                configuration.quic.enableEarlyData = settings.zeroRTT
                try await fetchAllH3(Array(settings.requests.dropFirst()), configuration: configuration)
            } else if settings.connectionPerRequest {
                for url in settings.requests { try await fetchAllH3([url], configuration: configuration) }
            } else {
                try await fetchAllH3(settings.requests, configuration: configuration)
            }
        }
    }

    /// Fetches URLs concurrently over HTTP/3 on a new transport (one connection per origin).
    private func fetchAllH3(_ urls: [URL], configuration: HTTP3Transport.Configuration) async throws {
        let transport = HTTP3Transport(configuration: configuration)
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for url in urls {
                    group.addTask { try await fetchH3(url, transport: transport) }
                }
                if settings.keyUpdate, let first = urls.first {
                    group.addTask { try await updateKeysH3(transport, for: first) }
                }
                try await group.waitForAll()
            }
        } catch {
            await transport.shutdown()
            throw error
        }
        // A ticket arrives after the handshake: give it a moment before closing.
        if let cache = configuration.quic.sessionCache, cache.count == 0 {
            for _ in 0..<100 where cache.count == 0 { try await Task.sleep(for: .milliseconds(10)) }
        }
        await transport.shutdown()
    }

    private func fetchAllHQ(_ urls: [URL], on connection: QUICConnection) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for url in urls {
                group.addTask {
                    do {
                        try await fetchHQ(url, on: connection)
                    } catch QUICError.earlyDataRejected {
                        // Nothing of it was processed: send it again after the handshake.
                        try await connection.waitForHandshake()
                        try await fetchHQ(url, on: connection)
                    }
                }
            }
            try await group.waitForAll()
        }
    }

    /// Starts a key update as soon as the handshake is confirmed (ngtcp2 refuses it before).
    private func updateKeys(_ connection: QUICConnection) async throws {
        for _ in 0..<200 {
            do {
                try await connection.initiateKeyUpdate()
                log("key update initiated")
                return
            } catch QUICError.invalidArgument {
                try await Task.sleep(for: .milliseconds(10))
            }
        }
        throw EndpointError("the key update was refused for 2 s")
    }

    /// HTTP/3: a key update on the connection to `url`'s origin once it exists and its
    /// handshake is confirmed.
    private func updateKeysH3(_ transport: HTTP3Transport, for url: URL) async throws {
        for _ in 0..<500 {
            do {
                try await transport.initiateKeyUpdate(for: request(url))
                log("key update initiated")
                return
            } catch HTTPError.invalidRequest {
                try await Task.sleep(for: .milliseconds(10))
            }
        }
        throw EndpointError("the key update was refused for 5 s")
    }

    private func request(_ url: URL) -> HTTPRequest {
        let path = url.path.isEmpty ? "/" : url.path
        let authority = url.port.map { "\(url.host ?? ""):\($0)" } ?? (url.host ?? "")
        return HTTPRequest(method: .get, scheme: "https", authority: authority, path: path)
    }

    private func fetchHQ(_ url: URL, on connection: QUICConnection) async throws {
        let path = url.path.isEmpty ? "/" : url.path
        let output = try OutputFile(settings.downloads, path)
        let stream = try await connection.openStream()
        try await stream.write(Array("GET \(path)\r\n".utf8))
        try await stream.finish()
        while let chunk = try await stream.read() {
            try output.write(chunk)
        }
        try output.close()
    }

    private func fetchH3(_ url: URL, transport: HTTP3Transport) async throws {
        let path = url.path.isEmpty ? "/" : url.path
        let response = try await transport.roundTrip(request(url))
        guard response.head.status == .ok else {
            response.body.discard()
            throw EndpointError("\(url): status \(response.head.status.code)")
        }
        let output = try OutputFile(settings.downloads, path)
        for try await chunk in response.body { try output.write(chunk) }
        try output.close()
    }
}

/// A downloaded file, written as bytes arrive.
final class OutputFile {
    private let handle: FileHandle

    init(_ directory: String, _ path: String) throws {
        let name = path.split(separator: "/").filter { $0 != ".." && $0 != "." }.joined(separator: "/")
        guard !name.isEmpty else { throw EndpointError("no file name in \(path)") }
        let full = directory + "/" + name
        try FileManager.default.createDirectory(atPath: (full as NSString).deletingLastPathComponent,
                                                withIntermediateDirectories: true)
        guard FileManager.default.createFile(atPath: full, contents: nil), let handle = FileHandle(forWritingAtPath: full) else {
            throw EndpointError("cannot create \(full)")
        }
        self.handle = handle
    }

    func write(_ buffer: ByteBuffer) throws {
        try handle.write(contentsOf: Data(buffer.readableBytesView))
    }

    func close() throws { try handle.close() }
}
