import CoreMetrics

/// What a server reports through swift-metrics: whether it reports at all, the prefix of every
/// metric name, fixed dimensions added to every metric, and the backend.
///
/// Labels stay bounded: no metric carries a per-connection or per-client label. Names are
/// `PREFIX_quic_…` for the transport and `PREFIX_http_…` for HTTP (see the README's table).
public struct QUICMetricsConfiguration: Sendable, Hashable {
    /// Whether the server creates and updates metrics (a disabled server makes none).
    public var isEnabled: Bool
    /// The first part of every metric name, joined with `_` (empty: none).
    public var prefix: String
    /// Dimensions added to every metric, such as `("server", "edge-1")`; keep them few and fixed.
    public var dimensions: [(String, String)]
    /// The backend; `nil` uses `MetricsSystem.factory` as it is when the server is bound (so
    /// bootstrap the metrics system first).
    public var factory: (any MetricsFactory)?

    /// Creates a metrics configuration.
    public init(isEnabled: Bool = true, prefix: String = "swift_h3", dimensions: [(String, String)] = [],
                factory: (any MetricsFactory)? = nil) {
        self.isEnabled = isEnabled
        self.prefix = prefix
        self.dimensions = dimensions
        self.factory = factory
    }

    /// Metrics switched off.
    public static var disabled: QUICMetricsConfiguration { QUICMetricsConfiguration(isEnabled: false) }

    /// Compares everything but ``factory``, which has no identity to compare (only whether one is set).
    public static func == (lhs: QUICMetricsConfiguration, rhs: QUICMetricsConfiguration) -> Bool {
        lhs.isEnabled == rhs.isEnabled && lhs.prefix == rhs.prefix
            && lhs.dimensions.map(\.0) == rhs.dimensions.map(\.0) && lhs.dimensions.map(\.1) == rhs.dimensions.map(\.1)
            && (lhs.factory == nil) == (rhs.factory == nil)
    }

    /// Hashes what ``==`` compares.
    public func hash(into hasher: inout Hasher) {
        hasher.combine(isEnabled)
        hasher.combine(prefix)
        for (key, value) in dimensions {
            hasher.combine(key)
            hasher.combine(value)
        }
        hasher.combine(factory == nil)
    }

    /// The full metric name for `name` (`PREFIX_name`).
    package func label(_ name: String) -> String {
        prefix.isEmpty ? name : prefix + "_" + name
    }

    /// The backend to create metrics with.
    package var resolvedFactory: any MetricsFactory { factory ?? MetricsSystem.factory }

    /// Creates a counter with the fixed dimensions plus `extra`.
    package func counter(_ name: String, _ extra: [(String, String)] = []) -> Counter {
        Counter(label: label(name), dimensions: dimensions + extra, factory: resolvedFactory)
    }

    /// Creates a meter (a gauge that goes up and down) with the fixed dimensions plus `extra`.
    package func meter(_ name: String, _ extra: [(String, String)] = []) -> Meter {
        Meter(label: label(name), dimensions: dimensions + extra, factory: resolvedFactory)
    }

    /// Creates a timer (a histogram of durations) with the fixed dimensions plus `extra`.
    package func timer(_ name: String, _ extra: [(String, String)] = []) -> CoreMetrics.Timer {
        CoreMetrics.Timer(label: label(name), dimensions: dimensions + extra, factory: resolvedFactory)
    }
}
