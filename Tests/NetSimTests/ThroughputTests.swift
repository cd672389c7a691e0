import Glibc
import NetSim
import Testing

/// A counter shared by the sending and receiving threads.
private final class SharedCounter: @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    private var count = 0

    init() { pthread_mutex_init(&mutex, nil) }
    deinit { pthread_mutex_destroy(&mutex) }

    var value: Int {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return count
    }

    func add(_ n: Int) {
        pthread_mutex_lock(&mutex)
        count += n
        pthread_mutex_unlock(&mutex)
    }
}

@Suite("Throughput")
struct ThroughputTests {
    /// Moves 100 MB of 1200-byte datagrams client→server through an unimpaired relay, keeping
    /// at most 1000 datagrams in flight so no socket buffer overflows, and reports the rate.
    @Test("100 MB of 1200-byte datagrams pass an unimpaired relay without loss")
    func bulkForwarding() async throws {
        let server = try UDPTestSocket()
        let client = try UDPTestSocket()
        let relay = try startRelay(to: server)
        defer { relay.stop() }
        let size = 1200
        let total = 100_000_000 / size
        let window = 1000
        let received = SharedCounter()
        let destination = try UDPTestSocket.storage(for: relay.listenAddress)
        let clock = ContinuousClock()
        let started = clock.now

        async let receiving: Int = onThread {
            var buffer = [UInt8](repeating: 0, count: 65536)
            var count = 0
            var bytes = 0
            var idle = 0
            while count < total, idle < 500 {   // gives up after ~10 s without data (the machine may be busy)
                let n = buffer.withUnsafeMutableBytes { recv(server.descriptor, $0.baseAddress, $0.count, 0) }
                if n < 0 { idle += 1; continue }
                idle = 0
                count += 1
                bytes += n
                if count % 64 == 0 { received.add(64) }
            }
            return bytes
        }
        let sent: Int = try await onThread {
            var storage = destination
            let payload = [UInt8](repeating: 0x5A, count: size)
            var sent = 0
            var stalled = 0
            while sent < total, stalled < 20000 {   // gives up after ~10 s without progress
                if sent - received.value >= window {
                    usleep(500)
                    stalled += 1
                    continue
                }
                stalled = 0
                let n = payload.withUnsafeBytes { raw in
                    withUnsafePointer(to: &storage) {
                        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                            sendto(client.descriptor, raw.baseAddress, raw.count, 0, $0,
                                   socklen_t(MemoryLayout<sockaddr_in>.size))
                        }
                    }
                }
                if n == size { sent += 1 }
            }
            return sent
        }
        let bytes = try await receiving
        let elapsed = clock.now - started
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let rate = Double(bytes) / seconds / 1e6
        print("NetSim throughput: \(bytes) bytes in \(elapsed): \(Int(rate)) MB/s, "
              + "\(Int(Double(bytes / size) / seconds)) datagrams/s")
        #expect(sent == total)
        #expect(bytes == total * size)
        relay.stop()   // the final counters
        #expect(relay.statistics.toServer.forwarded == total)
        // The rate is printed, not asserted: this machine is shared (speed lives in Benchmarks/).
    }
}
