import Foundation
import HTTP2
import HTTP3
import HTTPAPI
import HTTPTypes
import Logging
import NIOConcurrencyHelpers
import QUIC

/// A client that chooses between HTTP/3 and HTTP/2 the way browsers and curl do.
///
/// - ``Mode/altSvcDiscovery`` (the default): start on HTTP/2; once a response advertises
///   HTTP/3 (`Alt-Svc: h3=":443"`), race QUIC to the alternative against the HTTP/2
///   connection and move there; fall back to HTTP/2 when HTTP/3 fails, and do not try that
///   alternative again for a while.
/// - ``Mode/race`` (curl's `--http3`): start QUIC; start TCP after ``Configuration/raceDelay``
///   unless QUIC is up (or at once when QUIC fails); the first connection up carries the request.
///   A QUIC attempt that loses goes on in the background: if it connects, later requests use it;
///   if it fails, HTTP/3 is marked broken for the origin.
/// - ``Mode/http3Only`` and ``Mode/http2Only``: one protocol.
///
/// ``events`` (and ``recordedEvents()``) tell what happened: attempts, their outcomes, Alt-Svc
/// learned, fallbacks.
public final class HTTPClient: HTTPRoundTripper {
    /// How the client picks a protocol.
    public enum Mode: String, Sendable, Hashable, CaseIterable {
        /// HTTP/3 only (to the origin, or to an HTTP/3 alternative from the Alt-Svc cache).
        case http3Only
        /// HTTP/2 only; Alt-Svc is ignored.
        case http2Only
        /// Race HTTP/3 against HTTP/2 (happy eyeballs), as curl's `--http3`.
        case race
        /// Start on HTTP/2 and move to HTTP/3 once advertised by Alt-Svc, as browsers do.
        case altSvcDiscovery
    }

    /// Client settings.
    public struct Configuration: Sendable {
        /// How the client picks a protocol.
        public var mode: Mode
        /// How long QUIC has before a TCP attempt starts beside it.
        public var raceDelay: Duration
        /// How long a failed HTTP/3 endpoint is avoided after its first failure (it doubles
        /// with each further failure, up to ``brokenMaxDelay``).
        public var brokenInitialDelay: Duration
        /// The longest an HTTP/3 endpoint is avoided.
        public var brokenMaxDelay: Duration
        /// Where the Alt-Svc cache is loaded from at start and saved to by ``saveAltSvcCache()``
        /// and ``shutdown()`` (curl's file format); `nil` keeps it in memory.
        public var altSvcCacheFile: String?
        /// The most events kept for ``recordedEvents()``.
        public var maxRecordedEvents: Int
        /// The current time in seconds since 1970 (for Alt-Svc expiry and broken back-off);
        /// tests may move it.
        public var now: @Sendable () -> Double

        /// Creates settings.
        public init(mode: Mode = .altSvcDiscovery, raceDelay: Duration = .milliseconds(250),
                    brokenInitialDelay: Duration = .seconds(300), brokenMaxDelay: Duration = .seconds(172_800),
                    altSvcCacheFile: String? = nil, maxRecordedEvents: Int = 1000,
                    now: @escaping @Sendable () -> Double = { Date().timeIntervalSince1970 }) {
            self.mode = mode
            self.raceDelay = raceDelay
            self.brokenInitialDelay = brokenInitialDelay
            self.brokenMaxDelay = brokenMaxDelay
            self.altSvcCacheFile = altSvcCacheFile
            self.maxRecordedEvents = max(1, maxRecordedEvents)
            self.now = now
        }
    }

    /// Where an origin's requests go now.
    enum Route: Hashable {
        /// HTTP/3 to this endpoint worked.
        case http3(Endpoint)
        /// HTTP/2 (a race was lost by QUIC, or there is no HTTP/3 endpoint).
        case http2
    }

    /// A host and port.
    struct Endpoint: Hashable, Sendable, CustomStringConvertible {
        let host: String
        let port: Int
        var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
    }

    struct State {
        var cache: AltSvcCache
        var broken: BrokenAlternatives
        var routes: [AltSvcOrigin: Route] = [:]
        /// QUIC connection attempts under way, shared by every request that waits on one.
        var quicAttempts: [Endpoint: Task<Result<Void, any Error>, Never>] = [:]
        var events: [HTTPClientEvent] = []
    }

