import Foundation
import Testing
@testable import QUIC
import QUICTestSupport

/// Which certificate answers which server name, without sockets; and what a certificate set
/// and store refuse.
@Suite("Certificates chosen by SNI")
struct SNICertificateSetTests {
    @Test("exact names beat wildcards; a wildcard covers one label; case and a trailing dot do not matter")
    func matching() {
        let matcher = SNINameMatcher(names: [["a.example", "*.b.example"], ["x.b.example", "*.example"], ["A.Other."]],
                                     defaultIndex: 0)
        #expect(matcher.entryIndex(for: "a.example") == 0)
        #expect(matcher.entryIndex(for: "A.EXAMPLE.") == 0)
        #expect(matcher.entryIndex(for: "y.b.example") == 0)
        #expect(matcher.entryIndex(for: "x.b.example") == 1, "exact beats the wildcard of an earlier entry")
        #expect(matcher.entryIndex(for: "c.example") == 1)
        #expect(matcher.entryIndex(for: "a.other") == 2)
        // A wildcard is one label: neither the parent itself nor two labels deep.
        let strict = SNINameMatcher(names: [["*.b.example"]], defaultIndex: nil)
        #expect(strict.entryIndex(for: "b.example") == nil)
        #expect(strict.entryIndex(for: "z.y.b.example") == nil)
        #expect(strict.entryIndex(for: ".b.example") == nil)
        #expect(strict.entryIndex(for: "q.b.example") == 0)
        #expect(strict.claims("q.b.example"))
        #expect(!strict.claims("b.example"))
    }

    @Test("no name or an unknown name gets the default; without a default, nothing")
    func defaults() {
        let withDefault = SNINameMatcher(names: [["a.example"], ["b.example"]], defaultIndex: 1)
        #expect(withDefault.entryIndex(for: nil) == 1)
        #expect(withDefault.entryIndex(for: "unknown.example") == 1)
        #expect(withDefault.entryIndex(for: "a.example") == 0)
        let without = SNINameMatcher(names: [["a.example"]], defaultIndex: nil)
        #expect(without.entryIndex(for: nil) == nil)
        #expect(without.entryIndex(for: "unknown.example") == nil)
        #expect(without.entryIndex(for: "") == nil)
    }

    @Test("duplicate names go to the earlier entry; malformed wildcards are ignored")
    func duplicatesAndJunk() {
        let matcher = SNINameMatcher(names: [["dup.example", "*.", "a.*.example", "*"], ["dup.example"]], defaultIndex: nil)
        #expect(matcher.entryIndex(for: "dup.example") == 0)
        #expect(matcher.entryIndex(for: "a.x.example") == nil)
        #expect(matcher.entryIndex(for: "anything") == nil)
    }

    @Test("names come from the certificate's DNS SANs unless given; IP SANs are not names")
    func namesFromCertificates() throws {
        let ca = TestPKI.shared.ca
        let a = try CertificateGenerator.makeLeaf(.init(commonName: "a", dnsNames: ["a.example", "*.a.example"],
                                                        ipAddresses: ["127.0.0.1"]), issuer: ca)
        let b = try CertificateGenerator.makeLeaf(.init(commonName: "b", dnsNames: ["b.example"]), issuer: ca)
        let set = TLSCertificateSet(entries: [
            .init(certificateChain: .pem(a.certificatePEM), privateKey: .pem(a.privateKeyPEM)),
            .init(certificateChain: .pem(b.certificatePEM), privateKey: .pem(b.privateKeyPEM), names: ["given.example"]),
        ])
        let loaded = try LoadedCertificateSet(set)
        #expect(loaded.entries.map(\.names) == [["a.example", "*.a.example"], ["given.example"]])
        #expect(loaded.entries[0].subject == "CN=a")
        #expect(loaded.matcher.entryIndex(for: "x.a.example") == 0)
        #expect(loaded.matcher.entryIndex(for: "given.example") == 1)
        #expect(loaded.matcher.entryIndex(for: "b.example") == 0, "b's SANs were replaced by its given names")
    }

