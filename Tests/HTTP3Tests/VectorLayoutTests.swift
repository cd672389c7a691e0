import HTTP3
import QUIC
import Testing

/// The writer hands arrays of our own vector type to ngtcp2 and nghttp3 without copying: the
/// layouts must agree.
@Suite("QUICIOVector and the C vector types")
struct VectorLayoutTests {
    @Test("QUICIOVector is laid out like ngtcp2_vec and nghttp3_vec")
    func layouts() {
        #expect(QUICIOVector.matchesCLayout)
        #expect(QUICIOVector.matchesNghttp3Layout)
    }
}
