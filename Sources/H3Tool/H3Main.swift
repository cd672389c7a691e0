import ArgumentParser
import Foundation

/// The version `h3` reports (and sends in its user-agent).
public let h3Version = "0.1.0"

/// The root of the `h3` command line: the client (default) and `h3 serve`.
struct H3: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "h3",
        abstract: "An HTTP/3 client with curl's options, and an HTTP/3 file server.",
        discussion: """
            h3 [options] URL...           fetch URLs over HTTP/3 (QUIC), like curl --http3-only
            h3 serve [DIR] [options]      serve DIR over HTTP/3
            """,
        version: h3Version,
        subcommands: [Fetch.self, Serve.self],
        defaultSubcommand: Fetch.self)
}

/// The process entry point: parses the command line, runs it, and exits with curl's exit
/// codes (2 for bad usage, where swift-argument-parser would exit 64).
public enum H3Main {
    /// Runs `h3` with the process's arguments and exits.
    public static func run() async -> Never {
        // A reader that went away (h3 URL | head) must not kill us with SIGPIPE: writes fail
        // with EPIPE instead and end the transfer with exit code 23, as in curl.
        signal(SIGPIPE, SIG_IGN)
        let command: any ParsableCommand
        do {
            command = try H3.parseAsRoot()
        } catch {
            let code = H3.exitCode(for: error)
            if code == .success {
                print(H3.fullMessage(for: error))
                exit(0)
            }
            let message = H3.message(for: error).split(separator: "\n").first.map(String.init) ?? "bad usage"
            Console.error("h3: \(message) (see h3 --help)")
            exit(ToolError.usage)
        }
        do {
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                var syncCommand = command
                try syncCommand.run()
            }
            exit(0)
        } catch let error as ToolError {
            // As curl, and as errors during a transfer: "h3: (26) cannot open ..."; usage errors
            // keep the plain form.
            if !error.message.isEmpty {
                Console.error(error.code == ToolError.usage ? "h3: \(error.message)" : "h3: (\(error.code)) \(error.message)")
            }
            exit(error.code)
        } catch let error as ExitCode {
            exit(error.rawValue)
        } catch {
            let code = H3.exitCode(for: error)
            // `--help` after a subcommand comes back from run() as a help request, not from the parse.
            if code == .success {
                print(H3.fullMessage(for: error))
                exit(0)
            }
            if code == .validationFailure {
                Console.error("h3: \(H3.message(for: error)) (see h3 --help)")
                exit(ToolError.usage)
            }
            Console.error("h3: \(error)")
            exit(1)
        }
    }
}

/// Serialized writes to stderr, so lines from concurrent transfers do not interleave.
enum Console {
    private static let lock = NSLock()

    static func error(_ line: String) {
        write(line + "\n", to: 2)
    }

    /// Writes raw text (the caller supplies line ends).
    static func write(_ text: String, to descriptor: Int32) {
        lock.lock()
        defer { lock.unlock() }
        var bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeMutableBytes { raw -> Int in
                guard let base = raw.baseAddress else { return 0 }
                return Glibc.write(descriptor, base + offset, raw.count - offset)
            }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }
            offset += n
        }
    }

    static var stderrIsTerminal: Bool { isatty(2) != 0 }
    static var stdoutIsTerminal: Bool { isatty(1) != 0 }
}
