import ArgumentParser
import ChoosingClient
import Foundation
import HTTP2
import HTTP3
import HTTPAPI
import HTTPTypes
import QUIC

/// `h3 [options] URL...`: the client, with curl's option names and meanings.
struct Fetch: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fetch",
        abstract: "Fetch URLs over HTTP/3 (the default: `h3 URL` is `h3 fetch URL`).")

    @Argument(help: "URLs to fetch. A URL without a scheme is taken as https://.")
    var urls: [String] = []

    @Option(name: [.customShort("o"), .customLong("output")],
            help: ArgumentHelp("Write the body to FILE instead of stdout (once per URL, in order; '-' is stdout).",
                               valueName: "file"))
    var output: [String] = []
    @Flag(name: [.customShort("O"), .customLong("remote-name")],
          help: "Write every body to a local file named like its URL's last path segment (curl's --remote-name-all).")
    var remoteName = false
    @Option(name: [.customShort("X"), .customLong("request")], help: ArgumentHelp("The request method.", valueName: "method"))
    var method: String?
    @Option(name: [.customShort("H"), .customLong("header")],
            help: ArgumentHelp("Add a header 'Name: value'; 'Name:' removes a default one, 'Name;' sends it empty.",
                               valueName: "header"))
    var headers: [String] = []
    @Option(name: [.customShort("d"), .customLong("data")],
            help: ArgumentHelp("POST this data (@FILE reads a file, newlines removed; several are joined with &).",
                               valueName: "data"))
    var data: [String] = []
    @Option(name: .customLong("data-binary"),
            help: ArgumentHelp("POST this data exactly (@FILE streams the file from disk).", valueName: "data"))
    var dataBinary: [String] = []
    @Option(name: [.customShort("T"), .customLong("upload-file")],
            help: ArgumentHelp("PUT this file, streamed from disk ('-' reads stdin).", valueName: "file"))
    var uploadFile: String?
    @Flag(name: [.customShort("I"), .customLong("head")], help: "Send HEAD and print the response header.")
    var headOnly = false
    @Flag(name: [.customShort("i"), .customLong("include")], help: "Include the response header in the output.")
    var include = false
    @Flag(name: [.customShort("L"), .customLong("location")], help: "Follow redirects.")
    var followRedirects = false
    @Option(name: .customLong("max-redirs"), help: ArgumentHelp("Follow at most this many redirects (-1: no limit).", valueName: "num"))
    var maxRedirects = 50
    @Flag(name: [.customShort("s"), .customLong("silent")], help: "No progress meter and no error messages.")
    var silent = false
    @Flag(name: [.customShort("S"), .customLong("show-error")], help: "With -s, still print errors.")
    var showError = false
    @Flag(name: [.customShort("v"), .customLong("verbose")], help: "Print connection, TLS and QUIC details and the header lines on stderr.")
    var verbose = false
    @Flag(name: [.customShort("f"), .customLong("fail")], help: "Fail (exit 22) on HTTP errors (status >= 400), printing no body.")
    var fail = false
    @Flag(name: [.customShort("k"), .customLong("insecure")], help: "Do not verify the server's certificate.")
    var insecure = false
    @Option(name: .customLong("cacert"), help: ArgumentHelp("Trust the CA certificates in this PEM file.", valueName: "file"))
    var caCertificate: String?
    @Option(name: [.customShort("E"), .customLong("cert")], help: ArgumentHelp("Client certificate (PEM) for mutual TLS.", valueName: "file"))
    var clientCertificate: String?
    @Option(name: .customLong("key"), help: ArgumentHelp("The client certificate's private key (PEM).", valueName: "file"))
    var clientKey: String?
    @Option(name: .customLong("resolve"), help: ArgumentHelp("Use ADDR for HOST:PORT.", valueName: "host:port:addr"))
    var resolve: [String] = []
    @Option(name: .customLong("connect-timeout"), help: ArgumentHelp("Seconds allowed for the QUIC handshake.", valueName: "seconds"))
    var connectTimeout: Double?
    @Option(name: [.customShort("m"), .customLong("max-time")], help: ArgumentHelp("Seconds allowed for each transfer.", valueName: "seconds"))
    var maxTime: Double?
    @Option(name: [.customShort("w"), .customLong("write-out")],
            help: ArgumentHelp("Print this after each transfer, with %{variables} (@FILE reads it from a file).", valueName: "format"))
    var writeOut: String?
    @Flag(name: [.customShort("Z"), .customLong("parallel")], help: "Run the transfers concurrently.")
    var parallel = false
    @Option(name: .customLong("parallel-max"), help: ArgumentHelp("At most this many concurrent transfers with -Z.", valueName: "num"))
    var parallelMax = 50
    @Option(name: [.customShort("A"), .customLong("user-agent")], help: ArgumentHelp("The user-agent header.", valueName: "name"))
    var userAgent: String?
    @Option(name: .customLong("qlog-dir"), help: ArgumentHelp("Write a qlog file per connection into this directory.", valueName: "dir"))
    var qlogDirectory: String?
    @Option(name: .customLong("session-file"),
            help: ArgumentHelp("Keep TLS session tickets in this file, so later runs resume their sessions.", valueName: "file"))
    var sessionFile: String?
    @Flag(name: .customLong("tls-earlydata"),
          help: "Send requests in TLS early data (0-RTT) when --session-file holds a ticket for the server.")
    var tlsEarlyData = false
    @Option(name: .customLong("limit-rate"),
            help: ArgumentHelp("Transfer at most this many bytes per second, each way (suffix K, M or G for powers of 1024).",
                               valueName: "speed"))
    var limitRate: String?
    @Option(name: .customLong("key-update-after"),
            help: ArgumentHelp("Test switch: start a TLS key update after each BYTES of response body.", valueName: "bytes"))
    var keyUpdateAfter: Int64?
    @Option(name: .customLong("migrate-after"),
            help: ArgumentHelp("Test switch: move the connection to a new local port SECONDS into each transfer.",
                               valueName: "seconds"))
    var migrateAfter: Double?
    @Flag(name: .customLong("http3-only"), help: "Use HTTP/3 only (the default).")
    var http3Only = false
    @Flag(name: .customLong("http3"),
          help: "Try HTTP/3, racing it against HTTP/2 over TCP (which starts 250 ms later), as curl --http3.")
    var http3 = false
    @Flag(name: .customLong("http2"), help: "Use HTTP/2 over TCP + TLS only.")
    var http2 = false
    @Option(name: .customLong("happy-eyeballs-timeout-ms"),
            help: ArgumentHelp("With --http3: how long QUIC has before HTTP/2 over TCP starts beside it.", valueName: "ms"))
    var happyEyeballsTimeout = 250
    @Option(name: .customLong("alt-svc"),
            help: ArgumentHelp("Read and write the Alt-Svc cache in this file (curl's format), in every mode but --http2.",
                               valueName: "file"))
    var altSvcFile: String?

    /// The protocol choice the flags ask for.
    var protocolMode: HTTPClient.Mode {
        if http2 { return .http2Only }
        if http3 { return .race }
        return .http3Only
    }

    func validate() throws {
        if urls.isEmpty { throw ValidationError("no URL specified") }
        if [http3Only, http3, http2].filter({ $0 }).count > 1 {
            throw ValidationError("use only one of --http3-only, --http3 and --http2")
        }
        if let altSvcFile, altSvcFile.isEmpty { throw ValidationError("--alt-svc needs a file name") }
        if !(0...600_000).contains(happyEyeballsTimeout) {
            throw ValidationError("--happy-eyeballs-timeout-ms must be 0 to 600000")
        }
        if uploadFile != nil && (!data.isEmpty || !dataBinary.isEmpty) {
            throw ValidationError("-T/--upload-file and -d/--data cannot be used together")
        }
        if headOnly && (uploadFile != nil || !data.isEmpty || !dataBinary.isEmpty) {
            throw ValidationError("-I/--head cannot send a request body")
        }
        if output.count > urls.count { throw ValidationError("more -o/--output options than URLs") }
        if (clientCertificate == nil) != (clientKey == nil) { throw ValidationError("--cert and --key go together") }
        if let connectTimeout, !(connectTimeout > 0 && connectTimeout <= 1e8) {
            throw ValidationError("--connect-timeout must be a positive number of seconds (at most 1e8)")
        }
        if let maxTime, !(maxTime > 0 && maxTime <= 1e8) {
            throw ValidationError("-m/--max-time must be a positive number of seconds (at most 1e8)")
        }
        if remoteName && !output.isEmpty {
            throw ValidationError("use either -o/--output or -O/--remote-name, not both")
        }
        if let limitRate, TransferRate(limitRate) == nil {
            throw ValidationError("--limit-rate must be a positive number of bytes per second, with an optional K, M or G suffix")
        }
        if let keyUpdateAfter, keyUpdateAfter < 1 { throw ValidationError("--key-update-after must be at least 1 byte") }
        if let migrateAfter, !(migrateAfter >= 0 && migrateAfter <= 1e8) {
            throw ValidationError("--migrate-after must be a number of seconds between 0 and 1e8")
        }
        if !(1...300).contains(parallelMax) { throw ValidationError("--parallel-max must be between 1 and 300") }
        if maxRedirects < -1 { throw ValidationError("--max-redirs must be -1 or more") }
        for header in headers where !header.contains(":") && !header.hasSuffix(";") {
            throw ValidationError("bad header '\(header)': expected 'Name: value'")
        }
        for entry in resolve where Fetch.parseResolve(entry) == nil {
            throw ValidationError("bad --resolve '\(entry)': expected HOST:PORT:ADDRESS")
        }
    }

    /// `HOST:PORT:ADDR` (ADDR may be a bracketed IPv6 literal) as a transport resolve entry.
    static func parseResolve(_ entry: String) -> (key: String, address: String)? {
        let parts = entry.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3, !parts[0].isEmpty, let port = Int(parts[1]), (1...65535).contains(port),
              !parts[2].isEmpty else { return nil }
        var address = String(parts[2])
        if address.hasPrefix("[") && address.hasSuffix("]") { address = String(address.dropFirst().dropLast()) }
        return ("\(parts[0].lowercased()):\(port)", address)
    }

    func run() async throws {
        do {
            try await fetchAll()
        } catch let error as ToolError where silent && !showError {
            throw ToolError(error.code, "")  // -s: no message, only the exit code
        }
    }

    private func fetchAll() async throws {
        let targets = try urls.map { (text: String) throws(ToolError) -> TargetURL in try TargetURL(parsing: text) }
        let options = try TransferOptions(self)
        var configuration = try makeTransportConfiguration()
        var sessions: QUICSessionCache?
        if let sessionFile {
            do {
                sessions = try QUICSessionCache(contentsOf: sessionFile)
            } catch {
                throw ToolError(ToolError.readError, "\(error)")
            }
            configuration.quic.sessionCache = sessions
        }
        let http3Transport = HTTP3Transport(configuration: configuration)
        let mode = protocolMode
        var chooser: HTTPClient?
        if mode != .http3Only || altSvcFile != nil {
            let http2Transport = try makeHTTP2Transport(configuration)
            let client = HTTPClient(configuration: .init(mode: mode, raceDelay: .milliseconds(happyEyeballsTimeout),
                                                         altSvcCacheFile: altSvcFile), http3: http3Transport,
                                    http2: http2Transport)
            if let problem = client.altSvcCacheLoadError {
                Console.error("h3: warning: ignoring the Alt-Svc cache: \(problem)")
            }
            chooser = client
        }
        let client = Client(options: options, transport: chooser ?? http3Transport, http3: http3Transport)
        let ticketKeys = Set(targets.map { "\($0.host):\($0.port)" })
        let ticketsBefore = ticketKeys.map { sessions?.ticket(for: $0)?.tlsSession }

        var plans: [TransferPlan] = []
        for (index, target) in targets.enumerated() {
            var target = target
            if let upload = uploadFile, upload != "-", target.pathAndQuery.hasSuffix("/") {
                let name = (upload as NSString).lastPathComponent
                target = try target.resolving(location: name.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? name)
            }
            let sink: OutputSink.Target
            if index < output.count {
                sink = output[index] == "-" ? .standardOutput : .file(output[index])
            } else if remoteName {
                let name = target.remoteFileName
                guard !name.isEmpty, name != ".", name != ".." else {
                    plans.append(TransferPlan(index: index, target: target, output: .standardOutput,
                                              preflightError: ToolError(ToolError.writeError,
                                                                        "remote file name has no length: \(target)")))
                    continue
                }
                sink = .file(name)
            } else {
                sink = .standardOutput
            }
            plans.append(TransferPlan(index: index, target: target, output: sink, preflightError: nil))
        }

        let reports: [TransferReport]
        if parallel && plans.count > 1 {
            reports = await client.runParallel(plans, limit: parallelMax)
        } else {
            var collected: [TransferReport] = []
            for plan in plans { collected.append(await client.run(plan)) }
            reports = collected
        }
        if let sessions {
            // A ticket comes after the handshake, maybe after a short transfer ended: give it a
            // moment (at most 1 s) so that the next run can resume.
            for _ in 0..<100 where ticketKeys.map({ sessions.ticket(for: $0)?.tlsSession }) == ticketsBefore {
                try? await Task.sleep(for: .milliseconds(10))
            }
        }
        if let chooser {
            do {
                try chooser.saveAltSvcCache()
            } catch {
                Console.error("h3: warning: \(error)")
            }
            await chooser.shutdown(savingAltSvcCache: false)
        } else {
            await http3Transport.shutdown()
        }
        if let sessions, let sessionFile {
            do {
                try sessions.save(to: sessionFile)
            } catch {
                throw ToolError(ToolError.writeError, "\(error)")
            }
        }
        if let failed = reports.first(where: { $0.exitCode != 0 }) {
            throw ToolError(failed.exitCode, "")
        }
    }

    /// The HTTP/2 side of `--http2` and `--http3`, with the same TLS settings and `--resolve`.
    private func makeHTTP2Transport(_ configuration: HTTP3Transport.Configuration) throws(ToolError) -> (any PreconnectingRoundTripper)? {
        var http2 = HTTP2Transport.Configuration(tls: configuration.tls, resolve: configuration.resolve)
        if let connectTimeout { http2.connectTimeout = .milliseconds(Int64(connectTimeout * 1000)) }
        return HTTP2Transport(configuration: http2)
    }

    private func makeTransportConfiguration() throws(ToolError) -> HTTP3Transport.Configuration {
        var tls = QUICTLSConfiguration.makeClientConfiguration(applicationProtocols: ["h3"])
        if insecure { tls.certificateVerification = .insecureNoVerification }
        if let caCertificate {
            guard FileManager.default.isReadableFile(atPath: caCertificate) else {
                throw ToolError(ToolError.caFile, "cannot read the CA certificate file '\(caCertificate)'")
            }
            tls.trustRoots = .certificates(.file(caCertificate))
        }
        if let clientCertificate, let clientKey {
            for file in [clientCertificate, clientKey] where !FileManager.default.isReadableFile(atPath: file) {
                throw ToolError(ToolError.clientCertificate, "cannot read the client certificate or key file '\(file)'")
            }
            tls.certificateChain = .file(clientCertificate)
            tls.privateKey = .file(clientKey)
        }
        var configuration = HTTP3Transport.Configuration(tls: tls)
        if let qlogDirectory {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: qlogDirectory, isDirectory: &isDirectory), isDirectory.boolValue else {
                throw ToolError(ToolError.writeError, "--qlog-dir '\(qlogDirectory)' is not a directory")
            }
            configuration.quic.qlogDirectory = qlogDirectory
        }
        if let connectTimeout { configuration.quic.handshakeTimeout = .milliseconds(Int64(connectTimeout * 1000)) }
        configuration.quic.enableEarlyData = tlsEarlyData
        for entry in resolve {
            if let (key, address) = Fetch.parseResolve(entry) { configuration.resolve[key] = address }
        }
        return configuration
    }
}

