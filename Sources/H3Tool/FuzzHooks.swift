import ArgumentParser
import Foundation

/// Entry points into `h3`'s parsers for the fuzz targets (`Fuzz/`) and their regression replay
/// (`FuzzEntryPoints`). Nothing here runs a transfer, opens a socket or touches a file.
package enum H3ToolFuzzing {
    /// What the parsers made of one set of arguments.
    package struct Outcome: Sendable, Hashable {
        /// Whether the command line was accepted (parsed and validated).
        package var accepted: Bool
        /// The one-line usage message `h3` would print when it was not (never empty then).
        package var message: String
        /// How many of the arguments were accepted as URLs.
        package var urls: Int
    }

    /// Parses `arguments` (without the program name) as `h3` does before running, with
    /// validation; nothing runs.
    package static func parseCommandLine(_ arguments: [String]) -> Outcome {
        do {
            _ = try H3.parseAsRoot(arguments)
            return Outcome(accepted: true, message: "", urls: 0)
        } catch {
            let message = H3.message(for: error).split(separator: "\n").first.map(String.init) ?? ""
            return Outcome(accepted: false, message: message.isEmpty ? "bad usage" : message, urls: 0)
        }
    }

    /// Passes each value through the curl-style sub-parsers: URLs (and each later one as a
    /// redirect resolved against the first), `--resolve` entries, `-w` templates, and the file
    /// server's Range, If-None-Match, If-Range and date parsers. Always accepted (these parsers
    /// answer nil or "ignore" for bad input); `urls` says how many values were URLs.
    package static func parseValues(_ values: [String]) -> Outcome {
        var outcome = Outcome(accepted: true, message: "", urls: 0)
        var base: TargetURL?
        for value in values.prefix(64) {
            if let url = try? TargetURL(parsing: value) {
                outcome.urls += 1
                _ = url.authority
                _ = url.remoteFileName
                if let base { _ = try? base.resolving(location: value) } else { base = url }
            }
            _ = Fetch.parseResolve(value)
            _ = WriteOut.render(value, sampleReport)
            _ = HTTPDate.parse(value)
            for size: Int64 in [0, 1, 1000, Int64.max] { _ = FileServer.parseRange(value, size: size) }
            _ = FileServer.etagListMatches(value, "\"abc\"")
            _ = FileServer.ifRangeAllows(value, etag: "\"abc\"", mtime: 784_111_777)
            _ = FileServer.pathOnly(value)
            _ = FileServer.escapeHTML(value)
        }
        return outcome
    }

    /// A transfer report with every field set, so that `-w` templates have values to print.
    private static let sampleReport: TransferReport = {
        var report = TransferReport()
        report.url = "https://example.com/"
        report.httpCode = 200
        report.httpVersion = "3"
        report.sizeDownload = 1234
        report.timeTotal = 0.5
        report.remoteIP = "::1"
        report.remotePort = 443
        report.contentType = "text/plain"
        return report
    }()
}
