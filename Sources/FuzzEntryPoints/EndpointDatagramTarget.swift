import Dispatch
import NIOCore
import QUIC

/// A QUIC server endpoint bound on 127.0.0.1 (ALPN `h3`, a self-signed certificate), to which
/// fuzz inputs are handed one datagram at a time, from a fixed loopback client address. The
/// endpoint keeps its state between inputs (connections half set up by earlier inputs), as a
/// server on the network would. Replies go out through its real socket to a port nobody reads.
public final class EndpointDatagramTarget: Sendable {
    private let listener: QUICListener
    private let peer: SocketAddress

    /// Why the endpoint could not be started.
    public struct StartError: Error, CustomStringConvertible {
        /// What failed.
        public var description: String
    }

    private init(listener: QUICListener, peer: SocketAddress) {
        self.listener = listener
        self.peer = peer
    }

    /// Binds the endpoint, waiting at most `timeout` seconds.
    public static func start(timeout: Double = 30) throws(StartError) -> EndpointDatagramTarget {
        let certificate: GeneratedCertificate
        let peer: SocketAddress
        do {
            certificate = try CertificateGenerator.makeLeaf(.init(commonName: "localhost", dnsNames: ["localhost"],
                                                                  ipAddresses: ["127.0.0.1"]))
            peer = try SocketAddress(ipAddress: "127.0.0.1", port: 9)  // discard: nothing answers
        } catch {
            throw StartError(description: "cannot make the endpoint's certificate: \(error)")
        }
        let tls = QUICTLSConfiguration.makeServerConfiguration(certificateChain: .pem(certificate.certificatePEM),
                                                              privateKey: .pem(certificate.privateKeyPEM),
                                                              applicationProtocols: ["h3"])
        let configuration = QUICServerConfiguration(quic: QUICConfiguration(tls: tls, handshakeTimeout: .seconds(5)),
                                                    maxConnections: 1000)
        let result = Waiter<Result<QUICListener, any Error>>()
        Task {
            do {
                result.set(.success(try await QUICListener.bind(host: "127.0.0.1", port: 0, configuration: configuration)))
            } catch {
                result.set(.failure(error))
            }
        }
        switch result.wait(seconds: timeout) {
        case .success(let listener)?: return EndpointDatagramTarget(listener: listener, peer: peer)
        case .failure(let error)?: throw StartError(description: "cannot bind the endpoint: \(error)")
        case nil: throw StartError(description: "the endpoint did not start within \(timeout) s")
        }
    }

    /// Hands one datagram to the endpoint and waits (at most `timeout` seconds) until it has
    /// been handled. Whatever the bytes, the endpoint must survive: the outcome is
    /// ``FuzzOutcome/accepted`` once handled (the endpoint answers or drops it as it sees fit).
    public func send(_ datagram: [UInt8], timeout: Double = 10) -> FuzzOutcome {
        let done = Waiter<Result<Void, any Error>>()
        let listener = self.listener, peer = self.peer
        Task {
            do {
                try await listener.receive(datagram: datagram, from: peer)
                done.set(.success(()))
            } catch {
                done.set(.failure(error))
            }
        }
        switch done.wait(seconds: timeout) {
        case .success?: return .accepted
        case .failure(let error)?: return .rejected("the endpoint refused the datagram: \(error)")
        case nil: return .invariantViolated("the endpoint did not handle a datagram within \(timeout) s")
        }
    }

    /// Closes the endpoint (waiting at most `timeout` seconds).
    public func close(timeout: Double = 10) {
        let done = Waiter<Bool>()
        let listener = self.listener
        Task {
            await listener.close()
            done.set(true)
        }
        _ = done.wait(seconds: timeout)
    }
}

/// A value set once by a task and waited for, with a time limit, by a thread that is not one.
/// `@unchecked Sendable`: `value` is written once before the semaphore is signalled and read
/// only after the wait returns, so the semaphore orders the two.
private final class Waiter<Value>: @unchecked Sendable {
    private let semaphore = DispatchSemaphore(value: 0)
    private var value: Value?

    func set(_ value: Value) {
        self.value = value
        semaphore.signal()
    }

    func wait(seconds: Double) -> Value? {
        guard semaphore.wait(timeout: .now() + .milliseconds(Int(seconds * 1000))) == .success else { return nil }
        return value
    }
}