/// One URL and where its body goes.
struct TransferPlan: Sendable {
    let index: Int
    let target: TargetURL
    let output: OutputSink.Target
    /// A problem found before any network activity (reported when the transfer's turn comes).
    let preflightError: ToolError?
}

/// What the request carries.
enum RequestBodySpec: Sendable {
    case none
    case inline([UInt8])
    case file(String)
    case standardInput
}

/// The command line, digested for the transfers.
struct TransferOptions: Sendable {
    var method: HTTPRequest.Method
    var methodIsExplicit: Bool
    var headerFields: HTTPFields
    var authorityOverride: String?
    var body: RequestBodySpec
    var defaultContentType: String?
    var headOnly: Bool
    var include: Bool
    var followRedirects: Bool
    var maxRedirects: Int
    var fail: Bool
    var verbose: Bool
    var silent: Bool
    var showError: Bool
    var writeOut: String?
    var maxTime: Double?
    var parallel: Bool
    /// What `-v` says requests go over.
    var protocolLabel: String
    /// `--tls-earlydata`: requests may go in 0-RTT whatever their method.
    var allowEarlyData: Bool
    /// `--limit-rate`: the most bytes per second each way.
    var limitRate: TransferRate?
    /// `--key-update-after`: bytes of response body between key updates.
    var keyUpdateAfter: Int64?
    /// `--migrate-after`: seconds into a transfer at which the connection moves to a new port.
    var migrateAfter: Double?

