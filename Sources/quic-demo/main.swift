// quic-demo: the quickest look at the transport. Starts a QUIC echo server on 127.0.0.1 with
// a freshly generated self-signed certificate, connects a client that trusts exactly that
// certificate, sends a message on a stream, prints the echo, and shuts both down.
//
// Usage: swift run quic-demo [MESSAGE]
import Foundation
import NIOCore
import QUIC

@main
struct QUICDemo {
    static func main() async {
        let message = CommandLine.arguments.dropFirst().joined(separator: " ")
        do {
            try await run(message: message.isEmpty ? "hello over QUIC" : message)
        } catch {
            FileHandle.standardError.write(Data("quic-demo: \(error)\n".utf8))
            exit(1)
        }
    }

    static func run(message: String) async throws {
        let certificate = try CertificateGenerator.makeLeaf(
            .init(commonName: "localhost", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"]))
        print("generated a self-signed certificate, SHA-256 \(certificate.sha256Fingerprint)")

        let serverTLS = QUICTLSConfiguration.makeServerConfiguration(
            certificateChain: .pem(certificate.certificatePEM), privateKey: .pem(certificate.privateKeyPEM),
            applicationProtocols: ["echo"])
        let listener = try await QUICListener.bind(
            host: "127.0.0.1", port: 0, configuration: QUICServerConfiguration(quic: QUICConfiguration(tls: serverTLS)))
        let port = listener.localAddress.port ?? 0
        print("server listening on udp://127.0.0.1:\(port)")

        let server = Task {
            for await connection in listener.connections {
                for await stream in connection.incomingStreams {
                    while let chunk = try await stream.read() { try await stream.write(chunk) }
                    try await stream.finish()
                }
            }
        }

        var clientTLS = QUICTLSConfiguration.makeClientConfiguration(applicationProtocols: ["echo"])
        clientTLS.trustRoots = .certificates(.pem(certificate.certificatePEM))
        clientTLS.serverName = "localhost"
        let started = ContinuousClock.now
        let connection = try await QUICClient.connect(host: "127.0.0.1", port: port,
                                                      configuration: QUICConfiguration(tls: clientTLS))
        print("handshake done in \(ContinuousClock.now - started), ALPN \(connection.negotiatedApplicationProtocol ?? "-")")
        let stream = try await connection.openStream()
        try await stream.write(Array(message.utf8))
        try await stream.finish()
        let echo = try await stream.readAll(limit: 1 << 20)
        print("echo: \(String(buffer: echo))")
        await connection.close()
        await listener.close()
        server.cancel()
    }
}
