import Foundation

/// A fresh, empty directory for one test's qlog files.
public func makeQlogDirectory() throws -> URL {
    let directory = TestPKI.shared.directory.appendingPathComponent("qlog-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    return directory
}

/// Reads ngtcp2's JSON-SEQ qlog files in a directory: evidence of what really went on the
/// wire, from the peer's own records rather than our flags.
public struct Qlog {
    /// One event: its name (such as "transport:packet_sent"), the packet type for packet
    /// events ("initial", "0RTT", "1RTT", ...), and the frames it lists.
    public struct Event {
        public var name: String
        public var packetType: String?
        public var frameTypes: [String]
        /// The stream IDs of its STREAM frames.
        public var streamIDs: [Int64]
        /// The token length of an Initial packet's header, when it has one.
        public var tokenLength: Int?
    }

    public var events: [Event]

    /// The events of the files in `directory` whose names end in `_<role>.sqlog` (none yet: empty).
    public init(directory: URL, role: String) throws {
        try self.init(directory: directory, fileSuffix: "_\(role).sqlog")
    }

    /// The events of the files in `directory` whose names end in `fileSuffix` (ngtcp2's
    /// example programs name theirs `<connection ID>.sqlog`).
    public init(directory: URL, fileSuffix: String) throws {
        let names = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(fileSuffix) }
        events = []
        for name in names.sorted() {
            let data = try Data(contentsOf: directory.appendingPathComponent(name))
            // JSON-SEQ: records start with RS (0x1E). The last one may still be being written.
            for record in data.split(separator: 0x1E) {
                guard let object = try? JSONSerialization.jsonObject(with: Data(record)) as? [String: Any],
                      let name = object["name"] as? String else { continue }
                let body = object["data"] as? [String: Any]
                let header = body?["header"] as? [String: Any]
                let frames = (body?["frames"] as? [[String: Any]]) ?? []
                let streamIDs = frames.filter { $0["frame_type"] as? String == "stream" }
                    .compactMap { ($0["stream_id"] as? NSNumber)?.int64Value }
                let token = (header?["token"] as? [String: Any])
                events.append(Event(name: name, packetType: header?["packet_type"] as? String,
                                    frameTypes: frames.compactMap { $0["frame_type"] as? String }, streamIDs: streamIDs,
                                    tokenLength: (token?["length"] as? NSNumber)?.intValue))
            }
        }
    }

    /// How many events named `name` carry a frame of type `frame`.
    public func count(_ name: String, withFrame frame: String) -> Int {
        events.filter { $0.name == name && $0.frameTypes.contains(frame) }.count
    }

    /// Packets sent with a PATH_CHALLENGE frame.
    public var pathChallengesSent: Int { count("transport:packet_sent", withFrame: "path_challenge") }
    /// Packets received with a PATH_RESPONSE frame.
    public var pathResponsesReceived: Int { count("transport:packet_received", withFrame: "path_response") }

    /// The stream IDs of STREAM frames in packets of type `packetType` named `name` (for
    /// example 0-RTT packets a server received), with repeats.
    public func streamIDs(_ name: String, packetType: String) -> [Int64] {
        events.filter { $0.name == name && $0.packetType == packetType }.flatMap(\.streamIDs)
    }
}
