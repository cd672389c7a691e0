// The quic-interop-runner endpoint: reads the runner's environment (ROLE, TESTCASE,
// REQUESTS, SSLKEYLOGFILE, QLOGDIR; local overrides WWW, DOWNLOADS, CERTS, PORT,
// BIND_ADDRESS) and runs one test case as client or server. Exit 0 on success, 1 on failure,
// 127 for a test case this endpoint does not support.
import Foundation

let environment = ProcessInfo.processInfo.environment
let settings: EndpointSettings
do {
    settings = try EndpointSettings(environment)
} catch {
    FileHandle.standardError.write(Data("interop-endpoint: \(error)\n".utf8))
    exit(error is UnsupportedTestCase ? 127 : 1)
}

do {
    switch settings.role {
    case .server: try await InteropServer(settings).run()
    case .client: try await InteropClient(settings).run()
    }
    exit(0)
} catch {
    FileHandle.standardError.write(Data("interop-endpoint: \(settings.role) \(settings.testCase): \(error)\n".utf8))
    exit(error is UnsupportedTestCase ? 127 : 1)
}
