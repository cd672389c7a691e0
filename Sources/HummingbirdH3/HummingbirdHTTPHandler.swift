import HTTPAPI
import HTTPTypes
import Hummingbird
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// A Hummingbird 2 responder (a `Router`, its middleware included) as an ``HTTPHandler``: the
/// same routes then run on ``HTTPServer`` (HTTP/3, HTTP/2 and HTTP/1.1 on one port),
/// ``HTTP3Server`` or ``HTTP2Server``.
///
/// Request and response bodies stream both ways with backpressure. Each request's context is
/// made from an `ApplicationRequestContextSource`, as Hummingbird's own server makes it: its
/// `channel` is the server's socket channel (HTTP/3 has no channel per connection), so read the
/// client's address, the protocol and TLS facts from ``HummingbirdH3/requestContext`` instead.
public struct HummingbirdHTTPHandler<Responder: HTTPResponder>: HTTPHandler
where Responder.Context: InitializableFromSource<ApplicationRequestContextSource> {
    let responder: Responder
    let logger: Logger
    let channel: ChannelSlot

    /// Wraps a responder; `channel` becomes the request contexts' channel once it is known
    /// (``HTTPServer/bind(configuration:responder:socketOptions:eventLoopGroup:logger:)`` fills it in).
    init(responder: Responder, logger: Logger, channel: ChannelSlot) {
        self.responder = responder
        self.logger = logger
        self.channel = channel
    }

    /// Wraps a responder for any server of this package; `channel` is what request contexts
    /// get as their channel (such as the server's socket channel).
    public init(responder: Responder, channel: any Channel, logger: Logger = Logger(label: "swift-h3.hummingbird")) {
        let slot = ChannelSlot(eventLoop: channel.eventLoop)
        slot.fill(channel)
        self.init(responder: responder, logger: logger, channel: slot)
    }

    /// Runs the Hummingbird responder for one request and writes its response.
    public func handle(_ request: HTTPRequest, body: HTTPBody, context: HTTPRequestContext,
                       response: HTTPResponseWriter) async throws {
        let channel = try await self.channel.channel()
        var logger = self.logger
        logger[metadataKey: "hb.request.id"] = .stringConvertible(RequestID())
        if let remote = context.remoteAddress { logger[metadataKey: "remote"] = .string(remote) }
        let hbRequest = Request(head: request, body: RequestBody(asyncSequence: body))
        let hbContext = Responder.Context(source: ApplicationRequestContextSource(channel: channel, logger: logger))
        var hbResponse: Response
        do {
            hbResponse = try await HummingbirdH3.$requestContext.withValue(context) {
                try await responder.respond(to: hbRequest, context: hbContext)
            }
        } catch {
            // As Hummingbird's Application does with an error no middleware turned into a response.
            logger.debug("unrecognised error", metadata: ["error": "\(error)"])
            hbResponse = Response(status: .internalServerError, body: .init())
        }
        if hbResponse.headers[.contentLength] == nil, let length = hbResponse.body.contentLength {
            hbResponse.headers[.contentLength] = String(length)
        }
        try await response.writeHead(hbResponse.head)
        try await hbResponse.body.write(ResponseBodyAdapter(response: response))
    }
}

/// Facts about the request being handled that Hummingbird's context does not carry.
public enum HummingbirdH3 {
    /// The transport's view of the request being handled (protocol version, client address, TLS
    /// server name, client certificate, 0-RTT), set while a ``HummingbirdHTTPHandler`` runs the
    /// responder.
    @TaskLocal public static var requestContext: HTTPRequestContext?
}

/// Hummingbird's response body writer over our response writer.
struct ResponseBodyAdapter: ResponseBodyWriter {
    let response: HTTPResponseWriter

    mutating func write(_ buffer: ByteBuffer) async throws {
        try await response.write(buffer)
    }

    consuming func finish(_ trailingHeaders: HTTPFields?) async throws {
        try await response.finish(trailers: trailingHeaders)
    }
}

/// The channel given to request contexts, known only once the server is bound.
final class ChannelSlot: Sendable {
    private let promise: EventLoopPromise<any Channel>

    init(eventLoop: any EventLoop) {
        promise = eventLoop.makePromise()
    }

    func fill(_ channel: any Channel) { promise.succeed(channel) }
    func fail(_ error: any Error) { promise.fail(error) }
    func channel() async throws -> any Channel { try await promise.futureResult.get() }
}
