import Glibc
import NetSim
import Testing

@Suite("Life cycle and configuration")
struct LifecycleTests {
    @Test("stop() is idempotent, frees the listening port and later rebinds throw")
    func stopIsIdempotent() throws {
        let server = try UDPTestSocket()
        let relay = try startRelay(to: server)
        let port = relay.listenAddress.port
        #expect(port != 0)
        // While it runs, the port is taken.
        #expect(throws: (any Error).self) { _ = try UDPTestSocket(port: port) }
        relay.stop()
        relay.stop()
        _ = try UDPTestSocket(port: port)
        #expect {
            try relay.rebind(.port)
        } throws: { error in
            (error as? NetSimError)?.kind == .stopped
        }
    }

    @Test("stop() from several threads at once returns in all of them")
    func concurrentStop() async throws {
        let server = try UDPTestSocket()
        let relay = try startRelay(to: server)
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<4 {
                group.addTask { relay.stop() }
            }
        }
        #expect(relay.statistics.toServer.received == 0)
    }

    @Test("Bad configurations are refused with clear errors")
    func badConfiguration() throws {
        #expect(throws: NetSimError.self) { try NetworkAddress(parsing: "127.0.0.1") }
        #expect(throws: NetSimError.self) { try NetworkAddress(parsing: "localhost:80") }
        #expect(throws: NetSimError.self) { try NetworkAddress(parsing: "127.0.0.1:99999") }
        #expect(throws: NetSimError.self) { try NetworkAddress(parsing: "::1:80") }
        #expect(try NetworkAddress(parsing: "[::1]:80").isIPv6)
        #expect(try NetworkAddress(parsing: "[::1]:80").description == "[::1]:80")

        let server = try UDPTestSocket()
        func failure(_ adjust: (inout NetworkSimulator.Configuration) -> Void) -> NetSimError.Kind? {
            do {
                let relay = try startRelay(to: server, adjust)
                relay.stop()
                return nil
            } catch {
                return (error as? NetSimError)?.kind
            }
        }
        #expect(failure { $0.toServer.lossProbability = 1.5 } == .invalidConfiguration)
        #expect(failure { $0.toClient.rateBytesPerSecond = 0 } == .invalidConfiguration)
        #expect(failure { $0.toServer.dropIndices = [0...2] } == .invalidConfiguration)
        #expect(failure { $0.toServer.delay = .milliseconds(-1) } == .invalidConfiguration)
        // 192.0.2.1 (TEST-NET) is not a local address: binding fails.
        #expect(failure { $0.listenAddress = try! NetworkAddress(parsing: "192.0.2.1:0") } == .socketFailure)
        #expect(failure { $0.outgoingHost = "::1" } == .invalidAddress)
        #expect(failure { $0.scheduledRebinds = [.init(.address("::1"), .after(.seconds(1)))] }
                    == .invalidAddress)
        // A port in use.
        let taken = try UDPTestSocket()
        #expect(failure { $0.listenAddress = taken.address } == .socketFailure)
    }
}
