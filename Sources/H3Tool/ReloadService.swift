import ServiceLifecycle
import UnixSignals

/// `h3 serve`'s SIGHUP handling as a `Service` in its `ServiceGroup`: each SIGHUP runs
/// `reload` (certificates, proxy routes), until the group shuts down. The signal is trapped when
/// the sequence is made, before the group starts, so none is lost while starting up.
struct ReloadService: Service {
    let hangups: UnixSignalsSequence
    let reload: @Sendable () -> Void

    init(hangups: UnixSignalsSequence, reload: @escaping @Sendable () -> Void) {
        self.hangups = hangups
        self.reload = reload
    }

    func run() async throws {
        for await _ in hangups.cancelOnGracefulShutdown() {
            reload()
        }
    }
}
