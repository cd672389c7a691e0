internal import CNgtcp2

extension QUICIOVector {
    /// Whether ``QUICIOVector`` is laid out like `ngtcp2_vec`, so that the writer can hand an
    /// array of them to `ngtcp2_conn_writev_stream` as it is (checked by a unit test).
    package static var matchesCLayout: Bool {
        MemoryLayout<QUICIOVector>.size == MemoryLayout<ngtcp2_vec>.size
            && MemoryLayout<QUICIOVector>.stride == MemoryLayout<ngtcp2_vec>.stride
            && MemoryLayout<QUICIOVector>.alignment == MemoryLayout<ngtcp2_vec>.alignment
            && MemoryLayout<QUICIOVector>.offset(of: \.base) == MemoryLayout<ngtcp2_vec>.offset(of: \.base)
            && MemoryLayout<QUICIOVector>.offset(of: \.length) == MemoryLayout<ngtcp2_vec>.offset(of: \.len)
    }
}
