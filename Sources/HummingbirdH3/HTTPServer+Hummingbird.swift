import HTTP2
import HTTP3
import HTTPAPI
import HTTPServer
import Hummingbird
import Logging
import NIOCore
import NIOPosix
import QUICSocket

extension HTTPServer {
    /// Serves a Hummingbird responder over HTTP/3 (UDP) and HTTP/2 + HTTP/1.1 (TCP) on one port,
    /// TCP responses advertising HTTP/3 with `Alt-Svc`.
    ///
    /// ```swift
    /// let router = Router()                       // the application's router, unchanged
    /// router.middlewares.add(LogRequestsMiddleware(.info))
    /// router.get("hello") { _, _ in "hello" }
    /// let server = try await HTTPServer.bind(configuration: configuration, responder: router.buildResponder())
    /// try await ServiceGroup(services: [server], gracefulShutdownSignals: [.sigterm], logger: logger).run()
    /// ```
    ///
    /// The returned server is a swift-service-lifecycle `Service`: add it to the group in place
    /// of Hummingbird's `Application` (whose server only accepts TCP connections).
    public static func bind<Responder: HTTPResponder>(
        configuration: HTTPServerConfiguration, responder: Responder,
        socketOptions: UDPSocketOptions = .init(),
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "swift-h3.hummingbird")
    ) async throws -> HTTPServer where Responder.Context: InitializableFromSource<ApplicationRequestContextSource> {
        let slot = ChannelSlot(eventLoop: eventLoopGroup.next())
        let handler = HummingbirdHTTPHandler(responder: responder, logger: logger, channel: slot)
        do {
            let server = try await HTTPServer.bind(configuration: configuration, handler: handler,
                                                   socketOptions: socketOptions, eventLoopGroup: eventLoopGroup,
                                                   logger: logger)
            slot.fill(server.http3.socketChannel)
            return server
        } catch {
            slot.fail(error)
            throw error
        }
    }
}

extension HTTP3Server {
    /// Serves a Hummingbird responder over HTTP/3 alone.
    public static func bind<Responder: HTTPResponder>(
        configuration: HTTP3ServerConfiguration, responder: Responder,
        socketOptions: UDPSocketOptions = .init(),
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "swift-h3.hummingbird")
    ) async throws -> HTTP3Server where Responder.Context: InitializableFromSource<ApplicationRequestContextSource> {
        let slot = ChannelSlot(eventLoop: eventLoopGroup.next())
        let handler = HummingbirdHTTPHandler(responder: responder, logger: logger, channel: slot)
        do {
            let server = try await HTTP3Server.bind(configuration: configuration, handler: handler,
                                                    socketOptions: socketOptions, eventLoopGroup: eventLoopGroup,
                                                    logger: logger)
            slot.fill(server.socketChannel)
            return server
        } catch {
            slot.fail(error)
            throw error
        }
    }
}
