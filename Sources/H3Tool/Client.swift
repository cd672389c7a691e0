import Foundation
import HTTP3
import HTTPAPI
import HTTPTypes
import NIOCore

/// Runs transfers for `h3 URL...`: requests, redirects, output, verbose lines, `-w`.
struct Client: Sendable {
    let options: TransferOptions
    /// An ``HTTP3Transport``, or the protocol-choosing `HTTPClient` (`--http2`, `--http3`, `--alt-svc`).
    let transport: any HTTPRoundTripper
    /// The HTTP/3 transport under ``transport``, for the test switches (`--key-update-after`,
    /// `--migrate-after`), which act on its pooled connection.
    let http3: HTTP3Transport

    /// Runs the transfers one after another on the shared transport (one connection per origin).
    func run(_ plan: TransferPlan) async -> TransferReport {
        let sink = OutputSink(plan.output)
        let report = await perform(plan, sink: sink)
        finishReport(report)
        return report
    }

    /// Runs the transfers concurrently (at most `limit` at once). Bodies meant for stdout are
    /// spooled to temporary files and printed in URL order, so outputs never interleave.
    func runParallel(_ plans: [TransferPlan], limit: Int) async -> [TransferReport] {
        let spoolDirectory = FileManager.default.temporaryDirectory
            .appendingPathComponent("h3-spool-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        do {
            try FileManager.default.createDirectory(at: spoolDirectory, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
        } catch {
            let failure = ToolError(ToolError.writeError, "cannot create a spool directory for -Z: \(error)")
            return plans.map { plan in
                var report = TransferReport()
                report.url = plan.target.description
                report.exitCode = failure.code
                report.errorMessage = failure.message
                finishReport(report)
                return report
            }
        }
        defer { try? FileManager.default.removeItem(at: spoolDirectory) }
        var reports = [TransferReport?](repeating: nil, count: plans.count)
        await withTaskGroup(of: (Int, TransferReport, String?).self) { group in
            var next = 0
            func add() {
                let plan = plans[next]
                next += 1
                group.addTask {
                    var spool: String?
                    var target = plan.output
                    if case .standardOutput = target {
                        let path = spoolDirectory.appendingPathComponent("\(plan.index)").path
                        spool = path
                        target = .file(path)
                    }
                    let report = await perform(plan, sink: OutputSink(target))
                    return (plan.index, report, spool)
                }
            }
            while next < min(limit, plans.count) { add() }
            var spools = [String?](repeating: nil, count: plans.count)
            var printed = 0
            while let (index, report, spool) = await group.next() {
                reports[index] = report
                spools[index] = spool
                if next < plans.count { add() }
                // Print finished transfers in order.
                while printed < plans.count, var done = reports[printed] {
                    if let path = spools[printed], let failure = copyToStandardOutput(path), done.exitCode == 0 {
                        done.exitCode = failure.code
                        done.errorMessage = failure.message
                        reports[printed] = done
                    }
                    finishReport(done)
                    printed += 1
                }
            }
        }
        return reports.map { $0 ?? TransferReport() }
    }

    /// Copies a spooled body to stdout; returns the error (exit 23) if that fails.
    private func copyToStandardOutput(_ path: String) -> ToolError? {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            return ToolError(ToolError.writeError, "the spooled body \(path) disappeared")
        }
        defer { try? handle.close() }
        let out = OutputSink(.standardOutput)
        do {
            while let data = try handle.read(upToCount: 256 << 10), !data.isEmpty {
                try out.write(ByteBuffer(bytes: data))
            }
        } catch let error as ToolError {
            return error
        } catch {
            return ToolError(ToolError.writeError, "cannot read the spooled body: \(error)")
        }
        return nil
    }

    /// Prints the error line and the `-w` text of a finished transfer.
    private func finishReport(_ report: TransferReport) {
        if report.exitCode != 0, !report.errorMessage.isEmpty, !options.silent || options.showError {
            Console.error("h3: (\(report.exitCode)) \(report.errorMessage)")
        }
        if let template = options.writeOut {
            let text = WriteOut.render(template, report) { Console.error("h3: warning: \($0)") }
            Console.write(text, to: 1)
        }
    }