    init(_ fetch: Fetch) throws(ToolError) {
        switch fetch.protocolMode {
        case .http3Only: protocolLabel = "HTTP/3"
        case .http2Only: protocolLabel = "HTTP/2"
        case .race, .altSvcDiscovery: protocolLabel = "HTTP/3 or HTTP/2"
        }
        headOnly = fetch.headOnly
        include = fetch.include
        followRedirects = fetch.followRedirects
        maxRedirects = fetch.maxRedirects
        fail = fetch.fail
        verbose = fetch.verbose
        silent = fetch.silent
        showError = fetch.showError
        maxTime = fetch.maxTime
        parallel = fetch.parallel
        allowEarlyData = fetch.tlsEarlyData
        keyUpdateAfter = fetch.keyUpdateAfter
        limitRate = fetch.limitRate.flatMap(TransferRate.init)
        migrateAfter = fetch.migrateAfter

        if let template = fetch.writeOut, template.hasPrefix("@") {
            let path = String(template.dropFirst())
            let text = path == "-" ? String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
                : try? String(contentsOfFile: path, encoding: .utf8)
            guard let text else { throw ToolError(ToolError.readError, "cannot read the --write-out file '\(path)'") }
            writeOut = text
        } else {
            writeOut = fetch.writeOut
        }

        // The body.
        if let upload = fetch.uploadFile {
            body = upload == "-" ? .standardInput : .file(upload)
            defaultContentType = nil
        } else if fetch.data.isEmpty && fetch.dataBinary.count == 1, let only = fetch.dataBinary.first, only.hasPrefix("@") {
            let path = String(only.dropFirst())
            body = path == "-" ? .standardInput : .file(path)
            defaultContentType = "application/x-www-form-urlencoded"
        } else if !fetch.data.isEmpty || !fetch.dataBinary.isEmpty {
            var pieces: [[UInt8]] = []
            for item in fetch.data {
                if item.hasPrefix("@") {
                    let raw = try TransferOptions.readAll(String(item.dropFirst()))
                    pieces.append(raw.filter { $0 != UInt8(ascii: "\r") && $0 != UInt8(ascii: "\n") })
                } else {
                    pieces.append(Array(item.utf8))
                }
            }
            for item in fetch.dataBinary {
                pieces.append(item.hasPrefix("@") ? try TransferOptions.readAll(String(item.dropFirst())) : Array(item.utf8))
            }
            body = .inline(Array(pieces.joined(separator: [UInt8(ascii: "&")])))
            defaultContentType = "application/x-www-form-urlencoded"
        } else {
            body = .none
            defaultContentType = nil
        }

        // The method.
        let name: String
        if let explicit = fetch.method {
            name = explicit
        } else if fetch.headOnly {
            name = "HEAD"
        } else if fetch.uploadFile != nil {
            name = "PUT"
        } else if case .none = body {
            name = "GET"
        } else {
            name = "POST"
        }
        guard let method = HTTPRequest.Method(name) else {
            throw ToolError(ToolError.usage, "bad request method '\(name)'")
        }
        self.method = method
        methodIsExplicit = fetch.method != nil

        // Header fields: defaults, then the user's.
        var fields = HTTPFields()
        fields[.userAgent] = fetch.userAgent ?? "h3/\(h3Version)"
        fields[.accept] = "*/*"
        var replaced: Set<HTTPField.Name> = []
        for header in fetch.headers {
            let nameText: Substring
            let value: String?
            if let colon = header.firstIndex(of: ":") {
                nameText = header[..<colon]
                let rest = header[header.index(after: colon)...].trimmingCharacters(in: .whitespaces)
                value = rest.isEmpty ? nil : rest
            } else {
                nameText = header.dropLast()  // "Name;" sends the header with an empty value
                value = ""
            }
            guard let fieldName = HTTPField.Name(String(nameText).trimmingCharacters(in: .whitespaces)) else {
                throw ToolError(ToolError.usage, "bad header name in '\(header)'")
            }
            if fieldName.canonicalName == "host" {
                authorityOverride = value
                continue
            }
            if !replaced.contains(fieldName) {
                fields[fieldName] = nil
                replaced.insert(fieldName)
            }
            if let value {
                guard HTTPField.isValidValue(value) else { throw ToolError(ToolError.usage, "bad header value in '\(header)'") }
                fields.append(HTTPField(name: fieldName, value: value))
            }
        }
        // A default Content-Type (for -d) is added per request, only while there is a body.
        if replaced.contains(.contentType) { defaultContentType = nil }
        headerFields = fields
    }

    static func readAll(_ path: String) throws(ToolError) -> [UInt8] {
        if path == "-" { return Array(FileHandle.standardInput.readDataToEndOfFile()) }
        // Opened as -T and --data-binary @ open their file, so a failure reads the same way.
        let file = try ReadableFile(path: path)
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(file.descriptor, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else {
                throw ToolError(ToolError.readError, "error reading '\(path)': \(String(cString: strerror(errno)))")
            }
            if n == 0 { return bytes }
            bytes += chunk[..<n]
        }
    }
}