    /// The settings in use.
    public let configuration: Configuration
    let http3: HTTP3Transport
    let http2: (any PreconnectingRoundTripper)?
    let logger: Logger
    private let state: NIOLockedValueBox<State>
    private let eventContinuation: AsyncStream<HTTPClientEvent>.Continuation
    /// Every event as it happens (the newest 1,000 are buffered for a slow reader).
    public let events: AsyncStream<HTTPClientEvent>
    /// Why the Alt-Svc cache file was not loaded, if it was not (the cache then starts empty).
    public let altSvcCacheLoadError: AltSvcCacheFileError?

    /// Creates a client over an HTTP/3 transport and an HTTP/2 one (`nil`: HTTP/3 only, and
    /// every mode but ``Mode/http3Only`` fails requests that need HTTP/2).
    public init(configuration: Configuration = Configuration(), http3: HTTP3Transport,
                http2: (any PreconnectingRoundTripper)?, logger: Logger = Logger(label: "swift-h3.client")) {
        self.configuration = configuration
        self.http3 = http3
        self.http2 = http2
        self.logger = logger
        let initialDelay = Double(configuration.brokenInitialDelay.components.seconds)
            + Double(configuration.brokenInitialDelay.components.attoseconds) / 1e18
        let maxDelay = Double(configuration.brokenMaxDelay.components.seconds)
        var cache = AltSvcCache()
        var loadError: AltSvcCacheFileError?
        if let path = configuration.altSvcCacheFile, configuration.mode != .http2Only {
            do {
                try AltSvcCacheFile.load(path, into: &cache, now: configuration.now())
            } catch {
                loadError = error
            }
        }
        altSvcCacheLoadError = loadError
        state = NIOLockedValueBox(State(cache: cache, broken: BrokenAlternatives(initialDelay: initialDelay, maxDelay: maxDelay)))
        (events, eventContinuation) = AsyncStream.makeStream(of: HTTPClientEvent.self, bufferingPolicy: .bufferingNewest(1000))
    }

    /// Creates a client with its own HTTP/3 and HTTP/2 transports sharing `tls` (verification
    /// on by default; the ALPN lists are set per transport) and `resolve` (curl's `--resolve`:
    /// `"host:port" -> "address"`).
    public convenience init(configuration: Configuration = Configuration(),
                            tls: QUICTLSConfiguration = .makeClientConfiguration(applicationProtocols: ["h3"]),
                            resolve: [String: String] = [:], logger: Logger = Logger(label: "swift-h3.client")) {
        self.init(configuration: configuration,
                  http3: HTTP3Transport(configuration: .init(tls: tls, resolve: resolve)),
                  http2: HTTP2Transport(configuration: .init(tls: tls, resolve: resolve)), logger: logger)
    }

    /// The events so far (the newest ``Configuration/maxRecordedEvents``).
    public func recordedEvents() -> [HTTPClientEvent] {
        state.withLockedValue { $0.events }
    }

    /// The HTTP/3 alternatives the client knows for `host:port`, as `host:port` strings.
    public func knownAlternatives(host: String, port: Int) -> [String] {
        let now = configuration.now()
        return state.withLockedValue { state in
            state.cache.alternatives(for: AltSvcOrigin(host: host, port: port), now: now)
                .map { Endpoint(host: $0.host, port: $0.port).description }
        }
    }

    /// Writes the Alt-Svc cache to ``Configuration/altSvcCacheFile`` (no-op without one, and
    /// in ``Mode/http2Only``).
    public func saveAltSvcCache() throws {
        guard let path = configuration.altSvcCacheFile, configuration.mode != .http2Only else { return }
        let cache = state.withLockedValue { $0.cache }
        try AltSvcCacheFile.save(cache, to: path, now: configuration.now())
    }

    /// Saves the Alt-Svc cache (when configured and `savingAltSvcCache`) and closes every connection.
    public func shutdown(savingAltSvcCache: Bool = true) async {
        if savingAltSvcCache {
            do {
                try saveAltSvcCache()
            } catch {
                logger.warning("could not save the Alt-Svc cache", metadata: ["error": "\(error)"])
            }
        }
        eventContinuation.finish()
        await http3.shutdown()
        await http2?.shutdown()
    }