    @Test("unreadable files, a file with no certificate, a mismatched key, an empty set and a bad default are refused")
    func refusals() throws {
        let ca = TestPKI.shared.ca
        let a = try CertificateGenerator.makeLeaf(.init(commonName: "a", dnsNames: ["a.example"]), issuer: ca)
        let b = try CertificateGenerator.makeLeaf(.init(commonName: "b", dnsNames: ["b.example"]), issuer: ca)
        func load(_ entries: [TLSCertificateSet.Entry], defaultIndex: Int? = 0) -> QUICError? {
            do {
                _ = try LoadedCertificateSet(TLSCertificateSet(entries: entries, defaultIndex: defaultIndex))
                return nil
            } catch {
                return error
            }
        }
        let good = TLSCertificateSet.Entry(certificateChain: .pem(a.certificatePEM), privateKey: .pem(a.privateKeyPEM))
        #expect(load([good]) == nil)
        let missing = load([good, .init(certificateChain: .file("/nonexistent/c.pem"), privateKey: .pem(a.privateKeyPEM))])
        #expect(missing == .fileError("certificate entry 2: certificate chain: cannot read /nonexistent/c.pem"))
        let garbage = load([.init(certificateChain: .pem("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"),
                                  privateKey: .pem(a.privateKeyPEM))])
        #expect(garbage?.description.contains("certificate entry 1: no PEM certificate could be read") == true, "\(String(describing: garbage))")
        let mismatched = load([.init(certificateChain: .pem(a.certificatePEM), privateKey: .pem(b.privateKeyPEM))])
        #expect(mismatched?.description.contains("certificate entry 1: certificate chain or private key not usable") == true,
                "\(String(describing: mismatched))")
        let truncatedKey = load([.init(certificateChain: .pem(a.certificatePEM),
                                       privateKey: .pem(String(a.privateKeyPEM.prefix(60))))])
        #expect(truncatedKey != nil)
        #expect(load([]) == .invalidArgument("the certificate set is empty"))
        #expect(load([good], defaultIndex: 3) == .invalidArgument("the default certificate index 3 is out of range"))
    }

    @Test("a store keeps its set when a replacement is refused, and takes a good one")
    func storeReplacement() throws {
        let ca = TestPKI.shared.ca
        let a = try CertificateGenerator.makeLeaf(.init(commonName: "a", dnsNames: ["a.example"]), issuer: ca)
        let b = try CertificateGenerator.makeLeaf(.init(commonName: "b", dnsNames: ["b.example"]), issuer: ca)
        let first = TLSCertificateSet(entries: [.init(certificateChain: .pem(a.certificatePEM), privateKey: .pem(a.privateKeyPEM))])
        let store = try TLSCertificateStore(first)
        // A transport that serves the store sees the set now and each replacement.
        let consumer = RecordingConsumer()
        try store.attach(consumer)
        #expect(consumer.served == [[["a.example"]]])
        let broken = TLSCertificateSet(entries: [.init(certificateChain: .pem(b.certificatePEM), privateKey: .pem(a.privateKeyPEM))])
        #expect(throws: QUICError.self) { try store.replace(with: broken) }
        #expect(store.certificateSet == first)
        #expect(store.generation == 0)
        // A set the files accept but a transport refuses changes nothing either, for any transport.
        consumer.refuseNext = true
        let second = TLSCertificateSet(entries: [.init(certificateChain: .pem(b.certificatePEM), privateKey: .pem(b.privateKeyPEM))])
        #expect(throws: QUICError.self) { try store.replace(with: second) }
        #expect(store.certificateSet == first)
        #expect(consumer.served == [[["a.example"]]])
        try store.replace(with: second)
        #expect(store.certificateSet == second)
        #expect(store.generation == 1)
        #expect(store.servedNames == [["b.example"]])
        #expect(consumer.served == [[["a.example"]], [["b.example"]]])
    }
}

/// Records what a store asks it to serve; can refuse once.
private final class RecordingConsumer: TLSCertificateConsumer, @unchecked Sendable {
    private let lock = NSLock()
    private var _served: [[[String]]] = []
    private var _refuseNext = false
    var served: [[[String]]] { lock.withLock { _served } }
    var refuseNext: Bool {
        get { lock.withLock { _refuseNext } }
        set { lock.withLock { _refuseNext = newValue } }
    }

    func prepare(_ set: LoadedCertificateSet) throws -> () -> Void {
        let refuse = lock.withLock { () -> Bool in
            defer { _refuseNext = false }
            return _refuseNext
        }
        if refuse { throw QUICError.invalidArgument("refused by the test") }
        let names = set.entries.map(\.names)
        return { [self] in lock.withLock { _served.append(names) } }
    }
}
