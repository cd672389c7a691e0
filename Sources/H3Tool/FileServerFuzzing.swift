import Foundation

extension H3ToolFuzzing {
    /// A scratch tree the file-server target resolves paths in: a file, a subdirectory, a link
    /// inside and a link pointing outside (to a file beside the tree). Made once per process.
    private static let fileServerTree: (root: String, outside: String)? = {
        let base = NSTemporaryDirectory() + "h3-fuzz-files-\(getpid())"
        let root = base + "/root"
        let manager = FileManager.default
        do {
            try manager.createDirectory(atPath: root + "/sub", withIntermediateDirectories: true)
            try Data("inside".utf8).write(to: URL(fileURLWithPath: root + "/a.txt"))
            try Data("inner".utf8).write(to: URL(fileURLWithPath: root + "/sub/b.txt"))
            try Data("secret".utf8).write(to: URL(fileURLWithPath: base + "/secret.txt"))
            try? manager.createSymbolicLink(atPath: root + "/alias.txt", withDestinationPath: "a.txt")
            try? manager.createSymbolicLink(atPath: root + "/escape", withDestinationPath: base + "/secret.txt")
            try? manager.createSymbolicLink(atPath: root + "/escape-dir", withDestinationPath: base)
        } catch {
            return nil
        }
        guard let resolved = realpath(root, nil) else { return nil }
        defer { free(resolved) }
        return (String(cString: resolved), base + "/secret.txt")
    }()

    /// One request to the file server, as the network gives it: the request target, then
    /// (after a NUL byte, optional) a Range header. Checks what the server promises: a path
    /// resolves to nothing outside the served directory, and a range lies inside the file.
    /// `nil` when all held; otherwise what broke.
    package static func checkFileServerRequest(target: String, range: String?) -> String? {
        guard let tree = fileServerTree else { return nil }
        let root = tree.root
        switch FileServer.resolve(target, root: root) {
        case .file(let path), .directory(let path):
            guard path == root || path.hasPrefix(root + "/") else {
                return "'\(target)' resolved to \(path), outside \(root)"
            }
        case .redirectToDirectory(let location):
            guard location.hasPrefix("/"), !location.hasPrefix("//") else {
                return "'\(target)' redirects to '\(location)', not a path on this server"
            }
        case .notFound, .forbidden, .badRequest:
            break
        }
        guard let range else { return nil }
        for size: Int64 in [0, 1, 6, 1000, Int64.max] {
            if case .range(let first, let last) = FileServer.parseRange(range, size: size) {
                guard first >= 0, first <= last, last < size else {
                    return "Range '\(range)' on \(size) bytes gave \(first)-\(last)"
                }
            }
        }
        return nil
    }
}
