import HTTPAPI
import HTTPTypes
import QUIC

extension HTTP3Session {
    /// Builds a request from received fields, checking RFC 9114 section 4.3.1.
    static func makeRequest(_ fields: [(name: String, value: String)]) throws(HTTPError) -> HTTPRequest {
        var method: String?, scheme: String?, authority: String?, path: String?
        var headers = HTTPFields()
        var seenRegular = false
        for (name, value) in fields {
            if name.hasPrefix(":") {
                if seenRegular { throw .protocolError("pseudo-header \(name) after regular fields") }
                switch name {
                case ":method" where method == nil: method = value
                case ":scheme" where scheme == nil: scheme = value
                case ":authority" where authority == nil: authority = value
                case ":path" where path == nil: path = value
                default: throw .protocolError("unexpected or repeated pseudo-header \(name)")
                }
            } else {
                seenRegular = true
                guard let fieldName = HTTPField.Name(parsed: name) else { throw .protocolError("invalid field name \(name)") }
                headers.append(HTTPField(name: fieldName, value: value))
            }
        }
        guard let method, let parsedMethod = HTTPRequest.Method(method) else { throw .protocolError("missing or invalid :method") }
        if parsedMethod != .connect {
            guard scheme != nil else { throw .protocolError("missing :scheme") }
            guard let path, !path.isEmpty else { throw .protocolError("missing :path") }
        }
        return HTTPRequest(method: parsedMethod, scheme: scheme, authority: authority, path: path, headerFields: headers)
    }

    /// Builds a response head from received fields.
    static func makeResponse(_ fields: [(name: String, value: String)]) throws(HTTPError) -> HTTPResponse {
        var status: Int?
        var headers = HTTPFields()
        for (name, value) in fields {
            if name == ":status" {
                guard status == nil, let code = Int(value), (100...999).contains(code) else {
                    throw .protocolError("invalid :status \(value)")
                }
                status = code
            } else if name.hasPrefix(":") {
                throw .protocolError("unexpected pseudo-header \(name) in a response")
            } else if let fieldName = HTTPField.Name(parsed: name) {
                headers.append(HTTPField(name: fieldName, value: value))
            } else {
                throw .protocolError("invalid field name \(name)")
            }
        }
        guard let status else { throw .protocolError("missing :status") }
        return HTTPResponse(status: .init(code: status), headerFields: headers)
    }
}

/// Maps a QUIC error to the transport-neutral HTTP error.
func httpError(_ error: QUICError?) -> HTTPError {
    guard let error else { return .connectionClosed("the connection closed") }
    switch error {
    case .connectionRefused(let why): return .connectionRefused(why)
    case .unresolvableHost(let host): return .unresolvableHost(host)
    case .handshakeTimeout: return .connectTimeout
    case .certificateVerificationFailed(let why): return .certificateVerificationFailed(why)
    case .tlsHandshakeFailed(_, let why): return .tlsHandshakeFailed(why)
    case .applicationClosed(let code, _, _) where code == HTTP3ErrorCode.noError:
        return .connectionClosed("the connection closed")
    default: return .connectionClosed(error.description)
    }
}
