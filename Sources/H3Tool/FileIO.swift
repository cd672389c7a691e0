import Foundation
import NIOCore
import NIOPosix

/// A file opened for reading, read off the cooperative thread pool (on NIO's blocking-I/O
/// thread pool) in chunks.
final class ReadableFile: Sendable {
    let descriptor: Int32
    let path: String
    let size: Int64
    let modificationTime: timespec
    let isRegularFile: Bool
    let inode: UInt64

    /// Opens `path`; throws a message suitable for the user if it cannot be opened.
    /// `serving` refuses a symbolic link as the last component and never blocks on a FIFO.
    init(path: String, serving: Bool = false) throws(ToolError) {
        let fd = open(path, O_RDONLY | O_CLOEXEC | (serving ? O_NOFOLLOW | O_NONBLOCK : 0))
        guard fd >= 0 else {
            throw ToolError(ToolError.readError, "cannot open '\(path)' for reading: \(String(cString: strerror(errno)))")
        }
        var info = Glibc.stat()
        guard fstat(fd, &info) == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw ToolError(ToolError.readError, "cannot read '\(path)': \(reason)")
        }
        self.descriptor = fd
        self.path = path
        self.size = Int64(info.st_size)
        self.modificationTime = info.st_mtim
        self.isRegularFile = (info.st_mode & S_IFMT) == S_IFREG
        self.inode = UInt64(info.st_ino)
    }

    deinit { close(descriptor) }

    /// The path the open descriptor refers to now (from /proc), to check it is still where
    /// the caller resolved it.
    var openedPath: String? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink("/proc/self/fd/\(descriptor)", &buffer, buffer.count - 1)
        guard n > 0 else { return nil }
        return String(decoding: buffer.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Reads up to `count` bytes at `offset` (fewer at the end of the file).
    func read(at offset: Int64, count: Int) async throws -> ByteBuffer {
        let descriptor = self.descriptor, path = self.path
        return try await NIOThreadPool.singleton.runIfActive {
            var buffer = ByteBufferAllocator().buffer(capacity: count)
            let n = buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: count) { raw -> Int in
                guard let base = raw.baseAddress else { return 0 }
                while true {
                    let n = pread(descriptor, base, count, off_t(offset))
                    if n < 0 && errno == EINTR { continue }
                    return n
                }
            }
            if n < 0 { throw ToolError(ToolError.readError, "error reading '\(path)': \(String(cString: strerror(errno)))") }
            return buffer
        }
    }

    /// The bytes from `offset` for `length` bytes, as chunks.
    func chunks(from offset: Int64 = 0, length: Int64? = nil, chunkSize: Int = 256 << 10) -> FileChunks {
        FileChunks(file: self, start: offset, end: offset + (length ?? (size - offset)), chunkSize: chunkSize)
    }
}

/// An async sequence of a file's bytes. It ends early (with an error) if the file shrinks.
struct FileChunks: AsyncSequence, Sendable {
    typealias Element = ByteBuffer
    let file: ReadableFile
    let start: Int64
    let end: Int64
    let chunkSize: Int

    struct AsyncIterator: AsyncIteratorProtocol {
        let file: ReadableFile
        var position: Int64
        let end: Int64
        let chunkSize: Int

        mutating func next() async throws -> ByteBuffer? {
            guard position < end else { return nil }
            let count = Int(Swift.min(Int64(chunkSize), end - position))
            let chunk = try await file.read(at: position, count: count)
            if chunk.readableBytes == 0 {
                throw ToolError(ToolError.readError, "'\(file.path)' changed while being read")
            }
            position += Int64(chunk.readableBytes)
            return chunk
        }
    }

    func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(file: file, position: start, end: end, chunkSize: chunkSize)
    }
}

/// Standard input as chunks of bytes (for `-T -` and `--data-binary @-`).
struct StandardInputChunks: AsyncSequence, Sendable {
    typealias Element = ByteBuffer

    struct AsyncIterator: AsyncIteratorProtocol {
        var done = false
        mutating func next() async throws -> ByteBuffer? {
            if done { return nil }
            let chunk = try await NIOThreadPool.singleton.runIfActive { () throws -> ByteBuffer in
                var buffer = ByteBufferAllocator().buffer(capacity: 64 << 10)
                let n = buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: 64 << 10) { raw -> Int in
                    guard let base = raw.baseAddress else { return 0 }
                    while true {
                        let n = Glibc.read(0, base, raw.count)
                        if n < 0 && errno == EINTR { continue }
                        return n
                    }
                }
                if n < 0 { throw ToolError(ToolError.readError, "error reading standard input: \(String(cString: strerror(errno)))") }
                return buffer
            }
            if chunk.readableBytes == 0 {
                done = true
                return nil
            }
            return chunk
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator() }
}

/// Where a response body goes: a file (created when the response arrives) or standard output.
/// Safe to use from several tasks: once ``finish()`` ran, writes fail instead of reopening
/// (a transfer abandoned by `-m` must not truncate what was saved).
final class OutputSink: @unchecked Sendable {
    enum Target { case standardOutput, file(String) }
    let target: Target
    private let lock = NSLock()
    private var descriptor: Int32 = -1
    private var finished = false
    private var written: Int64 = 0

    init(_ target: Target) { self.target = target }

    var bytesWritten: Int64 { lock.withLock { written } }

    var displayName: String {
        switch target {
        case .standardOutput: return "standard output"
        case .file(let path): return path
        }
    }

    /// Opens the destination (truncating a file). Called once the response head arrived.
    func open() throws(ToolError) {
        lock.lock()
        defer { lock.unlock() }
        try openLocked()
    }

    private func openLocked() throws(ToolError) {
        guard !finished else { throw ToolError(ToolError.writeError, "output to \(displayName) already closed") }
        guard descriptor < 0 else { return }
        switch target {
        case .standardOutput:
            descriptor = 1
        case .file(let path):
            let fd = Glibc.open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            guard fd >= 0 else {
                throw ToolError(ToolError.writeError, "failed to open '\(path)' for writing: \(String(cString: strerror(errno)))")
            }
            descriptor = fd
        }
    }

    /// Writes all bytes or throws exit code 23.
    func write(_ buffer: ByteBuffer) throws(ToolError) {
        lock.lock()
        defer { lock.unlock() }
        try openLocked()
        let descriptor = self.descriptor
        let failure: Int32? = buffer.withUnsafeReadableBytes { raw -> Int32? in
            guard let base = raw.baseAddress else { return nil }
            var offset = 0
            while offset < raw.count {
                let n = Glibc.write(descriptor, base + offset, raw.count - offset)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return n < 0 ? errno : EIO }
                offset += n
            }
            return nil
        }
        if let failure {
            throw ToolError(ToolError.writeError, "failure writing output to \(displayName): \(String(cString: strerror(failure)))")
        }
        written += Int64(buffer.readableBytes)
    }

    func write(_ text: String) throws(ToolError) {
        try write(ByteBuffer(string: text))
    }

    /// Closes a file destination; `close` errors (for example a full disk on NFS) are write
    /// errors. Later writes fail.
    func finish() throws(ToolError) {
        lock.lock()
        defer { lock.unlock() }
        finished = true
        guard case .file(let path) = target, descriptor >= 0 else { return }
        let rv = Glibc.close(descriptor)
        descriptor = -1
        if rv != 0 {
            throw ToolError(ToolError.writeError, "failure writing output to \(path): \(String(cString: strerror(errno)))")
        }
    }

    deinit {
        if case .file = target, descriptor >= 0 { Glibc.close(descriptor) }
    }
}
