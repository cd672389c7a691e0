import HTTPTypes

/// What running a handler needs from a transport's response sink.
package protocol HandlerResponseSink: HTTPResponseSink {
    /// Whether the final response head has gone out.
    var headSent: Bool { get }
    /// Whether the response is complete (or abandoned).
    var finished: Bool { get }
    /// The final response's status code, once its head has gone out (for the servers' metrics).
    var responseStatus: Int? { get }
    /// Ends the response abnormally (HTTP/3 and HTTP/2: the stream is reset; HTTP/1.1: the
    /// connection is closed).
    func abort() async
}

extension HTTPHandler {
    /// Runs the handler for one request, the same way on every transport (HTTP/3, HTTP/2,
    /// HTTP/1.1, and so ``HTTPServer``): the response is finished if the handler left it open;
    /// a handler that throws before the head yields a 500 with an empty body; one that throws
    /// after the head has its response aborted. `onError` hears the handler's error (to log it).
    package func run(_ request: HTTPRequest, body: HTTPBody, context: HTTPRequestContext,
                     sink: some HandlerResponseSink, onError: (any Error) -> Void) async {
        do {
            try await handle(request, body: body, context: context, response: HTTPResponseWriter(sink: sink))
            try await sink.finish(trailers: nil)
        } catch {
            onError(error)
            if !sink.headSent {
                var response = HTTPResponse(status: .internalServerError)
                response.headerFields[.contentLength] = "0"
                do {
                    try await sink.writeHead(response)
                    try await sink.finish(trailers: nil)
                } catch {
                    await sink.abort()
                }
            } else if !sink.finished {
                await sink.abort()
            }
        }
    }
}
