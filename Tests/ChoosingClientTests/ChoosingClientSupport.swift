import ChoosingClient
import Foundation
import HTTP2
import HTTP3
import HTTPAPI
import HTTPServer
import HTTPTypes
import NIOConcurrencyHelpers
import NIOCore
import QUIC
import QUICTestSupport

/// An HTTP/2 side that answers every request itself (status 200, body "h2 <path>") with a
/// given Alt-Svc field, for the cases a real server would not produce (a malformed field).
final class StandInHTTP2Transport: PreconnectingRoundTripper {
    struct Counters { var prepared = 0; var requests = 0; var connected = false }
    let altSvc: String?
    let counters = NIOLockedValueBox(Counters())

    init(altSvc: String?) { self.altSvc = altSvc }

    func prepareConnection(host: String, port: Int) async throws {
        counters.withLockedValue { $0.prepared += 1; $0.connected = true }
    }

    func roundTrip(_ request: HTTPRequest, body: HTTPBody?, options: HTTPRequestOptions) async throws -> HTTPClientResponse {
        let reused = counters.withLockedValue { counters -> Bool in
            counters.requests += 1
            defer { counters.connected = true }
            return counters.connected
        }
        var head = HTTPResponse(status: .ok)
        if let altSvc { head.headerFields[HTTPField.Name("alt-svc")!] = altSvc }
        return HTTPClientResponse(head: head, body: HTTPBody(string: "h2 \(request.path ?? "")"),
                                  metadata: HTTPResponseMetadata(protocolVersion: .http2, connectionReused: reused))
    }

    func shutdown() async {}
}

/// A UDP port that swallows every datagram: QUIC to it neither connects nor is refused.
final class UDPBlackhole {
    let descriptor: Int32
    let port: Int

    init() throws {
        let descriptor = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) }
        }
        guard descriptor >= 0, bound == 0, named == 0 else {
            close(descriptor)
            throw TestError("cannot bind a UDP blackhole")
        }
        self.descriptor = descriptor
        port = Int(UInt16(bigEndian: address.sin_port))
    }

    deinit { close(descriptor) }
}

/// A free UDP port with nothing bound to it (the kernel answers ICMP port unreachable).
func closedUDPPort() throws -> Int {
    let hole = try UDPBlackhole()
    return hole.port  // closed again when `hole` goes away
}

struct TestError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A clock the test moves by hand.
final class ManualClock: Sendable {
    private let seconds = NIOLockedValueBox(1_800_000_000.0)
    var now: Double { seconds.withLockedValue { $0 } }
    func advance(_ by: Double) { seconds.withLockedValue { $0 += by } }
}

/// An HTTP/3 transport that trusts the test CA; `localhost` goes to 127.0.0.1.
func testHTTP3Transport(port: Int, handshakeTimeout: Duration = .seconds(10)) -> HTTP3Transport {
    var configuration = HTTP3Transport.Configuration(tls: TestPKI.shared.clientTLS(alpn: ["h3"]),
                                                     resolve: ["localhost:\(port)": "127.0.0.1"])
    configuration.quic.handshakeTimeout = handshakeTimeout
    return HTTP3Transport(configuration: configuration)
}

/// Answers every request with `h<version> <path>`: which protocol the server saw.
let versionHandler = ClosureHTTPHandler { request, _, context, response in
    try await response.respond(HTTPResponse(status: .ok),
                               body: ByteBuffer(string: "h\(context.protocolVersion.rawValue) \(request.path ?? "")"))
}

/// HTTP/3 (UDP) and HTTP/2 (TCP) on one port of 127.0.0.1; TCP responses advertise HTTP/3 with Alt-Svc.
func startCombinedServer() async throws -> HTTPServer {
    try await HTTPServer.bind(configuration: HTTPServerConfiguration(host: "127.0.0.1", port: 0,
                                                                      tls: TestPKI.shared.serverTLS(alpn: ["h2"]), altSvcMaxAge: 600),
                              handler: versionHandler)
}

/// An HTTP/2 server alone on TCP `port` of 127.0.0.1 (no Alt-Svc).
func startHTTP2Server(port: Int) async throws -> HTTP2Server {
    try await HTTP2Server.bind(configuration: HTTP2ServerConfiguration(host: "127.0.0.1", port: port,
                                                                       tls: TestPKI.shared.serverTLS(alpn: ["h2"])),
                               handler: versionHandler)
}

/// An HTTP/2 transport that trusts the test CA; `localhost` goes to 127.0.0.1.
func testHTTP2Transport(port: Int) -> HTTP2Transport {
    HTTP2Transport(configuration: .init(tls: TestPKI.shared.clientTLS(alpn: ["h2"]), resolve: ["localhost:\(port)": "127.0.0.1"]))
}

/// A UDP port that swallows every datagram with an HTTP/2 server on the same TCP port (the
/// server's UDP side "not running" behind a firewall that drops UDP).
func blackholedHTTP2Server() async throws -> (UDPBlackhole, HTTP2Server) {
    for _ in 0..<10 {
        let hole = try UDPBlackhole()
        if let server = try? await startHTTP2Server(port: hole.port) { return (hole, server) }
    }
    throw TestError("no port free on both UDP and TCP")
}

func get(_ client: HTTPClient, _ authority: String, _ path: String) async throws -> (HTTPProtocolVersion, String) {
    let response = try await client.roundTrip(HTTPRequest(method: .get, scheme: "https", authority: authority, path: path))
    return (response.metadata.protocolVersion, String(buffer: try await response.body.collect(upTo: 1 << 16)))
}

/// Reads the client's events until one matches, failing after `seconds`.
func waitForEvent(_ client: HTTPClient, seconds: Double, _ match: @escaping @Sendable (HTTPClientEvent) -> Bool) async throws {
    try await withTimeout(seconds) {
        while !client.recordedEvents().contains(where: match) {
            try await Task.sleep(for: .milliseconds(20))
        }
    }
}

extension HTTPClientEvent {
    var isQUICStarted: Bool { if case .quicStarted = self { return true } else { return false } }
    var isQUICFailed: Bool { if case .quicFailed = self { return true } else { return false } }
    var isTCPConnected: Bool { if case .tcpConnected = self { return true } else { return false } }
    var isBrokenMark: Bool { if case .alternativeMarkedBroken = self { return true } else { return false } }
    var isFallback: Bool { if case .fellBack = self { return true } else { return false } }
    func isResponse(_ version: HTTPProtocolVersion) -> Bool {
        if case .responseReceived(_, let seen) = self { return seen == version } else { return false }
    }
}
