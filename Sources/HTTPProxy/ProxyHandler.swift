import Foundation
import HTTP2
import HTTPAPI
import HTTPTypes
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOSSL
import QUIC

/// A reverse proxy as an ``HTTPHandler``: every request goes to one backend, over HTTP/1.1
/// (cleartext or TLS) or HTTP/2 (TLS, ALPN h2), and the backend's response comes back. Serve
/// it from any of our servers (HTTP/3, HTTP/2, both).
///
/// Bodies stream both ways with backpressure (nothing is buffered whole); trailers pass both
/// ways. Header fields are rewritten by ``ProxyHeaders`` (forwarding fields, hop-by-hop fields,
/// client-certificate identity). A backend that cannot be reached gives 502, one that sends no
/// response head within ``Configuration/responseTimeout`` gives 504; each is logged with the reason.
///
/// ```swift
/// let proxy = try ProxyHandler(configuration: .init(backend: "http://127.0.0.1:8080"))
/// let server = try await HTTP3Server.bind(configuration: config, handler: proxy)
/// ```
public struct ProxyHandler: HTTPHandler {
    /// The protocol spoken to the backend.
    public enum BackendProtocol: String, Sendable, Hashable {
        /// HTTP/1.1, one connection per request (`http` or `https` URLs).
        case http1
        /// HTTP/2 over TLS with ALPN h2, pooled (`https` URLs only).
        case http2
    }

    /// Proxy settings.
    public struct Configuration: Sendable {
        /// The backend's URL: `http://host:port` or `https://host:port` (a path is not used).
        public var backend: String
        /// HTTP/1.1 (the default) or HTTP/2.
        public var backendProtocol: BackendProtocol
        /// TLS settings towards an `https` backend (trust roots, verification, a client certificate).
        public var backendTLS: QUICTLSConfiguration
        /// How request header fields are rewritten.
        public var headers: ProxyHeaders
        /// How long connecting to the backend may take (then 502).
        public var connectTimeout: Duration
        /// How long the backend may take to send its response head after the request started (then 504).
        public var responseTimeout: Duration

        /// Creates settings for a backend URL.
        public init(backend: String, backendProtocol: BackendProtocol = .http1,
                    backendTLS: QUICTLSConfiguration = .makeClientConfiguration(applicationProtocols: ["h2"]),
                    headers: ProxyHeaders = ProxyHeaders(), connectTimeout: Duration = .seconds(5),
                    responseTimeout: Duration = .seconds(30)) {
            self.backend = backend
            self.backendProtocol = backendProtocol
            self.backendTLS = backendTLS
            self.headers = headers
            self.connectTimeout = connectTimeout
            self.responseTimeout = responseTimeout
        }
    }

    private let configuration: Configuration
    private let logger: Logger
    private let host: String
    private let port: Int
    private let authority: String
    private let http1: HTTP1Backend?
    private let http2: HTTP2Transport?

