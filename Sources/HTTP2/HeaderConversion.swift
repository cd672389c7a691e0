import HTTPAPI
import HTTPTypes
import NIOHPACK
import NIOHTTP1

/// Conversions between swift-http-types and the wire forms of HTTP/2 (HPACK header lists)
/// and HTTP/1.1 (NIOHTTP1 heads). Input from the network is checked, never trusted.
enum HeaderConversion {
    /// Header fields HTTP/2 forbids (RFC 9113, section 8.2.2); dropped when sending.
    static let connectionSpecific: Set<String> = ["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"]

    /// The size of a field section as SETTINGS_MAX_HEADER_LIST_SIZE counts it: name + value + 32 per field.
    static func listSize(_ headers: HPACKHeaders) -> Int {
        var size = 0
        for (name, value, _) in headers { size += name.utf8.count + value.utf8.count + 32 }
        return size
    }

    /// A received request header list as a request.
    static func request(_ headers: HPACKHeaders) throws(HTTPError) -> HTTPRequest {
        var method: String?, scheme: String?, authority: String?, path: String?, extendedProtocol: String?
        var fields = HTTPFields()
        for (name, value, _) in headers {
            if name.hasPrefix(":") {
                switch name {
                case ":method": method = value
                case ":scheme": scheme = value
                case ":authority": authority = value
                case ":path": path = value
                case ":protocol": extendedProtocol = value
                default: throw .protocolError("unknown pseudo-header \(name)")
                }
                continue
            }
            guard let fieldName = HTTPField.Name(name) else { throw .protocolError("invalid header field name") }
            fields.append(HTTPField(name: fieldName, value: value))
        }
        guard let method, let parsed = HTTPRequest.Method(method) else {
            throw .protocolError("the request has no valid :method")
        }
        var request = HTTPRequest(method: parsed, scheme: scheme, authority: authority, path: path, headerFields: fields)
        if let extendedProtocol { request.extendedConnectProtocol = extendedProtocol }
        return request
    }

    /// A received response header list as a response.
    static func response(_ headers: HPACKHeaders) throws(HTTPError) -> HTTPResponse {
        var status: Int?
        var fields = HTTPFields()
        for (name, value, _) in headers {
            if name == ":status" {
                guard value.utf8.count == 3, let code = Int(value), (100...999).contains(code) else {
                    throw .protocolError("invalid :status \(value)")
                }
                status = code
                continue
            }
            guard !name.hasPrefix(":"), let fieldName = HTTPField.Name(name) else {
                throw .protocolError("invalid response header field \(name)")
            }
            fields.append(HTTPField(name: fieldName, value: value))
        }
        guard let status else { throw .protocolError("the response has no :status") }
        return HTTPResponse(status: HTTPResponse.Status(code: status), headerFields: fields)
    }

    /// Trailer fields (no pseudo-headers allowed).
    static func trailers(_ headers: HPACKHeaders) throws(HTTPError) -> HTTPFields {
        var fields = HTTPFields()
        for (name, value, _) in headers {
            guard !name.hasPrefix(":"), let fieldName = HTTPField.Name(name) else {
                throw .protocolError("invalid trailer field \(name)")
            }
            fields.append(HTTPField(name: fieldName, value: value))
        }
        return fields
    }

    static func append(_ fields: HTTPFields, to headers: inout HPACKHeaders) {
        for field in fields {
            let name = field.name.canonicalName
            if connectionSpecific.contains(name) { continue }
            if name == "te" && field.value.lowercased() != "trailers" { continue }
            let sensitive = field.indexingStrategy == .avoid || field.indexingStrategy == .disallow
            headers.add(name: name, value: field.value, indexing: sensitive ? .nonIndexable : .indexable)
        }
    }

    /// A request as an HTTP/2 header list.
    static func headers(_ request: HTTPRequest) -> HPACKHeaders {
        var headers = HPACKHeaders()
        headers.add(name: ":method", value: request.method.rawValue)
        if request.method != .connect || request.extendedConnectProtocol != nil {
            headers.add(name: ":scheme", value: request.scheme ?? "https")
        }
        if let authority = request.authority { headers.add(name: ":authority", value: authority) }
        if let path = request.path { headers.add(name: ":path", value: path) }
        if let extendedProtocol = request.extendedConnectProtocol { headers.add(name: ":protocol", value: extendedProtocol) }
        append(request.headerFields, to: &headers)
        return headers
    }

    /// A response as an HTTP/2 header list.
    static func headers(_ response: HTTPResponse) -> HPACKHeaders {
        var headers = HPACKHeaders()
        headers.add(name: ":status", value: String(response.status.code))
        append(response.headerFields, to: &headers)
        return headers
    }

    /// Trailers as an HTTP/2 header list.
    static func headers(_ trailers: HTTPFields) -> HPACKHeaders {
        var headers = HPACKHeaders()
        append(trailers, to: &headers)
        return headers
    }

    /// A received HTTP/1.1 request head as a request (the Host field becomes the authority).
    static func request(_ head: HTTPRequestHead) throws(HTTPError) -> HTTPRequest {
        guard let method = HTTPRequest.Method(head.method.rawValue) else { throw .protocolError("invalid method") }
        var fields = HTTPFields()
        var authority: String?
        for (name, value) in head.headers {
            if name.lowercased() == "host" {
                if authority == nil { authority = value }
                continue
            }
            guard let fieldName = HTTPField.Name(name) else { throw .protocolError("invalid header field name") }
            fields.append(HTTPField(name: fieldName, value: value))
        }
        if method == .connect {
            return HTTPRequest(method: method, scheme: nil, authority: head.uri, path: nil, headerFields: fields)
        }
        return HTTPRequest(method: method, scheme: "https", authority: authority, path: head.uri, headerFields: fields)
    }

    /// A response as an HTTP/1.1 head.
    static func head(_ response: HTTPResponse, version: HTTPVersion) -> HTTPResponseHead {
        var headers = HTTPHeaders()
        for field in response.headerFields { headers.add(name: field.name.rawName, value: field.value) }
        let status = HTTPResponseStatus(statusCode: response.status.code, reasonPhrase: response.status.reasonPhrase)
        return HTTPResponseHead(version: version, status: status, headers: headers)
    }

    /// Fields as HTTP/1.1 headers (trailers).
    static func http1Fields(_ fields: HTTPFields) -> HTTPHeaders {
        var headers = HTTPHeaders()
        for field in fields { headers.add(name: field.name.rawName, value: field.value) }
        return headers
    }
}
