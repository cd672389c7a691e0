// Child processes for the benchmark: spawning with output to files, waiting with a deadline and
// the child's own rusage (wait4), CPU time and memory of a running process from /proc, free
// loopback ports, and killing every child when the benchmark exits.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Something went wrong in a way that makes the numbers meaningless. Printed, exit status 1.
struct BenchFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Every child still running; killed on exit, SIGINT and SIGTERM.
nonisolated(unsafe) private var liveChildren: [pid_t] = []
nonisolated(unsafe) private var cleanupInstalled = false

func killAllChildren() {
    for pid in liveChildren { kill(pid, SIGKILL) }
    for pid in liveChildren { var status: Int32 = 0; waitpid(pid, &status, 0) }
    liveChildren.removeAll()
}

func installChildCleanup() {
    guard !cleanupInstalled else { return }
    cleanupInstalled = true
    atexit { killAllChildren() }
    let handler: @convention(c) (Int32) -> Void = { signal in
        for pid in liveChildren { kill(pid, SIGKILL) }
        _exit(128 + signal)
    }
    signal(SIGINT, handler)
    signal(SIGTERM, handler)
    signal(SIGHUP, handler)
}

/// Writes one line to standard output at once (unbuffered: the driver reads it from a file).
func writeLine(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

/// Monotonic seconds.
func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// How a child ended.
struct ChildExit {
    var status: Int32          // exit code, or 128 + signal
    var wallSeconds: Double    // spawn to exit
    var cpuSeconds: Double     // user + sys of the child (wait4)
}

/// A spawned child whose standard output and error go to files.
final class Child {
    let pid: pid_t
    let name: String
    let stdoutPath: String
    let stderrPath: String
    let started: Double
    private(set) var exited: ChildExit?

    init(_ executable: String, _ arguments: [String], name: String, logDirectory: String) throws {
        installChildCleanup()
        self.name = name
        let tag = "\(name)-\(UInt32.random(in: 0...UInt32.max))"
        stdoutPath = "\(logDirectory)/\(tag).out"
        stderrPath = "\(logDirectory)/\(tag).err"
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdoutPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, stderrPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { for arg in argv { free(arg) } }
        var pid: pid_t = 0
        started = now()
        let rc = posix_spawn(&pid, executable, &actions, nil, argv, environ)
        guard rc == 0 else { throw BenchFailure("cannot start \(executable): \(String(cString: strerror(rc)))") }
        self.pid = pid
        liveChildren.append(pid)
    }

    /// Non-blocking: reaps the child if it has exited.
    @discardableResult
    func poll() -> ChildExit? {
        if let exited { return exited }
        var status: Int32 = 0
        var usage = rusage()
        let rv = wait4(pid, &status, WNOHANG, &usage)
        guard rv == pid else { return nil }
        let wall = now() - started
        let cpu = Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6
            + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
        let code: Int32 = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        exited = ChildExit(status: code, wallSeconds: wall, cpuSeconds: cpu)
        liveChildren.removeAll { $0 == pid }
        return exited
    }

    /// Waits for the child to exit by itself; kills it and fails after `timeout` seconds.
    func wait(timeout: Double) throws -> ChildExit {
        let deadline = now() + timeout
        while true {
            if let exit = poll() { return exit }
            if now() > deadline {
                stop()
                throw BenchFailure("\(name) did not finish within \(Int(timeout)) s (killed); stderr: \(stderrTail)")
            }
            usleep(500)
        }
    }

    /// Waits until standard output contains a line starting with `prefix`; returns that line.
    func waitForLine(prefix: String, timeout: Double) throws -> String {
        let deadline = now() + timeout
        while now() < deadline {
            if let line = output.split(separator: "\n").first(where: { $0.hasPrefix(prefix) }) { return String(line) }
            if let exit = poll() {
                throw BenchFailure("\(name) exited with \(exit.status) before printing \(prefix); stderr: \(stderrTail)")
            }
            usleep(2_000)
        }
        stop()
        throw BenchFailure("\(name) did not print \(prefix) within \(Int(timeout)) s; stderr: \(stderrTail)")
    }

    var output: String { (try? String(contentsOfFile: stdoutPath, encoding: .utf8)) ?? "" }
    var stderrTail: String { String(((try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "").suffix(800)) }

    /// SIGTERM, then SIGKILL after a second; reaps.
    func stop() {
        guard poll() == nil else { return }
        kill(pid, SIGTERM)
        for attempt in 0..<300 {
            if poll() != nil { return }
            if attempt == 100 { kill(pid, SIGKILL) }
            usleep(10_000)
        }
    }

    /// CPU seconds (user + sys, all threads) so far, from /proc/PID/stat (clock ticks).
    var cpuSecondsSoFar: Double { processCPUSeconds(pid) ?? 0 }
    /// Resident set size in bytes, from /proc/PID/status.
    var residentBytes: Int { processResidentBytes(pid) ?? 0 }
}

/// user + sys of a running process, all threads, from /proc/PID/stat.
func processCPUSeconds(_ pid: pid_t) -> Double? {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let close = text.lastIndex(of: ")") else { return nil }
    // Fields after "comm)": state is field 3; utime and stime are fields 14 and 15.
    let fields = text[text.index(after: close)...].split(separator: " ")
    guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
    return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
}

/// VmRSS of a process in bytes.
func processResidentBytes(_ pid: pid_t) -> Int? {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
    for line in text.split(separator: "\n") where line.hasPrefix("VmRSS:") {
        let parts = line.split(separator: " ", omittingEmptySubsequences: true)
        if parts.count >= 2, let kib = Int(parts[1]) { return kib * 1024 }
    }
    return nil
}

/// A UDP port on 127.0.0.1 that is free right now: the kernel picks one from the ephemeral
/// range, we close it, and check that nothing else bound it in between.
func freeUDPPort() throws -> Int {
    for _ in 0..<20 {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw BenchFailure("socket() failed") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        close(fd)
        guard bound else { continue }
        let port = Int(UInt16(bigEndian: address.sin_port))
        if !udpPortInUse(port) { return port }
    }
    throw BenchFailure("no free UDP port found on 127.0.0.1")
}

/// Whether some socket is bound to this local UDP port (from /proc/net/udp and udp6).
func udpPortInUse(_ port: Int) -> Bool {
    let hex = String(format: ":%04X ", port)
    for table in ["/proc/net/udp", "/proc/net/udp6"] {
        guard let text = try? String(contentsOfFile: table, encoding: .utf8) else { continue }
        for line in text.split(separator: "\n").dropFirst() {
            let columns = line.split(separator: " ", omittingEmptySubsequences: true)
            if columns.count > 1, (columns[1] + " ").hasSuffix(hex) { return true }
        }
    }
    return false
}

/// Waits until a child binds a UDP port (for peers that print nothing when ready).
func waitForUDPBind(_ port: Int, child: Child, timeout: Double) throws {
    let deadline = now() + timeout
    while now() < deadline {
        if udpPortInUse(port) { return }
        if let exit = child.poll() {
            throw BenchFailure("\(child.name) exited with \(exit.status) before binding port \(port): \(child.stderrTail)")
        }
        usleep(5_000)
    }
    throw BenchFailure("\(child.name) did not bind UDP port \(port) within \(Int(timeout)) s")
}

/// One line about the machine: cores, load, kernel.
func machineNotes() -> String {
    var uts = utsname()
    uname(&uts)
    let release = withUnsafeBytes(of: &uts.release) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
    let load = (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8))?.split(separator: " ").prefix(3).joined(separator: " ") ?? "?"
    let model = ((try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? "")
        .split(separator: "\n").first { $0.hasPrefix("model name") }
        .map { $0.split(separator: ":", maxSplits: 1).last.map { $0.trimmingCharacters(in: .whitespaces) } ?? "?" } ?? "?"
    return "\(sysconf(Int32(_SC_NPROCESSORS_ONLN))) cores (\(model)), load average \(load), Linux \(release)"
}