    public func roundTrip(_ request: HTTPRequest, body: HTTPBody?, options: HTTPRequestOptions) async throws -> HTTPClientResponse {
        let origin = try Self.origin(of: request)
        switch configuration.mode {
        case .http2Only:
            return try await viaHTTP2(request, body: body, options: options, origin: origin)
        case .http3Only:
            let endpoint = h3Endpoint(for: origin) ?? Endpoint(host: origin.host, port: origin.port)
            return try await viaHTTP3(request, body: body, options: options, origin: origin, endpoint: endpoint)
        case .race, .altSvcDiscovery:
            break
        }
        guard http2 != nil else {
            // Nothing to fall back to: HTTP/3 it is.
            let endpoint = h3Endpoint(for: origin) ?? Endpoint(host: origin.host, port: origin.port)
            return try await viaHTTP3(request, body: body, options: options, origin: origin, endpoint: endpoint)
        }
        guard let endpoint = h3Endpoint(for: origin) else {
            return try await viaHTTP2(request, body: body, options: options, origin: origin)
        }
        let route = state.withLockedValue { $0.routes[origin] }
        switch route {
        case .http3(let working) where working == endpoint:
            return try await viaHTTP3WithFallback(request, body: body, options: options, origin: origin, endpoint: endpoint)
        case .http2?, .http3?:
            // HTTP/2 carries the requests; QUIC is tried again in the background (its broken
            // period is over, or the alternative changed), and takes over once it connects.
            _ = startQUICAttempt(origin: origin, endpoint: endpoint)
            return try await viaHTTP2(request, body: body, options: options, origin: origin)
        case nil:
            switch try await race(origin: origin, endpoint: endpoint) {
            case .http3:
                return try await viaHTTP3WithFallback(request, body: body, options: options, origin: origin, endpoint: endpoint)
            case .http2:
                return try await viaHTTP2(request, body: body, options: options, origin: origin)
            }
        }
    }

    // MARK: - Choosing

    /// The HTTP/3 endpoint to use for `origin`: its first unbroken Alt-Svc alternative, else
    /// (race and HTTP/3-only modes) the origin itself unless broken.
    func h3Endpoint(for origin: AltSvcOrigin) -> Endpoint? {
        let now = configuration.now()
        let mode = configuration.mode
        return state.withLockedValue { state -> Endpoint? in
            for alternative in state.cache.alternatives(for: origin, now: now) where alternative.protocolID == "h3" {
                let key = BrokenAlternatives.Key(protocolID: "h3", host: alternative.host, port: alternative.port)
                if !state.broken.isBroken(key, now: now) { return Endpoint(host: alternative.host, port: alternative.port) }
            }
            switch mode {
            case .http3Only:
                return Endpoint(host: origin.host, port: origin.port)
            case .race:
                let key = BrokenAlternatives.Key(protocolID: "h3", host: origin.host, port: origin.port)
                return state.broken.isBroken(key, now: now) ? nil : Endpoint(host: origin.host, port: origin.port)
            case .http2Only, .altSvcDiscovery:
                return nil
            }
        }
    }

    enum Winner { case http3, http2 }

    private enum RaceStep {
        case quic(Result<Void, any Error>)
        case timer
        case tcp(Result<Void, any Error>)
    }

