import Foundation

/// What `-w/--write-out` can print about one transfer.
struct TransferReport: Sendable {
    var url: String = ""
    var httpCode: Int = 0
    var httpVersion: String = "0"
    var sizeDownload: Int64 = 0
    var sizeUpload: Int64 = 0
    var sizeHeader: Int = 0
    /// Seconds from the start of the transfer.
    var timeConnect: Double = 0
    var timeAppConnect: Double = 0
    var timeStartTransfer: Double = 0
    var timeTotal: Double = 0
    var numConnects: Int = 0
    var numRedirects: Int = 0
    var remoteIP: String = ""
    var remotePort: Int = 0
    var localIP: String = ""
    var localPort: Int = 0
    var contentType: String = ""
    var redirectURL: String = ""
    var earlyDataBytes: Int = 0
    var exitCode: Int32 = 0
    var errorMessage: String = ""

    var speedDownload: Double { timeTotal > 0 ? Double(sizeDownload) / timeTotal : 0 }
    var speedUpload: Double { timeTotal > 0 ? Double(sizeUpload) / timeTotal : 0 }
}

/// curl's `--write-out` template language: `%{variable}`, `%%`, and `\n`, `\r`, `\t`, `\\`.
enum WriteOut {
    /// The variables h3 knows, for validation messages.
    static let variables: Set<String> = [
        "http_code", "response_code", "http_version", "size_download", "size_upload", "size_header",
        "speed_download", "speed_upload", "time_connect", "time_appconnect", "time_starttransfer",
        "time_pretransfer", "time_total", "num_connects", "num_redirects", "remote_ip", "remote_port",
        "local_ip", "local_port", "url_effective", "url", "content_type", "redirect_url", "tls_earlydata",
        "exitcode", "errormsg", "scheme",
    ]

    /// Renders `template` for a transfer. Unknown variables produce a warning (once each) and
    /// no text, as in curl.
    static func render(_ template: String, _ report: TransferReport, warn: (String) -> Void = { _ in }) -> String {
        var out = ""
        var index = template.startIndex
        while index < template.endIndex {
            let character = template[index]
            if character == "%" {
                let next = template.index(after: index)
                if next < template.endIndex, template[next] == "%" {
                    out.append("%")
                    index = template.index(after: next)
                    continue
                }
                if next < template.endIndex, template[next] == "{",
                   let close = template[next...].firstIndex(of: "}") {
                    let name = String(template[template.index(after: next)..<close])
                    if let value = value(of: name, report) {
                        out += value
                    } else {
                        warn("unknown --write-out variable: '\(name)'")
                    }
                    index = template.index(after: close)
                    continue
                }
                out.append(character)
            } else if character == "\\" {
                let next = template.index(after: index)
                if next < template.endIndex {
                    switch template[next] {
                    case "n": out.append("\n")
                    case "r": out.append("\r")
                    case "t": out.append("\t")
                    case "\\": out.append("\\")
                    default: out.append("\\"); out.append(template[next])
                    }
                    index = template.index(after: next)
                    continue
                }
                out.append(character)
            } else {
                out.append(character)
            }
            index = template.index(after: index)
        }
        return out
    }

    static func value(of name: String, _ r: TransferReport) -> String? {
        switch name {
        case "http_code", "response_code": return String(format: "%03d", r.httpCode)
        case "http_version": return r.httpVersion
        case "size_download": return String(r.sizeDownload)
        case "size_upload": return String(r.sizeUpload)
        case "size_header": return String(r.sizeHeader)
        case "speed_download": return String(format: "%.0f", r.speedDownload.rounded(.down))
        case "speed_upload": return String(format: "%.0f", r.speedUpload.rounded(.down))
        case "time_connect": return seconds(r.timeConnect)
        case "time_appconnect": return seconds(r.timeAppConnect)
        case "time_pretransfer": return seconds(r.timeAppConnect)
        case "time_starttransfer": return seconds(r.timeStartTransfer)
        case "time_total": return seconds(r.timeTotal)
        case "num_connects": return String(r.numConnects)
        case "num_redirects": return String(r.numRedirects)
        case "remote_ip": return r.remoteIP
        case "remote_port": return r.remotePort == 0 ? "" : String(r.remotePort)
        case "local_ip": return r.localIP
        case "local_port": return r.localPort == 0 ? "" : String(r.localPort)
        case "url_effective", "url": return r.url
        case "content_type": return r.contentType
        case "redirect_url": return r.redirectURL
        case "tls_earlydata": return String(r.earlyDataBytes)
        case "exitcode": return String(r.exitCode)
        case "errormsg": return r.errorMessage
        case "scheme": return "https"
        default: return nil
        }
    }

    static func seconds(_ value: Double) -> String { String(format: "%.6f", value) }

    /// Splits `IP:port` / `[IP]:port` into its parts.
    static func splitEndpoint(_ text: String?) -> (ip: String, port: Int) {
        guard let text, let colon = text.lastIndex(of: ":") else { return (text ?? "", 0) }
        var ip = String(text[..<colon])
        if ip.hasPrefix("[") && ip.hasSuffix("]") { ip = String(ip.dropFirst().dropLast()) }
        return (ip, Int(text[text.index(after: colon)...]) ?? 0)
    }
}