    /// Creates a proxy.
    ///
    /// - Throws: ``HTTP2ConfigurationError`` for a URL that is not `http(s)://host[:port]`, an
    ///   `http` URL with HTTP/2, or unusable TLS settings.
    public init(configuration: Configuration, logger: Logger = Logger(label: "swift-h3.proxy")) throws {
        guard let url = URLComponents(string: configuration.backend), let scheme = url.scheme?.lowercased(),
              scheme == "http" || scheme == "https", let host = url.host, !host.isEmpty else {
            throw HTTP2ConfigurationError("the backend must be an http:// or https:// URL with a host: \(configuration.backend)")
        }
        let bareHost = host.hasPrefix("[") ? String(host.dropFirst().dropLast()) : host
        let port = url.port ?? (scheme == "https" ? 443 : 80)
        self.configuration = configuration
        self.logger = logger
        self.host = bareHost
        self.port = port
        self.authority = bareHost.contains(":") ? "[\(bareHost)]:\(port)" : "\(bareHost):\(port)"
        switch configuration.backendProtocol {
        case .http1:
            var tls: NIOSSLContext?
            if scheme == "https" {
                var client = TLSConfiguration.makeClientConfiguration()
                client.applicationProtocols = ["http/1.1"]
                switch configuration.backendTLS.trustRoots {
                case .system: client.trustRoots = .default
                case .certificates(.file(let path)): client.trustRoots = .file(path)
                case .certificates(.pem(let pem)): client.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Array(pem.utf8)))
                }
                switch configuration.backendTLS.certificateVerification {
                case .fullVerification: client.certificateVerification = .fullVerification
                case .noHostnameVerification: client.certificateVerification = .noHostnameVerification
                case .insecureNoVerification: client.certificateVerification = .none
                }
                tls = try NIOSSLContext(configuration: client)
            }
            http1 = HTTP1Backend(host: bareHost, port: port, tls: tls, connectTimeout: configuration.connectTimeout)
            http2 = nil
        case .http2:
            guard scheme == "https" else {
                throw HTTP2ConfigurationError("an HTTP/2 backend needs an https:// URL (TLS with ALPN h2)")
            }
            http1 = nil
            http2 = HTTP2Transport(configuration: .init(tls: configuration.backendTLS))
        }
    }

    public func handle(_ request: HTTPRequest, body: HTTPBody, context: HTTPRequestContext,
                       response: HTTPResponseWriter) async throws {
        let hop = ProxyHeaders.Hop(clientAddress: context.remoteAddress, proxyAddress: context.localAddress,
                                   identity: context.clientCertificate.flatMap(CertificateIdentity.init(der:)))
        let outgoing = configuration.headers.rewrite(request, hop: hop, backendAuthority: authority)
        let headSent = NIOLockedValueBox(false)
        // The deadline for the response head counts from the request's last progress: an upload
        // that keeps moving is not a stalled backend.
        let progress = NIOLockedValueBox(ContinuousClock.now)
        let forwardedBody = HTTPBody(ProgressSequence(body: body, progress: progress), length: body.length,
                                     trailers: { try await body.trailers() })
        let onHead: @Sendable (HTTPResponse) async throws -> Void = { head in
            headSent.withLockedValue { $0 = true }
            do { try await response.writeHead(head) } catch { throw ProxyClientGone(underlying: error) }
        }
        let onInformational: @Sendable (HTTPResponse) async throws -> Void = { head in
            do { try await response.writeHead(head) } catch { throw ProxyClientGone(underlying: error) }
        }
        let onBody: @Sendable (ByteBuffer) async throws -> Void = { chunk in
            do { try await response.write(chunk) } catch { throw ProxyClientGone(underlying: error) }
        }
        let onEnd: @Sendable (HTTPFields?) async throws -> Void = { trailers in
            do { try await response.finish(trailers: trailers) } catch { throw ProxyClientGone(underlying: error) }
        }
        do {
            try await withHeadDeadline(headSent, progress: progress) {
                try await self.forward(outgoing, body: forwardedBody, onInformational: onInformational, onHead: onHead,
                                       onBody: onBody, onEnd: onEnd)
            }
        } catch let gone as ProxyClientGone {
            throw gone.underlying
        } catch {
            let status: HTTPResponse.Status
            switch error {
            case ProxyBackendError.timeout: status = .gatewayTimeout
            default: status = .badGateway
            }
            logger.warning("proxy: \(request.method) \(request.path ?? "/") to \(authority): \(error)",
                           metadata: ["status": "\(status.code)"])
            guard !headSent.withLockedValue({ $0 }) else { throw error }
            try await response.respond(HTTPResponse(status: status, headerFields: [.contentType: "text/plain"]),
                                       body: ByteBuffer(string: "\(status.code) \(status.reasonPhrase): \(error)\n"))
        }
    }

    private func forward(_ request: HTTPRequest, body: HTTPBody,
                         onInformational: @escaping @Sendable (HTTPResponse) async throws -> Void,
                         onHead: @escaping @Sendable (HTTPResponse) async throws -> Void,
                         onBody: @escaping @Sendable (ByteBuffer) async throws -> Void,
                         onEnd: @escaping @Sendable (HTTPFields?) async throws -> Void) async throws {
        if let http1 {
            try await http1.exchange(request, body: body, onInformational: onInformational, onHead: onHead,
                                     onBody: onBody, onEnd: onEnd)
            return
        }
        guard let http2 else { return }
        // A GET (or another method that rarely has a body) with an empty body goes as an empty
        // byte body: the transport may then send it again when the backend refuses the stream
        // (REFUSED_STREAM, GOAWAY), which it cannot do with a streamed body.
        var iterator = body.makeAsyncIterator()
        var outgoingBody: HTTPBody? = body
        if body.length == 0 || (body.length == nil && HTTP1Backend.bodylessMethods.contains(request.method)) {
            if let first = try await iterator.next() {
                // The rest comes from a new iterator: a received body continues where it was left.
                outgoingBody = HTTPBody(PrefixedSequence(first: first, rest: body), length: body.length,
                                        trailers: { try await body.trailers() })
            } else {
                // No body at all: HEADERS with END_STREAM, as a client's own GET.
                outgoingBody = nil
            }
        }
        let answer: HTTPClientResponse
        do {
            answer = try await http2.roundTrip(request, body: outgoingBody, options: HTTPRequestOptions(),
                                               connectingTo: host, port: port)
        } catch {
            throw ProxyBackendError.unreachable("\(authority) (HTTP/2): \(error)")
        }
        var head = answer.head
        head.headerFields = ProxyHeaders.cleanResponse(head.headerFields)
        try await onHead(head)
        do {
            for try await chunk in answer.body { try await onBody(chunk) }
        } catch let gone as ProxyClientGone {
            throw gone
        } catch {
            throw ProxyBackendError.broken("reading the response body: \(error)")
        }
        try await onEnd(try? await answer.body.trailers())
    }

    /// Runs `body`, failing with ``ProxyBackendError/timeout(_:)`` if no response head was
    /// sent within the response timeout of the request's last progress (a streaming body after
    /// the head has no deadline).
    private func withHeadDeadline(_ headSent: NIOLockedValueBox<Bool>, progress: NIOLockedValueBox<ContinuousClock.Instant>,
                                  _ body: @escaping @Sendable () async throws -> Void) async throws {
        let limit = configuration.responseTimeout
        try await withThrowingTaskGroup(of: Bool.self) { group in
            group.addTask {
                try await body()
                return true
            }
            group.addTask {
                while true {
                    let deadline = progress.withLockedValue { $0 } + limit
                    do { try await Task.sleep(until: deadline, clock: .continuous) } catch { return false }
                    if headSent.withLockedValue({ $0 }) { return false }
                    if progress.withLockedValue({ $0 }) + limit <= ContinuousClock.now { throw ProxyBackendError.timeout(limit) }
                }
            }
            defer { group.cancelAll() }
            // The exchange ending (or failing) ends the wait; the deadline passing without a head
            // fails it; the deadline passing after the head changes nothing.
            while let exchangeEnded = try await group.next() {
                if exchangeEnded { return }
            }
        }
    }
}

/// A request body that records when each chunk passed (the request's progress).
private struct ProgressSequence: AsyncSequence, Sendable {
    typealias Element = ByteBuffer
    let body: HTTPBody
    let progress: NIOLockedValueBox<ContinuousClock.Instant>

    struct AsyncIterator: AsyncIteratorProtocol {
        var inner: HTTPBody.AsyncIterator
        let progress: NIOLockedValueBox<ContinuousClock.Instant>

        mutating func next() async throws -> ByteBuffer? {
            let chunk = try await inner.next()
            progress.withLockedValue { $0 = .now }
            return chunk
        }
    }

    func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(inner: body.makeAsyncIterator(), progress: progress)
    }
}

/// A chunk already read, then the rest of a body.
private struct PrefixedSequence: AsyncSequence, Sendable {
    typealias Element = ByteBuffer
    let first: ByteBuffer
    let rest: HTTPBody

    struct AsyncIterator: AsyncIteratorProtocol {
        var first: ByteBuffer?
        var rest: HTTPBody.AsyncIterator

        mutating func next() async throws -> ByteBuffer? {
            if let chunk = first {
                first = nil
                return chunk
            }
            return try await rest.next()
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(first: first, rest: rest.makeAsyncIterator()) }
}
