import HTTPAPI
import Testing

@Suite("Alt-Svc header parsing (RFC 7838)")
struct AltSvcParserTests {
    @Test("one h3 alternative on the same host, with ma")
    func simple() throws {
        let field = try AltSvcField.parse(#"h3=":443"; ma=3600"#)
        #expect(field == .alternatives([AltService(protocolID: "h3", host: "", port: 443, maxAge: 3600)]))
    }

    @Test("clear, alone and with surrounding whitespace; Clear is not clear")
    func clear() throws {
        #expect(try AltSvcField.parse("clear") == .clear)
        #expect(try AltSvcField.parse("  clear \t") == .clear)
        #expect(throws: AltSvcParseError.self) { try AltSvcField.parse("Clear") }
        #expect(throws: AltSvcParseError.self) { try AltSvcField.parse("clear, h3=\":443\"") }
    }

    @Test("several alternatives in order, with defaults, persist, host names and IPv6 literals")
    func several() throws {
        let value = #"h3="alt.example.com:8443"; ma=60; persist=1, h2=":443", h3-29="[2001:db8::1]:443";persist=0"#
        let field = try AltSvcField.parse(value)
        #expect(field == .alternatives([
            AltService(protocolID: "h3", host: "alt.example.com", port: 8443, maxAge: 60, persist: true),
            AltService(protocolID: "h2", host: "", port: 443, maxAge: AltService.defaultMaxAge),
            AltService(protocolID: "h3-29", host: "2001:db8::1", port: 443),
        ]))
    }

    @Test("unknown parameters are ignored, quoted parameter values are allowed, the first ma counts")
    func unknownParameters() throws {
        let field = try AltSvcField.parse(#"h3=":443"; foo=bar; v="1,2;3"; ma="120"; ma=5"#)
        #expect(field == .alternatives([AltService(protocolID: "h3", host: "", port: 443, maxAge: 120)]))
    }

    @Test("percent-encoded protocol ids and escaped alt-authorities are decoded")
    func escapes() throws {
        let field = try AltSvcField.parse(#"w%3Dx%3Ay="\e\x\a\m\p\l\e.com:1234""#)
        #expect(field == .alternatives([AltService(protocolID: "w=x:y", host: "example.com", port: 1234)]))
        // The description encodes what the parser decodes.
        let alternative = AltService(protocolID: "w=x:y", host: "example.com", port: 1234, maxAge: 10, persist: true)
        #expect(try AltSvcField.parse(alternative.description) == .alternatives([alternative]))
    }

    @Test("empty list elements are skipped; huge ma saturates")
    func listSyntax() throws {
        let field = try AltSvcField.parse(#" , h3=":1" ,, h3=":2"; ma=99999999999999999999 ,"#)
        #expect(field == .alternatives([AltService(protocolID: "h3", host: "", port: 1),
                                        AltService(protocolID: "h3", host: "", port: 2, maxAge: Int64(Int32.max))]))
    }

    @Test("malformed values are refused with a reason", arguments: [
        "", " ", ",", "h3", "h3=", "h3=:443", #"h3="":443"#, #"h3=":443"#, #"h3="443""#, #"h3=":0""#, #"h3=":65536""#,
        #"h3=":44a""#, #"h3=":443" ma=1"#, #"h3=":443"; ma=-1"#, #"h3=":443"; ma"#, #"h3=":443";=1"#,
        #"h3="[::1:443""#, #"h3="a b:443""#, #"h3="\"#, #"%zz=":443""#, #"h3=":443" h2=":443""#, "=\":443\"",
        #"h3="[zz]:443""#, "h3=\":443\u{1}\"",
    ])
    func malformed(_ value: String) {
        #expect(throws: AltSvcParseError.self, "\(value)") { try AltSvcField.parse(value) }
    }

    @Test("over-long values and too many alternatives are refused")
    func bounds() {
        let many = Array(repeating: #"h3=":443""#, count: AltSvcField.maxAlternatives + 1).joined(separator: ",")
        #expect(throws: AltSvcParseError.self) { try AltSvcField.parse(many) }
        let long = #"h3=":443"; x=""# + String(repeating: "a", count: AltSvcField.maxLength) + "\""
        #expect(throws: AltSvcParseError.self) { try AltSvcField.parse(long) }
    }

    @Test("random and mutated input never crashes, and anything accepted is well-formed")
    func robustness() throws {
        var generator = SplitMix(seed: 0x5eed)
        let alphabet = Array(#"h3=":;,"\ []%0123456789abcdefmapersistclear."#.utf8) + [0x00, 0x09, 0x7f, 0xc3, 0xa9]
        let seeds = [#"h3=":443"; ma=3600"#, #"h3="alt.example:1"; persist=1, h2=":2""#, "clear",
                     #"h3="[::1]:8443"; ma=1; x="a\"b""#]
        var accepted = 0
        for round in 0..<20_000 {
            var bytes: [UInt8]
            if round % 2 == 0 {
                bytes = (0..<Int(generator.next() % 64)).map { _ in alphabet[Int(generator.next() % UInt64(alphabet.count))] }
            } else {
                bytes = Array(seeds[Int(generator.next() % UInt64(seeds.count))].utf8)
                for _ in 0..<(1 + generator.next() % 4) where !bytes.isEmpty {
                    let position = Int(generator.next() % UInt64(bytes.count))
                    switch generator.next() % 3 {
                    case 0: bytes[position] = alphabet[Int(generator.next() % UInt64(alphabet.count))]
                    case 1: bytes.remove(at: position)
                    default: bytes.insert(alphabet[Int(generator.next() % UInt64(alphabet.count))], at: position)
                    }
                }
            }
            let text = String(decoding: bytes, as: UTF8.self)
            guard let field = try? AltSvcField.parse(text) else { continue }
            accepted += 1
            if case .alternatives(let list) = field {
                #expect(!list.isEmpty && list.count <= AltSvcField.maxAlternatives)
                for alternative in list {
                    #expect((1...65535).contains(alternative.port), "\(text)")
                    #expect(alternative.maxAge >= 0 && !alternative.protocolID.isEmpty, "\(text)")
                    // What was accepted prints back to a value that parses to the same thing.
                    #expect(try AltSvcField.parse(alternative.description) == .alternatives([alternative]), "\(text)")
                }
            }
        }
        #expect(accepted > 100, "mutations of valid values are often still valid (\(accepted))")
    }
}

/// A small deterministic random generator for the robustness tests.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
