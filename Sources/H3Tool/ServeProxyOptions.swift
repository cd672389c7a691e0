import ArgumentParser
import HTTPProxy
import HTTPTypes
import Logging
import QUIC

/// `h3 serve --proxy URL` and its settings: the server forwards every request to one backend.
struct ServeProxyOptions: ParsableArguments {
    @Option(name: .customLong("proxy"),
            help: ArgumentHelp("Forward every request to this backend (http://host:port or https://host:port).",
                               valueName: "url"))
    var url: String?
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

    func validate() throws {
        guard url != nil else { return }
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
        let names = ProxyHeaders.IdentityFields(user: HTTPField.Name(userHeader) ?? HTTPField.Name("x-remote-user")!,
                                                group: HTTPField.Name(groupHeader) ?? HTTPField.Name("x-remote-group")!)
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
}