    /// Happy eyeballs: QUIC first, TCP after the race delay (or at once when QUIC fails); the
    /// first connection up wins. The QUIC attempt is not cancelled when TCP wins.
    func race(origin: AltSvcOrigin, endpoint: Endpoint) async throws -> Winner {
        guard let http2 else { throw HTTPError.invalidRequest("no HTTP/2 transport to race against") }
        let (steps, continuation) = AsyncStream.makeStream(of: RaceStep.self)
        // Join an attempt under way (a concurrent request started it) or start one.
        let attempt = startQUICAttempt(origin: origin, endpoint: endpoint)
        Task { continuation.yield(.quic(await attempt.value)) }
        let delay = configuration.raceDelay
        let timer = Task {
            try? await Task.sleep(for: delay)
            continuation.yield(.timer)
        }
        defer {
            timer.cancel()
            continuation.finish()
        }
        var tcpStarted = false
        var quicError: (any Error)?
        var tcpError: (any Error)?
        let tcpEndpoint = Endpoint(host: origin.host, port: origin.port).description
        func startTCP() {
            tcpStarted = true
            record(.tcpStarted(endpoint: tcpEndpoint))
            Task {
                do {
                    try await http2.prepareConnection(host: origin.host, port: origin.port)
                    self.record(.tcpConnected(endpoint: tcpEndpoint))
                    continuation.yield(.tcp(.success(())))
                } catch {
                    self.record(.tcpFailed(endpoint: tcpEndpoint, reason: "\(error)"))
                    continuation.yield(.tcp(.failure(error)))
                }
            }
        }
        for await step in steps {
            switch step {
            case .quic(.success):
                return .http3
            case .quic(.failure(let error)):
                quicError = error
                if let tcpError { throw tcpError }
                if !tcpStarted { startTCP() }
            case .timer:
                if !tcpStarted { startTCP() }
            case .tcp(.success):
                state.withLockedValue { state in
                    if state.routes[origin] == nil { state.routes[origin] = .http2 }
                }
                return state.withLockedValue { $0.routes[origin] } == .http3(endpoint) ? .http3 : .http2
            case .tcp(.failure(let error)):
                if quicError != nil { throw error }
                tcpError = error
            }
        }
        throw CancellationError()
    }

    /// Starts a background QUIC connection to `endpoint` (or returns the one under way);
    /// records its outcome, the route and a broken mark. Requests racing it await the task.
    private func startQUICAttempt(origin: AltSvcOrigin, endpoint: Endpoint) -> Task<Result<Void, any Error>, Never> {
        let alternative = endpoint.host == origin.host && endpoint.port == origin.port ? nil : (host: endpoint.host, port: endpoint.port)
        let http3 = self.http3
        // The task waits until it is registered (or finds another attempt was first), so that it
        // never finishes before its registration.
        let (registered, registration) = AsyncStream.makeStream(of: Bool.self)
        let task = Task { () -> Result<Void, any Error> in
            var go = false
            for await decision in registered {
                go = decision
                break
            }
            guard go else { return .failure(CancellationError()) }
            do {
                try await http3.prepareConnection(host: origin.host, port: origin.port, alternative: alternative)
                state.withLockedValue { state in
                    state.quicAttempts[endpoint] = nil
                    state.routes[origin] = .http3(endpoint)
                    state.broken.markWorking(BrokenAlternatives.Key(protocolID: "h3", host: endpoint.host, port: endpoint.port))
                }
                record(.quicConnected(endpoint: endpoint.description))
                return .success(())
            } catch {
                record(.quicFailed(endpoint: endpoint.description, reason: "\(error)"))
                markBroken(origin: origin, endpoint: endpoint)
                return .failure(error)
            }
        }
        let (attempt, isNew) = state.withLockedValue { state in
            if let existing = state.quicAttempts[endpoint] { return (existing, false) }
            state.quicAttempts[endpoint] = task
            return (task, true)
        }
        if isNew { record(.quicStarted(endpoint: endpoint.description)) }
        registration.yield(isNew)
        registration.finish()
        return attempt
    }

    private func markBroken(origin: AltSvcOrigin, endpoint: Endpoint) {
        let now = configuration.now()
        let seconds = state.withLockedValue { state -> Double in
            state.quicAttempts[endpoint] = nil
            if state.routes[origin] == .http3(endpoint) { state.routes[origin] = nil }
            return state.broken.markBroken(BrokenAlternatives.Key(protocolID: "h3", host: endpoint.host, port: endpoint.port),
                                           now: now)
        }
        record(.alternativeMarkedBroken(endpoint: endpoint.description, seconds: seconds))
    }

    // MARK: - Sending

    private func viaHTTP3WithFallback(_ request: HTTPRequest, body: HTTPBody?, options: HTTPRequestOptions,
                                      origin: AltSvcOrigin, endpoint: Endpoint) async throws -> HTTPClientResponse {
        do {
            return try await viaHTTP3(request, body: body, options: options, origin: origin, endpoint: endpoint)
        } catch let error as HTTPError where Self.isConnectionFailure(error) && Self.isReplayable(body) && http2 != nil {
            markBroken(origin: origin, endpoint: endpoint)
            record(.fellBack(origin: origin.description, reason: "\(error)"))
            return try await viaHTTP2(request, body: body, options: options, origin: origin)
        }
    }

