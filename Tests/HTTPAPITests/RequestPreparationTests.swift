import HTTPAPI
import HTTPTypes
import NIOCore
import Testing

@Suite("Request preparation shared by both transports")
struct RequestPreparationTests {
    private func origin(_ authority: String?, scheme: String? = "https") -> Result<String, HTTPError> {
        var request = HTTPRequest(method: .get, scheme: scheme, authority: authority, path: "/")
        request.authority = authority
        do throws(HTTPError) {
            let (host, port) = try request.httpsOrigin(transportName: "HTTP/3")
            return .success("\(host) \(port)")
        } catch {
            return .failure(error)
        }
    }

    @Test("https authorities: host, host:port, [v6], [v6]:port; 443 by default")
    func validAuthorities() throws {
        #expect(try origin("example.com").get() == "example.com 443")
        #expect(try origin("example.com:8443").get() == "example.com 8443")
        #expect(try origin("[::1]").get() == "::1 443")
        #expect(try origin("[::1]:4433").get() == "::1 4433")
        #expect(try origin("127.0.0.1:1").get() == "127.0.0.1 1")
        #expect(try origin("h", scheme: nil).get() == "h 443")
        #expect(try origin("h", scheme: "HTTPS").get() == "h 443")
    }

    @Test("bad authorities and schemes are refused with a message naming the problem")
    func invalidAuthorities() {
        let cases: [(String?, String?, String)] = [
            ("h", "http", "HTTP/3 needs an https URL, not http"),
            (nil, "https", "no authority"),
            ("", "https", "no authority"),
            ("[::1", "https", "bad IPv6 authority"),
            ("[::1]x", "https", "bad authority"),
            ("[::1]:0", "https", "bad port"),
            ("h:65536", "https", "bad port"),
            ("h:", "https", "bad port"),
            ("h:-1", "https", "bad port"),
            (":443", "https", "empty host"),
            ("[]:443", "https", "empty host"),
        ]
        for (authority, scheme, message) in cases {
            guard case .failure(let error) = origin(authority, scheme: scheme) else {
                Issue.record("\(authority ?? "nil") was accepted")
                continue
            }
            #expect("\(error)".contains(message), "\(authority ?? "nil"): \(error)")
        }
    }

    @Test("preparedForSending: https by default, Content-Length from a known body length, none for an empty GET")
    func prepared() {
        let get = HTTPRequest(method: .get, scheme: nil, authority: "h", path: "/")
        #expect(get.preparedForSending(body: nil).scheme == "https")
        #expect(get.preparedForSending(body: HTTPBody()).headerFields[.contentLength] == nil)
        let post = HTTPRequest(method: .post, scheme: "https", authority: "h", path: "/")
        #expect(post.preparedForSending(body: HTTPBody(bytes: [1, 2, 3])).headerFields[.contentLength] == "3")
        #expect(post.preparedForSending(body: HTTPBody(bytes: [])).headerFields[.contentLength] == "0")
        var explicit = post
        explicit.headerFields[.contentLength] = "3"
        #expect(explicit.preparedForSending(body: HTTPBody(bytes: [1, 2, 3])).headerFields[.contentLength] == "3")
    }
}