    /// One transfer, redirects included, bounded by `-m`.
    private func perform(_ plan: TransferPlan, sink: OutputSink) async -> TransferReport {
        let progress = Progress()
        var report = TransferReport()
        report.url = plan.target.description
        if let preflight = plan.preflightError {
            report.exitCode = preflight.code
            report.errorMessage = preflight.message
            return report
        }
        let started = ContinuousClock.now
        let outcome: Result<TransferReport, ToolError>
        if let maxTime = options.maxTime {
            outcome = await race(seconds: maxTime) {
                await self.transfer(plan, sink: sink, started: started, progress: progress)
            } onTimeout: {
                var timedOut = progress.report
                timedOut.timeTotal = elapsed(since: started)
                timedOut.exitCode = ToolError.timeout
                timedOut.errorMessage = "operation timed out after \(Int(maxTime * 1000)) milliseconds with "
                    + "\(progress.report.sizeDownload) bytes received"
                return .failure(ToolError(ToolError.timeout, timedOut.errorMessage))
            }
        } else {
            outcome = await transfer(plan, sink: sink, started: started, progress: progress)
        }
        switch outcome {
        case .success(let done):
            report = done
        case .failure(let error):
            report = progress.report
            report.exitCode = error.code
            report.errorMessage = error.message
            report.timeTotal = elapsed(since: started)
        }
        if report.url.isEmpty { report.url = plan.target.description }
        do {
            try sink.finish()
        } catch {
            if report.exitCode == 0 {
                report.exitCode = error.code
                report.errorMessage = error.message
            }
        }
        return report
    }

    /// Runs `work`; if it has not finished after `seconds`, returns `onTimeout()` instead and
    /// cancels it (a transfer stuck in a system call is left behind; the process exits soon).
    private func race(seconds: Double, _ work: @escaping @Sendable () async -> Result<TransferReport, ToolError>,
                      onTimeout: @escaping @Sendable () -> Result<TransferReport, ToolError>) async -> Result<TransferReport, ToolError> {
        let gate = OnceGate<Result<TransferReport, ToolError>>()
        return await withCheckedContinuation { continuation in
            gate.set(continuation)
            let worker = Task {
                let result = await work()
                gate.resume(with: result)
            }
            Task {
                try? await Task.sleep(for: .milliseconds(Int64(seconds * 1000)))
                if gate.resume(with: onTimeout()) { worker.cancel() }
            }
        }
    }

    private func transfer(_ plan: TransferPlan, sink: OutputSink, started: ContinuousClock.Instant,
                          progress: Progress) async -> Result<TransferReport, ToolError> {
        do {
            return .success(try await transferThrowing(plan, sink: sink, started: started, progress: progress))
        } catch {
            return .failure(ToolError.from(error))
        }
    }

