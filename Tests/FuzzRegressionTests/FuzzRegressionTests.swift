import Foundation
import FuzzEntryPoints
import Testing

/// Replays every kept fuzz input (`Fuzz/Corpus/<target>/` seeds and `Fuzz/Regressions/<target>/`
/// past crashes) through the functions the libFuzzer targets call: each must be accepted or
/// refused with a message, never crash or break an invariant.
@Suite struct FuzzRegressionTests {
    /// The `Fuzz/` folder of this checkout.
    static let fuzzFolder = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fuzz")

    /// The kept inputs of one target, from both folders, sorted by path.
    static func inputs(of target: String) -> [URL] {
        var files: [URL] = []
        for folder in ["Corpus", "Regressions"] {
            let directory = fuzzFolder.appendingPathComponent(folder).appendingPathComponent(target)
            let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
            files += names.filter { !$0.hasPrefix(".") }.map { directory.appendingPathComponent($0) }
        }
        return files.sorted { $0.path < $1.path }
    }

    @Test("kept inputs are accepted or cleanly refused", arguments: FuzzEntryPoints.targets.keys.sorted())
    func replay(target: String) throws {
        let entry = try #require(FuzzEntryPoints.targets[target])
        let files = Self.inputs(of: target)
        #expect(!files.isEmpty, "no seed inputs for \(target) under \(Self.fuzzFolder.path)")
        for file in files {
            let bytes = try [UInt8](Data(contentsOf: file))
            switch entry(bytes) {
            case .accepted:
                break
            case .rejected(let message):
                #expect(!message.isEmpty, "\(file.lastPathComponent): refused without a message")
            case .invariantViolated(let problem):
                Issue.record("\(target)/\(file.lastPathComponent): \(problem)")
            }
        }
    }

    @Test("every corpus folder belongs to a known target")
    func foldersNameTargets() {
        let corpus = Self.fuzzFolder.appendingPathComponent("Corpus")
        let names = (try? FileManager.default.contentsOfDirectory(atPath: corpus.path)) ?? []
        for name in names where !name.hasPrefix(".") {
            #expect(FuzzEntryPoints.targets[name] != nil || name == "endpoint-datagram", "unknown target folder \(name)")
        }
    }
}

/// Replays the kept datagrams through a live endpoint on 127.0.0.1, as the
/// `endpoint-datagram` fuzz target does.
@Suite struct EndpointDatagramRegressionTests {
    @Test("kept datagrams leave the endpoint running")
    func replayDatagrams() throws {
        let files = FuzzRegressionTests.inputs(of: "endpoint-datagram")
        #expect(!files.isEmpty, "no seed datagrams")
        let endpoint = try EndpointDatagramTarget.start()
        defer { endpoint.close() }
        for file in files {
            let bytes = try [UInt8](Data(contentsOf: file))
            if case .invariantViolated(let problem) = endpoint.send(bytes) {
                Issue.record("endpoint-datagram/\(file.lastPathComponent): \(problem)")
            }
        }
        // The endpoint still answers after all of them.
        #expect(endpoint.send([0xC0, 0, 0, 0, 1]) == .accepted)
    }
}
