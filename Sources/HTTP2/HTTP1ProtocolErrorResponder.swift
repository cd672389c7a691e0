import NIOCore
import NIOHTTP1

/// Answers a request the HTTP/1.1 parser could not read, then lets the connection close: 431
/// (Request Header Fields Too Large) when the head outgrew the parser's limit, 400 for any
/// other parse error. Only when no response is under way (a response cannot be interrupted).
///
/// Takes the place of NIOHTTP1's `HTTPServerProtocolErrorHandler`, which answers 400 to all.
/// Sits after the codec and the pipelining handler; passes the error on, as that one does.
final class HTTP1ProtocolErrorResponder: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    /// A response head went out and its end has not.
    private var responseUnderWay = false

    /// The status for a parse error: 431 for an oversized head, 400 otherwise.
    static func status(for error: HTTPParserError) -> HTTPResponseStatus {
        error == .headerOverflow ? .requestHeaderFieldsTooLarge : .badRequest
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let error = error as? HTTPParserError, !responseUnderWay {
            let headers = HTTPHeaders([("connection", "close"), ("content-length", "0")])
            let head = HTTPResponseHead(version: .http1_1, status: Self.status(for: error), headers: headers)
            context.write(wrapOutboundOut(.head(head)), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
        // The decoder closes the connection after a parse error; others downstream may log it.
        context.fireErrorCaught(error)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(let head) where head.status.code >= 200: responseUnderWay = true
        case .end: responseUnderWay = false
        case .head, .body: break
        }
        context.write(data, promise: promise)
    }
}

@available(*, unavailable)
extension HTTP1ProtocolErrorResponder: Sendable {}
