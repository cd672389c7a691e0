import HTTPAPI
import HTTPTypes
import NIOConcurrencyHelpers
import NIOCore

/// Sends each request to the handler of the route that matches its host and path, for example
/// one ``ProxyHandler`` per backend. The routes can be replaced while serving (requests in
/// flight finish on the handler they started on). Safe from any thread.
///
/// A route matches when its host (exact, or `*.example` for one label; `nil` for any host) is
/// the request's host (without port, any case) and its path prefix is the path or a whole-segment
/// prefix of it (`/api` matches `/api` and `/api/x`, not `/apix`). Of the matching routes, one
/// with a host wins over one without, then the longest prefix, then the first given. A request
/// no route matches gets 404.
public final class ProxyRouter: HTTPHandler, Sendable {
    /// One route.
    public struct Route: Sendable {
        /// The host this route serves (`app.example` or `*.example`), or `nil` for every host.
        public var host: String?
        /// The path prefix, starting with `/` (`/` for every path).
        public var pathPrefix: String
        /// Where matching requests go.
        public var handler: any HTTPHandler

        /// Creates a route.
        public init(host: String? = nil, pathPrefix: String = "/", handler: any HTTPHandler) {
            self.host = host
            self.pathPrefix = pathPrefix
            self.handler = handler
        }
    }

    private let table: NIOLockedValueBox<[Route]>

    /// Creates a router.
    public init(routes: [Route]) {
        table = NIOLockedValueBox(routes)
    }

    /// Replaces every route; new requests use the new ones.
    public func replace(routes: [Route]) {
        table.withLockedValue { $0 = routes }
    }

    /// The routes in use.
    public var routes: [Route] { table.withLockedValue { $0 } }

    public func handle(_ request: HTTPRequest, body: HTTPBody, context: HTTPRequestContext,
                       response: HTTPResponseWriter) async throws {
        let routes = self.routes
        guard let index = Self.route(host: request.authority, path: request.path ?? "/",
                                     among: routes.map { ($0.host, $0.pathPrefix) }) else {
            body.discard()
            try await response.respond(HTTPResponse(status: .notFound, headerFields: [.contentType: "text/plain"]),
                                       body: ByteBuffer(string: "no route for this host and path\n"))
            return
        }
        try await routes[index].handler.handle(request, body: body, context: context, response: response)
    }

    /// The index of the route for a request's authority and path, or `nil`. I/O-free.
    package static func route(host authority: String?, path: String, among routes: [(host: String?, prefix: String)]) -> Int? {
        let host = authority.map(Self.hostOnly) ?? ""
        let path = path.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? path
        var best: (index: Int, score: (Int, Int))?
        for (index, route) in routes.enumerated() {
            var hostScore = 0
            if let routeHost = route.host?.lowercased() {
                guard Self.hostMatches(routeHost, host) else { continue }
                hostScore = 1
            }
            guard Self.prefixMatches(route.prefix, path) else { continue }
            let score = (hostScore, route.prefix.count)
            if best == nil || score > best!.score { best = (index, score) }
        }
        return best?.index
    }

    static func hostOnly(_ authority: String) -> String {
        var host = authority.lowercased()
        if host.hasPrefix("["), let close = host.firstIndex(of: "]") {
            return String(host[...close])
        }
        if let colon = host.lastIndex(of: ":") { host = String(host[..<colon]) }
        if host.hasSuffix(".") { host.removeLast() }
        return host
    }

    static func hostMatches(_ pattern: String, _ host: String) -> Bool {
        if pattern.hasPrefix("*.") {
            guard let dot = host.firstIndex(of: "."), dot != host.startIndex else { return false }
            return host[host.index(after: dot)...] == pattern.dropFirst(2)
        }
        return pattern == host
    }

    static func prefixMatches(_ prefix: String, _ path: String) -> Bool {
        if prefix == "/" || prefix.isEmpty { return true }
        let trimmed = prefix.hasSuffix("/") ? String(prefix.dropLast()) : prefix
        guard path.hasPrefix(trimmed) else { return false }
        let rest = path.dropFirst(trimmed.count)
        return rest.isEmpty || rest.hasPrefix("/")
    }
}

/// Answers one path (for example `/healthz`) with 200 "ok" itself, without reaching the inner
/// handler, its backend or the disk; every other request goes to the inner handler.
public struct HealthCheckHandler: HTTPHandler {
    /// The health path, matched exactly (without the query).
    public let path: String
    /// Where every other request goes.
    public let inner: any HTTPHandler

    /// Creates a health-check front for `inner`.
    public init(path: String, inner: any HTTPHandler) {
        self.path = path
        self.inner = inner
    }

    public func handle(_ request: HTTPRequest, body: HTTPBody, context: HTTPRequestContext,
                       response: HTTPResponseWriter) async throws {
        let requested = (request.path ?? "/").split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
            .first.map(String.init) ?? ""
        guard requested == path, request.method == .get || request.method == .head else {
            try await inner.handle(request, body: body, context: context, response: response)
            return
        }
        body.discard()
        let ok = ByteBuffer(string: "ok\n")
        var head = HTTPResponse(status: .ok, headerFields: [.contentType: "text/plain", .cacheControl: "no-store"])
        head.headerFields[.contentLength] = String(ok.readableBytes)
        try await response.respond(head, body: request.method == .head ? ByteBuffer() : ok)
    }
}
