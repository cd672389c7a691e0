import HTTPAPI
import HTTPTypes
import NIOCore
import NIOConcurrencyHelpers
import Testing

/// The servers' one policy for running a handler, against a sink that records what it is told.
@Suite("Running a handler (500 before the head, abort after)")
struct HandlerRunnerTests {
    /// Records the calls a transport's sink would turn into frames.
    final class RecordingSink: HandlerResponseSink, Sendable {
        struct State {
            var events: [String] = []
            var headSent = false
            var finished = false
            var responseStatus: Int?
        }
        let state = NIOLockedValueBox(State())
        let failsHead: Bool

        init(failsHead: Bool = false) {
            self.failsHead = failsHead
        }

        var events: [String] { state.withLockedValue { $0.events } }
        var headSent: Bool { state.withLockedValue { $0.headSent } }
        var finished: Bool { state.withLockedValue { $0.finished } }
        var responseStatus: Int? { state.withLockedValue { $0.responseStatus } }

        func writeHead(_ head: HTTPResponse) async throws {
            if failsHead { throw HTTPError.connectionClosed("gone") }
            state.withLockedValue {
                $0.events.append("head \(head.status.code) length=\(head.headerFields[.contentLength] ?? "-")")
                $0.headSent = true
                $0.responseStatus = head.status.code
            }
        }

        func writeBody(_ buffer: ByteBuffer) async throws {
            state.withLockedValue { $0.events.append("body \(buffer.readableBytes)") }
        }

        func finish(trailers: HTTPFields?) async throws {
            state.withLockedValue {
                if !$0.finished { $0.events.append("finish") }
                $0.finished = true
            }
        }

        func abort() async {
            state.withLockedValue {
                $0.events.append("abort")
                $0.finished = true
            }
        }
    }

    struct Failure: Error {}

    enum Behaviour: String, CaseIterable, Sendable {
        case answers, leavesOpen, throwsBeforeHead, throwsAfterHead, throwsAfterFinish
    }

    @Test("Each way a handler can end", arguments: Behaviour.allCases)
    func policy(_ behaviour: Behaviour) async {
        let handler = ClosureHTTPHandler { _, _, _, response in
            switch behaviour {
            case .answers:
                try await response.writeHead(HTTPResponse(status: .ok))
                try await response.write(ByteBuffer(string: "hi"))
                try await response.finish()
            case .leavesOpen:
                try await response.writeHead(HTTPResponse(status: .ok))
            case .throwsBeforeHead:
                throw Failure()
            case .throwsAfterHead:
                try await response.writeHead(HTTPResponse(status: .ok))
                throw Failure()
            case .throwsAfterFinish:
                try await response.writeHead(HTTPResponse(status: .noContent))
                try await response.finish()
                throw Failure()
            }
        }
        let sink = RecordingSink()
        let errors = NIOLockedValueBox(0)
        await handler.run(HTTPRequest(method: .get, scheme: "https", authority: "a", path: "/"), body: HTTPBody(),
                          context: HTTPRequestContext(protocolVersion: .http3), sink: sink) { _ in
            errors.withLockedValue { $0 += 1 }
        }
        let expected: [String]
        switch behaviour {
        case .answers: expected = ["head 200 length=-", "body 2", "finish"]
        case .leavesOpen: expected = ["head 200 length=-", "finish"]
        case .throwsBeforeHead: expected = ["head 500 length=0", "finish"]
        case .throwsAfterHead: expected = ["head 200 length=-", "abort"]
        case .throwsAfterFinish: expected = ["head 204 length=-", "finish"]
        }
        #expect(sink.events == expected)
        let threw = [.throwsBeforeHead, .throwsAfterHead, .throwsAfterFinish].contains(behaviour)
        #expect(errors.withLockedValue { $0 } == (threw ? 1 : 0))
    }

    @Test("A 500 that cannot be written aborts the response")
    func failedErrorResponse() async {
        let handler = ClosureHTTPHandler { _, _, _, _ in throw Failure() }
        let sink = RecordingSink(failsHead: true)
        await handler.run(HTTPRequest(method: .get, scheme: "https", authority: "a", path: "/"), body: HTTPBody(),
                          context: HTTPRequestContext(protocolVersion: .http2), sink: sink) { _ in }
        #expect(sink.events == ["abort"])
    }
}
