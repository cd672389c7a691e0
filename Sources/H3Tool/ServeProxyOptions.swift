import ArgumentParser
import Foundation
import HTTPAPI
import HTTPProxy
import NIOConcurrencyHelpers
import HTTPTypes
import Logging
import QUIC

/// `h3 serve --proxy URL` and its settings: the server forwards every request to one backend.
struct ServeProxyOptions: ParsableArguments {
    @Option(name: .customLong("proxy"),
            help: ArgumentHelp("Forward requests to a backend: URL (every request), or [HOST][/PREFIX]=URL for "
                               + "requests to HOST (exact or *.domain) under PREFIX. Repeatable.", valueName: "route"))
    var routes: [String] = []
    @Option(name: .customLong("proxy-routes"),
            help: ArgumentHelp("A file of routes, one per line as for --proxy (# starts a comment); read again on SIGHUP.",
                               valueName: "file"))
    var routesFile: String?
    @Flag(name: .customLong("proxy-http2"), help: "Speak HTTP/2 (TLS, ALPN h2) to the backend instead of HTTP/1.1.")
    var http2 = false
    @Option(name: .customLong("proxy-cacert"),
            help: ArgumentHelp("Trust the backend's certificate if a CA in this PEM file signed it.", valueName: "file"))
    var caFile: String?
    @Flag(name: .customLong("proxy-insecure"), help: "Do not verify the backend's certificate.")
    var insecure = false
    @Option(name: .customLong("proxy-forwarded"),
            help: "Forwarded and X-Forwarded-*: append (to the client's), replace (drop the client's), or off.")
    var forwarded = "append"
    @Flag(name: .customLong("proxy-rewrite-host"), help: "Send the backend's host as Host/:authority instead of the client's.")
    var rewriteHost = false
    @Option(name: .customLong("proxy-user-header"),
            help: ArgumentHelp("The header that carries the client certificate's CN.", valueName: "name"))
    var userHeader = "X-Remote-User"
    @Option(name: .customLong("proxy-group-header"),
            help: ArgumentHelp("The header that carries each of the client certificate's O values.", valueName: "name"))
    var groupHeader = "X-Remote-Group"
    @Option(name: .customLong("proxy-timeout"),
            help: ArgumentHelp("Seconds the backend may take to send its response head (then 504).", valueName: "seconds"))
    var timeout = 30.0
    @Option(name: .customLong("proxy-connect-timeout"),
            help: ArgumentHelp("Seconds connecting to the backend may take (then 502).", valueName: "seconds"))
    var connectTimeout = 5.0

    /// Whether the server is a proxy.
    var isEnabled: Bool { !routes.isEmpty || routesFile != nil }

    func validate() throws {
        for route in routes {
            do { _ = try Self.parseRoute(route) } catch { throw ValidationError("\(error)") }
        }
        guard isEnabled else { return }
        if ProxyHeaders.ForwardedMode(rawValue: forwarded) == nil {
            throw ValidationError("--proxy-forwarded must be append, replace or off")
        }
        if HTTPField.Name(userHeader) == nil || HTTPField.Name(groupHeader) == nil {
            throw ValidationError("--proxy-user-header and --proxy-group-header must be header field names")
        }
        for (name, value) in [("--proxy-timeout", timeout), ("--proxy-connect-timeout", connectTimeout)]
            where !(value > 0 && value <= 86_400) {
            throw ValidationError("\(name) must be between 0 and 86400 seconds")
        }
    }

