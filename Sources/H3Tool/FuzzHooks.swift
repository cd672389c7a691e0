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

    /// Parses `arguments` (without the program name) as `h3` does before running, and passes
    /// each argument through the curl-style sub-parsers: URLs (and a redirect resolved against
    /// the first one), `--resolve` entries, `-w` templates, and the file server's Range,
    /// If-None-Match, If-Range and date parsers.
    package static func parse(_ arguments: [String]) -> Outcome {
        var outcome = Outcome(accepted: true, message: "", urls: 0)
        do {
            _ = try H3.parseAsRoot(arguments)
        } catch {
            outcome.accepted = false
            let message = H3.message(for: error).split(separator: "\n").first.map(String.init) ?? ""
            outcome.message = message.isEmpty ? "bad usage" : message
        }
        var base: TargetURL?
        for argument in arguments.prefix(64) {
            if let url = try? TargetURL(parsing: argument) {
                outcome.urls += 1
                _ = url.authority
                _ = url.remoteFileName
                if let base { _ = try? base.resolving(location: argument) } else { base = url }
            }
            _ = Fetch.parseResolve(argument)
            _ = WriteOut.render(argument, sampleReport)
            _ = HTTPDate.parse(argument)
            for size: Int64 in [0, 1, 1000, Int64.max] { _ = FileServer.parseRange(argument, size: size) }
            _ = FileServer.etagListMatches(argument, "\"abc\"")
            _ = FileServer.ifRangeAllows(argument, etag: "\"abc\"", mtime: 784_111_777)
            _ = FileServer.pathOnly(argument)
            _ = FileServer.escapeHTML(argument)
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