    private func transferThrowing(_ plan: TransferPlan, sink: OutputSink, started: ContinuousClock.Instant,
                                  progress: Progress) async throws -> TransferReport {
        var target = plan.target
        var method = options.method
        var bodySpec = options.body
        var redirects = 0
        var connects = 0
        var headerBytes: Int64 = 0
        let fields = options.headerFields
        var authorityOverride = options.authorityOverride
        while true {
            var fields = fields
            if case .none = bodySpec {
            } else if fields[.contentType] == nil, let type = options.defaultContentType {
                fields[.contentType] = type
            }
            let authority = authorityOverride ?? target.authority
            let request = HTTPRequest(method: method, scheme: "https", authority: authority,
                                      path: target.pathAndQuery, headerFields: fields)
            let (body, uploadLength) = try makeBody(bodySpec)
            let hopStart = elapsed(since: started)
            if options.verbose {
                Console.error("* Requesting \(target) over \(options.protocolLabel)"
                              + (authorityOverride.map { " (authority \($0))" } ?? ""))
            }
            let response = try await transport.roundTrip(request, body: body,
                                                         options: HTTPRequestOptions(allowEarlyData: options.allowEarlyData))
            let migration = scheduleMigration(for: request, transferStarted: started)
            defer { migration?.cancel() }
            let metadata = response.metadata
            if !metadata.connectionReused { connects += 1 }
            var report = TransferReport()
            report.url = target.description
            report.httpCode = response.head.status.code
            report.httpVersion = metadata.protocolVersion.rawValue
            report.numConnects = connects
            report.numRedirects = redirects
            let remote = WriteOut.splitEndpoint(metadata.remoteAddress)
            report.remoteIP = remote.ip
            report.remotePort = remote.port
            let local = WriteOut.splitEndpoint(metadata.connection?.localAddress)
            report.localIP = local.ip
            report.localPort = local.port
            report.earlyDataBytes = metadata.earlyDataBytes
            report.sizeUpload = uploadLength ?? 0
            report.contentType = response.head.headerFields[.contentType] ?? ""
            let timings = metadata.timings
            if metadata.connectionReused {
                report.timeConnect = hopStart
                report.timeAppConnect = hopStart
            } else {
                report.timeConnect = hopStart + timings.connected.seconds
                report.timeAppConnect = hopStart + timings.tlsHandshakeDone.seconds
            }
            report.timeStartTransfer = hopStart + timings.firstResponseByte.seconds
            let headerBlock = Client.headerBlock(response.head, version: response.metadata.protocolVersion)
            report.sizeHeader = headerBlock.utf8.count
            progress.update(report)
            if options.verbose { printVerbose(request: request, response: response) }

            let status = response.head.status.code
            let location = response.head.headerFields[.location]
            let isRedirect = [301, 302, 303, 307, 308].contains(status) && location != nil
            if let location { report.redirectURL = (try? target.resolving(location: location).description) ?? location }

            if options.fail && status >= 400 {
                response.body.discard()
                throw ToolError(ToolError.httpError, "the requested URL returned error: \(status)")
            }
            if options.include || options.headOnly {
                try sink.write(headerBlock)
                headerBytes += Int64(headerBlock.utf8.count)
            }
            if options.followRedirects && isRedirect, let location {
                response.body.discard()
                if options.maxRedirects >= 0 && redirects >= options.maxRedirects {
                    throw ToolError(ToolError.tooManyRedirects, "maximum (\(options.maxRedirects)) redirects followed")
                }
                redirects += 1
                let previous = target
                target = try target.resolving(location: location)
                if target.host != previous.host || target.port != previous.port {
                    // As curl without --location-trusted: credentials stay with the first origin.
                    fields[.authorization] = nil
                    fields[.cookie] = nil
                    authorityOverride = nil
                }
                if options.verbose { Console.error("* Following redirect to \(target)") }
                // 303 becomes GET; 301 and 302 turn POST into GET, as browsers and curl do.
                if (status == 303 && method != .head) || ((status == 301 || status == 302) && method == .post && !options.methodIsExplicit) {
                    method = .get
                    bodySpec = .none
                } else if case .standardInput = bodySpec {
                    throw ToolError(ToolError.readError, "cannot send standard input again after a \(status) redirect")
                }
                continue
            }
            // The body.
            if method != .head && !options.headOnly {
                let length = response.head.headerFields[.contentLength].flatMap { Int64($0) }
                let meter = makeMeter(total: length, sink: sink)
                defer { meter?.finish() }
                try sink.open()
                var received: Int64 = 0
                var nextKeyUpdate = options.keyUpdateAfter ?? .max
                var pacer = options.limitRate.map(RatePacer.init)
                for try await chunk in response.body {
                    try sink.write(chunk)
                    // Reading slower holds the sender back through flow control.
                    try await pacer?.consumed(chunk.readableBytes)
                    meter?.add(chunk.readableBytes)
                    progress.received(chunk.readableBytes)
                    received += Int64(chunk.readableBytes)
                    if received >= nextKeyUpdate, let every = options.keyUpdateAfter {
                        // Refused while the previous update is unconfirmed: try again with the
                        // next chunk rather than a whole interval later.
                        if await updateKeys(for: request) { nextKeyUpdate = received + every }
                    }
                }
                _ = try await response.body.trailers()
            } else {
                response.body.discard()
                try sink.open()
            }
            report.sizeDownload = sink.bytesWritten - headerBytes
            report.timeTotal = elapsed(since: started)
            if options.verbose {
                Console.error("* Connection to \(target.host) left open for reuse")
            }
            return report
        }
    }

    /// `--key-update-after`: one key update now; false when ngtcp2 refuses (the previous one
    /// is unconfirmed), which -v reports.
    private func updateKeys(for request: HTTPRequest) async -> Bool {
        do {
            try await http3.initiateKeyUpdate(for: request)
            if options.verbose { Console.error("* Key update started") }
            return true
        } catch {
            if options.verbose { Console.error("* Key update not possible now: \(error)") }
            return false
        }
    }

    /// `--migrate-after`: moves the connection to a new local port that many seconds into the
    /// transfer (the returned task is cancelled when the transfer ends first).
    private func scheduleMigration(for request: HTTPRequest, transferStarted: ContinuousClock.Instant) -> Task<Void, Never>? {
        guard let seconds = options.migrateAfter else { return nil }
        let http3 = self.http3, verbose = options.verbose
        return Task {
            let due = transferStarted + .milliseconds(Int64(seconds * 1000))
            do {
                try await Task.sleep(until: due, clock: .continuous)
                try await http3.migrate(for: request)
                if verbose { Console.error("* Migrated the connection to a new local port") }
            } catch is CancellationError {
            } catch {
                Console.error("h3: migration failed: \(error)")
            }
        }
    }

    private func makeMeter(total: Int64?, sink: OutputSink) -> ProgressMeter? {
        guard !options.silent, !options.parallel, Console.stderrIsTerminal else { return nil }
        if case .standardOutput = sink.target, Console.stdoutIsTerminal { return nil }
        let meter = ProgressMeter()
        meter.setTotal(total)
        meter.start()
        return meter
    }