    /// The proxy handler these options describe.
    func handler(backend: String) throws -> ProxyHandler {
        var tls = QUICTLSConfiguration.makeClientConfiguration(applicationProtocols: ["h2"])
        if let caFile { tls.trustRoots = .certificates(.file(caFile)) }
        if insecure { tls.certificateVerification = .insecureNoVerification }
        // validate() refused names that are not field names.
        let names = ProxyHeaders.IdentityFields(user: HTTPField.Name(userHeader) ?? ProxyHeaders.IdentityFields.defaultUser,
                                                group: HTTPField.Name(groupHeader) ?? ProxyHeaders.IdentityFields.defaultGroup)
        let headers = ProxyHeaders(forwarded: ProxyHeaders.ForwardedMode(rawValue: forwarded) ?? .append,
                                   preserveHost: !rewriteHost, identityFields: names)
        var logger = Logger(label: "h3.proxy")
        logger.logLevel = .info
        do {
            return try ProxyHandler(configuration: .init(
                backend: backend, backendProtocol: http2 ? .http2 : .http1, backendTLS: tls, headers: headers,
                connectTimeout: .milliseconds(Int64(connectTimeout * 1000)),
                responseTimeout: .milliseconds(Int64(timeout * 1000))), logger: logger)
        } catch {
            throw ToolError(ToolError.usage, "--proxy \(backend): \(error)")
        }
    }

    /// One route: `URL`, or `[HOST][/PREFIX]=URL`.
    static func parseRoute(_ spec: String) throws(ToolError) -> (host: String?, prefix: String, url: String) {
        var host: String?, prefix = "/", url = spec
        let scheme = spec.range(of: "://")
        if let equals = spec.firstIndex(of: "="), scheme == nil || equals < scheme!.lowerBound {
            let left = String(spec[..<equals])
            url = String(spec[spec.index(after: equals)...])
            if let slash = left.firstIndex(of: "/") {
                host = slash == left.startIndex ? nil : String(left[..<slash])
                prefix = String(left[slash...])
            } else {
                host = left.isEmpty ? nil : left
            }
        }
        let lowered = url.lowercased()
        guard lowered.hasPrefix("http://") || lowered.hasPrefix("https://"), URLComponents(string: url)?.host?.isEmpty == false else {
            throw ToolError(ToolError.usage, "bad proxy route '\(spec)': expected URL or [HOST][/PREFIX]=URL with an http:// or https:// URL")
        }
        if let host, host.isEmpty || host.contains(" ") || host.dropFirst(host.hasPrefix("*.") ? 2 : 0).contains("*") {
            throw ToolError(ToolError.usage, "bad proxy route '\(spec)': the host must be a name or *.domain")
        }
        return (host, prefix, url)
    }

    /// The routes to serve now: `--proxy` values, then the lines of `--proxy-routes`.
    func routeSpecs() throws(ToolError) -> [(host: String?, prefix: String, url: String)] {
        var specs: [(host: String?, prefix: String, url: String)] = []
        for route in routes { specs.append(try Self.parseRoute(route)) }
        if let routesFile {
            guard let text = try? String(contentsOfFile: routesFile, encoding: .utf8) else {
                throw ToolError(ToolError.readError, "cannot read the routes file \(routesFile)")
            }
            for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                let content = line.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
                let spec = content.trimmingCharacters(in: .whitespaces)
                if spec.isEmpty { continue }
                do {
                    specs.append(try Self.parseRoute(spec))
                } catch {
                    throw ToolError(ToolError.usage, "\(routesFile) line \(number + 1): \(error.message)")
                }
            }
        }
        if specs.isEmpty { throw ToolError(ToolError.usage, "no proxy routes") }
        return specs
    }

    /// Routes with their handlers; a backend URL already in `cache` keeps its handler (and its pooled connections).
    func makeRoutes(cache: ProxyHandlerCache) throws -> [ProxyRouter.Route] {
        try routeSpecs().map { spec in
            ProxyRouter.Route(host: spec.host, pathPrefix: spec.prefix,
                              handler: try cache.handler(for: spec.url) { try handler(backend: spec.url) })
        }
    }

    /// A line per route for the log.
    func describeRoutes() -> [String] {
        ((try? routeSpecs()) ?? []).map { "route \($0.host ?? "*")\($0.prefix) -> \($0.url)" }
    }
}

/// Proxy handlers by backend URL, kept across route reloads.
final class ProxyHandlerCache: Sendable {
    private let handlers = NIOLockedValueBox<[String: ProxyHandler]>([:])

    func handler(for url: String, make: () throws -> ProxyHandler) throws -> ProxyHandler {
        if let known = handlers.withLockedValue({ $0[url] }) { return known }
        let made = try make()
        handlers.withLockedValue { $0[url] = made }
        return made
    }
}