    private func viaHTTP3(_ request: HTTPRequest, body: HTTPBody?, options: HTTPRequestOptions, origin: AltSvcOrigin,
                          endpoint: Endpoint) async throws -> HTTPClientResponse {
        let direct = endpoint.host == origin.host && endpoint.port == origin.port
        let response = try await http3.roundTrip(request, body: body, options: options,
                                                 alternative: direct ? nil : (host: endpoint.host, port: endpoint.port))
        record(.responseReceived(origin: origin.description, protocolVersion: response.metadata.protocolVersion))
        learn(from: response, origin: origin)
        return response
    }

    private func viaHTTP2(_ request: HTTPRequest, body: HTTPBody?, options: HTTPRequestOptions,
                          origin: AltSvcOrigin) async throws -> HTTPClientResponse {
        guard let http2 else { throw HTTPError.invalidRequest("this client has no HTTP/2 transport") }
        let response = try await http2.roundTrip(request, body: body, options: options)
        if !response.metadata.connectionReused { record(.tcpConnected(endpoint: origin.description)) }
        record(.responseReceived(origin: origin.description, protocolVersion: response.metadata.protocolVersion))
        learn(from: response, origin: origin)
        return response
    }

    /// Applies the response's Alt-Svc fields to the cache (not in HTTP/2-only mode).
    private func learn(from response: HTTPClientResponse, origin: AltSvcOrigin) {
        guard configuration.mode != .http2Only else { return }
        let values = response.head.headerFields[values: .altSvc]
        guard !values.isEmpty else { return }
        let combined = values.joined(separator: ", ")
        do {
            let field = try AltSvcField.parse(combined)
            let now = configuration.now()
            state.withLockedValue { $0.cache.update(origin: origin, with: field, now: now) }
            record(.altSvcReceived(origin: origin.description, value: combined))
        } catch {
            record(.altSvcIgnored(origin: origin.description, reason: error.description))
        }
    }

    func record(_ event: HTTPClientEvent) {
        let limit = configuration.maxRecordedEvents
        state.withLockedValue { state in
            state.events.append(event)
            if state.events.count > limit { state.events.removeFirst(state.events.count - limit) }
        }
        eventContinuation.yield(event)
        logger.debug("\(event)")
    }

    // MARK: - Helpers

    static func origin(of request: HTTPRequest) throws(HTTPError) -> AltSvcOrigin {
        if let scheme = request.scheme, scheme.lowercased() != "https" {
            throw .invalidRequest("only https URLs are supported, not \(scheme)")
        }
        guard let authority = request.authority, !authority.isEmpty else {
            throw .invalidRequest("the request has no authority (host)")
        }
        var host = Substring(authority)
        var port = 443
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else { throw .invalidRequest("bad IPv6 authority \(authority)") }
            let rest = host[host.index(after: close)...]
            host = host[host.index(after: host.startIndex)..<close]
            if rest.hasPrefix(":") {
                guard let value = Int(rest.dropFirst()), (1...65535).contains(value) else { throw .invalidRequest("bad port in \(authority)") }
                port = value
            }
        } else if let colon = host.lastIndex(of: ":") {
            guard let value = Int(host[host.index(after: colon)...]), (1...65535).contains(value) else {
                throw .invalidRequest("bad port in \(authority)")
            }
            port = value
            host = host[..<colon]
        }
        guard !host.isEmpty else { throw .invalidRequest("empty host in \(authority)") }
        return AltSvcOrigin(host: String(host), port: port)
    }

    /// Errors that mean HTTP/3 did not get the request to the server at all.
    static func isConnectionFailure(_ error: HTTPError) -> Bool {
        switch error {
        case .connectionRefused, .unresolvableHost, .connectTimeout, .tlsHandshakeFailed, .certificateVerificationFailed:
            return true
        default:
            return false
        }
    }

    static func isReplayable(_ body: HTTPBody?) -> Bool {
        switch body?.storage {
        case .none, .bytes: return true
        case .source, .sequence: return false
        }
    }
}