    private func makeBody(_ spec: RequestBodySpec) throws(ToolError) -> (HTTPBody?, Int64?) {
        switch spec {
        case .none:
            return (nil, nil)
        case .inline(let bytes):
            guard let rate = options.limitRate else { return (HTTPBody(bytes: bytes), Int64(bytes.count)) }
            let chunks = InlineChunks(bytes: bytes, chunkSize: rate.uploadChunkSize)
            return (HTTPBody(RateLimitedChunks(base: chunks, rate: rate), length: Int64(bytes.count)), Int64(bytes.count))
        case .file(let path):
            let file = try ReadableFile(path: path)
            guard file.isRegularFile else {
                throw ToolError(ToolError.readError, "'\(path)' is not a regular file")
            }
            guard let rate = options.limitRate else { return (HTTPBody(file.chunks(), length: file.size), file.size) }
            let chunks = RateLimitedChunks(base: file.chunks(chunkSize: rate.uploadChunkSize), rate: rate)
            return (HTTPBody(chunks, length: file.size), file.size)
        case .standardInput:
            guard let rate = options.limitRate else { return (HTTPBody(StandardInputChunks()), nil) }
            return (HTTPBody(RateLimitedChunks(base: StandardInputChunks(), rate: rate)), nil)
        }
    }

    /// The response head as curl's `-i` prints it.
    static func headerBlock(_ head: HTTPResponse, version: HTTPProtocolVersion = .http3) -> String {
        var text = "HTTP/\(version.rawValue) \(head.status.code)\r\n"
        for field in head.headerFields { text += "\(field.name): \(field.value)\r\n" }
        return text + "\r\n"
    }

    private func printVerbose(request: HTTPRequest, response: HTTPClientResponse) {
        var lines: [String] = []
        let metadata = response.metadata
        if metadata.connectionReused {
            lines.append("* Re-using the existing \(metadata.protocolVersion == .http3 ? "QUIC" : "TCP") connection to \(metadata.remoteAddress ?? "?")")
        } else if let info = metadata.connection {
            lines.append("* Connected to \(request.authority ?? "?") (\(info.remoteAddress ?? "?")) over \(info.transport)"
                         + (info.localAddress.map { " from \($0)" } ?? ""))
            lines.append("* TLS: \(info.tlsParameters ?? "?"), ALPN: \(info.applicationProtocol ?? "none")"
                         + (info.sessionResumed ? ", session resumed" : ""))
            if let subject = info.peerCertificateSubject {
                lines.append("* Server certificate:")
                lines.append("*  subject: \(subject)")
                if let issuer = info.peerCertificateIssuer { lines.append("*  issuer: \(issuer)") }
                if let notAfter = info.peerCertificateNotAfter {
                    lines.append("*  expire date: \(HTTPDate.format(seconds: notAfter))")
                }
            }
            let handshake = metadata.protocolVersion == .http3 ? "QUIC" : "TLS"
            lines.append("* \(handshake)" + String(format: " handshake done in %.3f ms", metadata.timings.connected.seconds * 1000))
        }
        lines.append("> \(request.method) \(request.path ?? "/") HTTP/\(metadata.protocolVersion.rawValue)")
        lines.append("> host: \(request.authority ?? "")")
        for field in request.headerFields { lines.append("> \(field.name.canonicalName): \(field.value)") }
        lines.append(">")
        lines.append("< HTTP/\(metadata.protocolVersion.rawValue) \(response.head.status.code)")
        for field in response.head.headerFields { lines.append("< \(field.name): \(field.value)") }
        lines.append("<")
        Console.write(lines.map { $0 + "\n" }.joined(), to: 2)
    }
}

/// What a transfer has done so far, for the `-m` timeout report.
/// `@unchecked Sendable`: the report is read and written under `lock`.
final class Progress: @unchecked Sendable {
    private let lock = NSLock()
    private var current = TransferReport()

    var report: TransferReport { lock.withLock { current } }

    func update(_ report: TransferReport) {
        lock.withLock {
            let received = current.sizeDownload
            current = report
            current.sizeDownload = received
        }
    }

    func received(_ bytes: Int) {
        lock.withLock { current.sizeDownload += Int64(bytes) }
    }
}

/// Resumes a continuation once, from whichever side comes first.
/// `@unchecked Sendable`: every mutable member is read and written under `lock`.
final class OnceGate<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var continuation: CheckedContinuation<T, Never>?
    private var pending: T?
    private var done = false

    func set(_ continuation: CheckedContinuation<T, Never>) {
        lock.withLock {
            if let pending {
                continuation.resume(returning: pending)
                self.pending = nil
            } else {
                self.continuation = continuation
            }
        }
    }

    /// Returns whether this call was the one that resumed.
    @discardableResult
    func resume(with value: T) -> Bool {
        lock.withLock {
            guard !done else { return false }
            done = true
            if let continuation {
                continuation.resume(returning: value)
                self.continuation = nil
            } else {
                pending = value
            }
            return true
        }
    }
}

func elapsed(since start: ContinuousClock.Instant) -> Double { (ContinuousClock.now - start).seconds }

extension Duration {
    /// The duration in seconds.
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
