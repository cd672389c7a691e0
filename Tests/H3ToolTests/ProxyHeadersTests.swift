import Foundation
import HTTPProxy
import HTTPTypes
import QUIC
import QUICTestSupport
import Testing

/// The proxy's header rewriting, without sockets.
@Suite("Proxy header rewriting")
struct ProxyHeadersTests {
    func request(_ fields: [(String, String)]) -> HTTPRequest {
        var request = HTTPRequest(method: .get, scheme: "https", authority: "app.example:8443", path: "/x")
        for (name, value) in fields { request.headerFields.append(HTTPField(name: HTTPField.Name(name)!, value: value)) }
        return request
    }

    func values(_ request: HTTPRequest, _ name: String) -> [String] {
        request.headerFields[values: HTTPField.Name(name)!]
    }

    let hop = ProxyHeaders.Hop(clientAddress: "192.0.2.7:51000", proxyAddress: "[2001:db8::1]:8443")

    @Test("hop-by-hop fields and the fields Connection names are removed; others pass")
    func hopByHop() {
        let out = ProxyHeaders().rewrite(request([("connection", "close, x-private"), ("x-private", "1"), ("keep-alive", "5"),
                                                  ("te", "trailers"), ("upgrade", "h2c"), ("proxy-authorization", "Basic x"),
                                                  ("accept", "*/*")]),
                                         hop: hop, backendAuthority: "10.0.0.1:80")
        for name in ["connection", "x-private", "keep-alive", "te", "upgrade", "proxy-authorization"] {
            #expect(values(out, name).isEmpty, "\(name) should be gone")
        }
        #expect(values(out, "accept") == ["*/*"])
        #expect(out.authority == "app.example:8443", "the client's authority is kept by default")
        let rewritten = ProxyHeaders(preserveHost: false).rewrite(request([]), hop: hop, backendAuthority: "10.0.0.1:80")
        #expect(rewritten.authority == "10.0.0.1:80")
        var response = HTTPFields()
        response.append(HTTPField(name: HTTPField.Name("connection")!, value: "x-hop"))
        response.append(HTTPField(name: HTTPField.Name("x-hop")!, value: "1"))
        response.append(HTTPField(name: HTTPField.Name("transfer-encoding")!, value: "chunked"))
        response.append(HTTPField(name: .contentType, value: "text/plain"))
        #expect(ProxyHeaders.cleanResponse(response).map(\.name.canonicalName) == ["content-type"])
    }

    @Test("append: Forwarded and X-Forwarded-For extend the client's; proto, host and port are this hop's")
    func append() {
        let out = ProxyHeaders(forwarded: .append).rewrite(
            request([("forwarded", "for=198.51.100.1"), ("x-forwarded-for", "198.51.100.1"), ("x-forwarded-proto", "http"),
                     ("x-forwarded-host", "spoof.example")]), hop: hop, backendAuthority: "b:80")
        #expect(values(out, "forwarded")
                == ["for=198.51.100.1, for=192.0.2.7;by=\"[2001:db8::1]\";proto=https;host=\"app.example:8443\""])
        #expect(values(out, "x-forwarded-for") == ["198.51.100.1, 192.0.2.7"])
        #expect(values(out, "x-forwarded-proto") == ["https"])
        #expect(values(out, "x-forwarded-host") == ["app.example:8443"])
        #expect(values(out, "x-forwarded-port") == ["8443"])
    }

    @Test("replace drops the client's forwarding fields; off adds none and passes the client's through")
    func replaceAndOff() {
        let spoofed = request([("forwarded", "for=198.51.100.1"), ("x-forwarded-for", "198.51.100.1")])
        let replaced = ProxyHeaders(forwarded: .replace).rewrite(spoofed, hop: hop, backendAuthority: "b:80")
        #expect(values(replaced, "x-forwarded-for") == ["192.0.2.7"])
        #expect(values(replaced, "forwarded").first?.hasPrefix("for=192.0.2.7;") == true)
        let off = ProxyHeaders(forwarded: .off).rewrite(spoofed, hop: hop, backendAuthority: "b:80")
        #expect(values(off, "x-forwarded-for") == ["198.51.100.1"])
        #expect(values(off, "forwarded") == ["for=198.51.100.1"])
        #expect(values(off, "x-forwarded-proto").isEmpty)
        // An IPv6 client is a quoted, bracketed node; an authority without a port gets the scheme's.
        var v6 = HTTPRequest(method: .get, scheme: "https", authority: "app.example", path: "/")
        v6.headerFields = [:]
        let out = ProxyHeaders().rewrite(v6, hop: .init(clientAddress: "[::1]:4000", proxyAddress: nil), backendAuthority: "b:80")
        #expect(values(out, "forwarded") == ["for=\"[::1]\";proto=https;host=app.example"])
        #expect(values(out, "x-forwarded-for") == ["::1"])
        #expect(values(out, "x-forwarded-port") == ["443"])
    }

    @Test("identity fields: the client's copies never pass; a certificate's CN and each O are sent, under configurable names")
    func identity() throws {
        let spoofed = request([("x-remote-user", "admin"), ("X-Remote-Group", "system:masters"), ("x-user", "root")])
        let anonymous = ProxyHeaders().rewrite(spoofed, hop: hop, backendAuthority: "b:80")
        #expect(values(anonymous, "x-remote-user").isEmpty)
        #expect(values(anonymous, "x-remote-group").isEmpty)
        #expect(values(anonymous, "x-user") == ["root"], "not an identity field under the default names")

        let leaf = try CertificateGenerator.makeLeaf(.init(commonName: "jane", organizations: ["admins", "devs"]),
                                                     issuer: TestPKI.shared.ca)
        let identity = try #require(CertificateIdentity(der: try derBytes(leaf.certificatePEM)))
        #expect(identity == CertificateIdentity(commonName: "jane", organizations: ["admins", "devs"]))
        #expect(CertificateIdentity(der: [0x30, 0x03, 0x02, 0x01, 0x01]) == nil)
        var withIdentity = hop
        withIdentity.identity = CertificateIdentity(commonName: "jane", organizations: ["admins", "devs"])
        let out = ProxyHeaders().rewrite(spoofed, hop: withIdentity, backendAuthority: "b:80")
        #expect(values(out, "x-remote-user") == ["jane"])
        #expect(values(out, "x-remote-group") == ["admins", "devs"])

        let custom = ProxyHeaders(identityFields: .init(user: HTTPField.Name("x-user")!, group: HTTPField.Name("x-groups")!))
        let renamed = custom.rewrite(spoofed, hop: withIdentity, backendAuthority: "b:80")
        #expect(values(renamed, "x-user") == ["jane"], "the client's x-user was dropped, ours sent")
        #expect(values(renamed, "x-groups") == ["admins", "devs"])
        #expect(values(renamed, "x-remote-user") == ["admin"], "no longer an identity field: passes")
    }

    /// The DER bytes of the first certificate of a PEM text.
    func derBytes(_ pem: String) throws -> [UInt8] {
        let body = pem.split(separator: "\n").filter { !$0.hasPrefix("-----") }.joined()
        return Array(try #require(Data(base64Encoded: body)))
    }
}
