import HTTPAPI
import HTTPTypes
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// One proxied exchange with an HTTP/1.1 backend (cleartext or TLS) over NIO's HTTP/1.1
/// codec: a connection per request, closed when the exchange ends.
///
/// Both bodies stream: the request body is written as the client sends it (each write waits for
/// the socket, so a slow backend slows the client's upload through flow control), and the
/// response body is read from the socket only as fast as the client takes it (an
/// `NIOAsyncChannel` with its default backpressure), so neither is ever held whole in memory.
struct HTTP1Backend: Sendable {
    let host: String
    let port: Int
    /// TLS for an `https` backend.
    let tls: NIOSSLContext?
    let connectTimeout: Duration

    /// Forwards `request` and its body; hands informational heads to `onInformational`, the final
    /// head to `onHead`, then streams the body to `onBody` and the end (with trailers) to `onEnd`.
    ///
    /// - Throws: ``ProxyBackendError`` for a backend that cannot be reached or that breaks the exchange.
    func exchange(_ request: HTTPRequest, body: HTTPBody,
                  onInformational: @escaping @Sendable (HTTPResponse) async throws -> Void,
                  onHead: @escaping @Sendable (HTTPResponse) async throws -> Void,
                  onBody: @escaping @Sendable (ByteBuffer) async throws -> Void,
                  onEnd: @escaping @Sendable (HTTPFields?) async throws -> Void) async throws {
        let channel: NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>
        do {
            let tls = self.tls, host = self.host
            channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(.nanoseconds(Int64(connectTimeout.components.seconds) * 1_000_000_000
                                             + connectTimeout.components.attoseconds / 1_000_000_000))
                .channelOption(.tcpOption(.tcp_nodelay), value: 1)
                .connect(host: host, port: port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        if let tls {
                            let name = (try? SocketAddress(ipAddress: host, port: 0)) == nil ? host : nil
                            try channel.pipeline.syncOperations.addHandler(
                                try NIOSSLClientHandler(context: tls, serverHostname: name))
                        }
                        // As addHTTPClientHandlers, but 1xx responses are passed up so they can be forwarded.
                        try channel.pipeline.syncOperations.addHandlers([
                            HTTPRequestEncoder(),
                            ByteToMessageHandler(HTTPResponseDecoder(leftOverBytesStrategy: .dropBytes,
                                                                     informationalResponseStrategy: .forward)),
                            NIOHTTPRequestHeadersValidator(),
                        ])
                        return try NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>(
                            wrappingChannelSynchronously: channel)
                    }
                }
        } catch {
            throw ProxyBackendError.unreachable("\(host):\(port): \(error)")
        }
        try await channel.executeThenClose { inbound, outbound in
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    do {
                        // A GET (or another method that rarely has a body) of unknown length: look at
                        // the first chunk, so that an empty body goes without framing rather than
                        // as an empty chunked body.
                        var chunks = body.makeAsyncIterator()
                        var pending: ByteBuffer?
                        var length = body.length
                        if length == nil, Self.bodylessMethods.contains(request.method) {
                            pending = try await chunks.next()
                            if pending == nil { length = 0 }
                        }
                        try await outbound.write(.head(Self.requestHead(request, length: length)))
                        if let pending { try await outbound.write(.body(.byteBuffer(pending))) }
                        while let chunk = try await chunks.next() {
                            try await outbound.write(.body(.byteBuffer(chunk)))
                        }
                        try await outbound.write(.end(Self.fields(try await body.trailers())))
                    } catch let error as ProxyBackendError {
                        throw error
                    } catch {
                        throw ProxyBackendError.broken("sending the request: \(error)")
                    }
                }
                var sawHead = false
                do {
                    for try await part in inbound {
                        switch part {
                        case .head(let responseHead):
                            // 1xx heads (103 Early Hints, ...) go ahead of the final one; 101 is not
                            // passed (a proxy does not upgrade).
                            if responseHead.status.code < 200 {
                                if responseHead.status.code != 101 { try await onInformational(Self.response(responseHead)) }
                                continue
                            }
                            sawHead = true
                            try await onHead(Self.response(responseHead))
                        case .body(let chunk):
                            try await onBody(chunk)
                        case .end(let trailers):
                            try await onEnd(trailers.map(Self.fields(_:)) ?? nil)
                            group.cancelAll()
                            return
                        }
                    }
                } catch let error as ProxyClientGone {
                    throw error
                } catch {
                    throw ProxyBackendError.broken("\(sawHead ? "reading the response body" : "before the response head"): \(error)")
                }
                throw ProxyBackendError.broken(sawHead ? "the backend closed the connection mid-body"
                                                       : "the backend closed the connection without a response")
            }
        }
    }

    /// The HTTP/1.1 request head: origin-form target, Host from the (kept or replaced) authority,
    /// and a framing the codec can use.
    static let bodylessMethods: Set<HTTPRequest.Method> = [.get, .head, .options, .delete, .trace]

    static func requestHead(_ request: HTTPRequest, length: Int64?) -> HTTPRequestHead {
        var head = HTTPRequestHead(version: .http1_1, method: HTTPMethod(rawValue: request.method.rawValue),
                                   uri: request.path ?? "/")
        if let authority = request.authority { head.headers.add(name: "host", value: authority) }
        for field in request.headerFields where field.name.canonicalName != "host" {
            head.headers.add(name: field.name.rawName, value: field.value)
        }
        head.headers.remove(name: "content-length")
        if let length {
            if length > 0 || !bodylessMethods.contains(request.method) {
                head.headers.add(name: "content-length", value: String(length))
            }
        } else {
            head.headers.add(name: "transfer-encoding", value: "chunked")
        }
        return head
    }

    static func response(_ head: HTTPResponseHead) -> HTTPResponse {
        var fields = HTTPFields()
        for (name, value) in head.headers {
            guard let fieldName = HTTPField.Name(name) else { continue }
            fields.append(HTTPField(name: fieldName, value: value))
        }
        return HTTPResponse(status: .init(code: Int(head.status.code), reasonPhrase: head.status.reasonPhrase),
                            headerFields: ProxyHeaders.cleanResponse(fields))
    }

    static func fields(_ headers: HTTPHeaders) -> HTTPFields? {
        var fields = HTTPFields()
        for (name, value) in headers {
            guard let fieldName = HTTPField.Name(name) else { continue }
            fields.append(HTTPField(name: fieldName, value: value))
        }
        return fields.isEmpty ? nil : fields
    }

    static func fields(_ fields: HTTPFields?) -> HTTPHeaders? {
        guard let fields, !fields.isEmpty else { return nil }
        var headers = HTTPHeaders()
        for field in fields { headers.add(name: field.name.rawName, value: field.value) }
        return headers
    }
}

/// Why a backend exchange failed.
enum ProxyBackendError: Error, CustomStringConvertible {
    /// The backend could not be connected to (refused, unresolvable, TLS failed).
    case unreachable(String)
    /// The exchange broke after it started.
    case broken(String)
    /// The backend sent no response head within the timeout.
    case timeout(Duration)

    var description: String {
        switch self {
        case .unreachable(let why): return "backend unreachable: \(why)"
        case .broken(let why): return "backend exchange failed: \(why)"
        case .timeout(let limit): return "backend sent no response head within \(limit)"
        }
    }
}

/// The client side (writing to our client) failed: not the backend's fault.
struct ProxyClientGone: Error {
    let underlying: any Error
}
