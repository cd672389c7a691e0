internal import CNghttp3
import QUIC

/// Owns one `nghttp3_conn`: creates it with our callback table, frees it in `deinit`, and is
/// the only place that calls the nghttp3 API. Callbacks reach the ``HTTP3Session`` through
/// nghttp3's user data (unretained: the session owns this object, so it outlives the
/// `nghttp3_conn`); each callback tolerates a nil user data.
///
/// Confined to the connection's event loop, like its session.
final class NGHTTP3Connection {
    private let conn: OpaquePointer

    /// Creates the connection for `role`, its callbacks delivered to `session`.
    init(role: HTTP3Session.Role, settings: HTTP3Settings, session: HTTP3Session) throws(QUICError) {
        var callbacks = Self.callbacks()
        var h3Settings = nghttp3_settings()
        swift_nghttp3_settings_default(&h3Settings)
        h3Settings.max_field_section_size = UInt64(max(0, settings.maxHeaderSectionSize))
        h3Settings.qpack_max_dtable_capacity = max(0, settings.qpackTableCapacity)
        h3Settings.qpack_encoder_max_dtable_capacity = max(0, settings.qpackTableCapacity)
        h3Settings.qpack_blocked_streams = max(0, settings.qpackBlockedStreams)
        var conn: OpaquePointer?
        let userData = Unmanaged.passUnretained(session).toOpaque()
        let rv = role == .client
            ? swift_nghttp3_conn_client_new(&conn, &callbacks, &h3Settings, nil, userData)
            : swift_nghttp3_conn_server_new(&conn, &callbacks, &h3Settings, nil, userData)
        guard rv == 0, let conn else { throw .internalError("nghttp3_conn_new: \(nghttp3Message(rv))") }
        self.conn = conn
    }

    deinit {
        nghttp3_conn_del(conn)
    }

    // MARK: - Messages

    /// Submits a request head on `streamID`; its body is pulled through the read-data callback.
    func submitRequest(streamID: Int64, fields: [(String, String)], hasBody: Bool) -> Int32 {
        var reader = nghttp3_data_reader(read_data: Self.readData)
        return withHeaderVector(fields) { nva in
            hasBody ? nghttp3_conn_submit_request(conn, streamID, nva.baseAddress, nva.count, &reader, nil)
                    : nghttp3_conn_submit_request(conn, streamID, nva.baseAddress, nva.count, nil, nil)
        }
    }

    /// Submits a final response head; the body is pulled through the read-data callback.
    func submitResponse(streamID: Int64, fields: [(String, String)]) -> Int32 {
        var reader = nghttp3_data_reader(read_data: Self.readData)
        return withHeaderVector(fields) { nva in
            nghttp3_conn_submit_response(conn, streamID, nva.baseAddress, nva.count, &reader)
        }
    }

    /// Submits an informational (1xx) head.
    func submitInformational(streamID: Int64, fields: [(String, String)]) -> Int32 {
        withHeaderVector(fields) { nva in nghttp3_conn_submit_info(conn, streamID, nva.baseAddress, nva.count) }
    }

    /// Submits trailers (from inside the read-data callback, after the last body bytes).
    func submitTrailers(streamID: Int64, fields: [(String, String)]) -> Int32 {
        withHeaderVector(fields) { nva in nghttp3_conn_submit_trailers(conn, streamID, nva.baseAddress, nva.count) }
    }

    // MARK: - Streams

    /// Binds the control stream and the QPACK encoder and decoder streams. `false` on failure.
    func bindControlStreams(control: Int64, encoder: Int64, decoder: Int64) -> Bool {
        nghttp3_conn_bind_control_stream(conn, control) == 0 && nghttp3_conn_bind_qpack_streams(conn, encoder, decoder) == 0
    }

    /// Server: how many request streams the client may open in total.
    func setMaxClientBidirectionalStreams(_ count: UInt64) {
        nghttp3_conn_set_max_client_streams_bidi(conn, count)
    }

    /// Feeds received stream data; the bytes consumed or a negative nghttp3 error.
    func readStream(streamID: Int64, data: UnsafeRawBufferPointer, fin: Bool) -> Int {
        Int(nghttp3_conn_read_stream(conn, streamID, data.baseAddress?.assumingMemoryBound(to: UInt8.self),
                                     data.count, fin ? 1 : 0))
    }

    /// Asks for stream data to send into `vectors`: the stream (negative if none), the number
    /// of vectors filled (negative nghttp3 error) and whether the stream ends.
    func writeStream(into vectors: UnsafeMutableBufferPointer<QUICIOVector>) -> (streamID: Int64, count: Int, fin: Bool) {
        guard let base = vectors.baseAddress else { return (-1, 0, false) }
        var streamID: Int64 = -1
        var fin: Int32 = 0
        let count = base.withMemoryRebound(to: nghttp3_vec.self, capacity: vectors.count) {
            nghttp3_conn_writev_stream(conn, &streamID, &fin, $0, vectors.count)
        }
        return (streamID, Int(count), fin != 0)
    }

    func addWriteOffset(streamID: Int64, bytes: Int) -> Int32 { nghttp3_conn_add_write_offset(conn, streamID, bytes) }
    func addAckOffset(streamID: Int64, bytes: UInt64) -> Int32 { nghttp3_conn_add_ack_offset(conn, streamID, bytes) }
    func closeStream(streamID: Int64, code: UInt64) -> Int32 { nghttp3_conn_close_stream(conn, streamID, code) }
    func shutdownStreamRead(streamID: Int64) { _ = nghttp3_conn_shutdown_stream_read(conn, streamID) }
    func shutdownStreamWrite(streamID: Int64) { nghttp3_conn_shutdown_stream_write(conn, streamID) }
    func blockStream(streamID: Int64) { nghttp3_conn_block_stream(conn, streamID) }
    func unblockStream(streamID: Int64) { _ = nghttp3_conn_unblock_stream(conn, streamID) }
    func resumeStream(streamID: Int64) { _ = nghttp3_conn_resume_stream(conn, streamID) }

    /// The first GOAWAY of a graceful shutdown (announces it).
    func submitShutdownNotice() { _ = nghttp3_conn_submit_shutdown_notice(conn) }
    /// The final GOAWAY (the last stream that will be served).
    func shutdown() { _ = nghttp3_conn_shutdown(conn) }

    // MARK: - Error codes

    static let wouldBlock = Int(NGHTTP3_ERR_WOULDBLOCK)
    static let callbackFailure = Int(NGHTTP3_ERR_CALLBACK_FAILURE)
    static let streamNotFound = Int32(NGHTTP3_ERR_STREAM_NOT_FOUND)
    static let dataFlagEOF = UInt32(NGHTTP3_DATA_FLAG_EOF)
    static let dataFlagNoEndStream = UInt32(NGHTTP3_DATA_FLAG_NO_END_STREAM)

    /// The HTTP/3 application error code for an nghttp3 error.
    static func applicationErrorCode(_ error: Int32) -> UInt64 { nghttp3_err_infer_quic_app_error_code(error) }
}

/// The text of an nghttp3 error code.
func nghttp3Message(_ code: Int32) -> String {
    guard let text = nghttp3_strerror(code) else { return "nghttp3 error \(code)" }
    return String(cString: text)
}

/// Calls `body` with an `nghttp3_nv` array for the fields (nghttp3 copies what it needs).
private func withHeaderVector<R>(_ fields: [(String, String)], _ body: (UnsafeMutableBufferPointer<nghttp3_nv>) -> R) -> R {
    var storage: [UInt8] = []
    var ranges: [(Int, Int, Int, Int)] = []
    for (name, value) in fields {
        let nameStart = storage.count
        storage.append(contentsOf: name.utf8)
        let valueStart = storage.count
        storage.append(contentsOf: value.utf8)
        ranges.append((nameStart, valueStart - nameStart, valueStart, storage.count - valueStart))
    }
    storage.append(0)
    return storage.withUnsafeMutableBufferPointer { bytes in
        guard let base = bytes.baseAddress else {
            var empty: [nghttp3_nv] = []
            return empty.withUnsafeMutableBufferPointer { body($0) }
        }
        var nva = ranges.map { range in
            nghttp3_nv(name: base + range.0, value: base + range.2, namelen: range.1, valuelen: range.3,
                       flags: UInt8(NGHTTP3_NV_FLAG_NONE))
        }
        return nva.withUnsafeMutableBufferPointer { body($0) }
    }
}

extension QUICIOVector {
    /// Whether ``QUICIOVector`` is laid out like `nghttp3_vec`, so that nghttp3 fills and
    /// reads our vectors as they are (checked by a unit test).
    package static var matchesNghttp3Layout: Bool {
        MemoryLayout<QUICIOVector>.size == MemoryLayout<nghttp3_vec>.size
            && MemoryLayout<QUICIOVector>.stride == MemoryLayout<nghttp3_vec>.stride
            && MemoryLayout<QUICIOVector>.alignment == MemoryLayout<nghttp3_vec>.alignment
            && MemoryLayout<QUICIOVector>.offset(of: \.base) == MemoryLayout<nghttp3_vec>.offset(of: \.base)
            && MemoryLayout<QUICIOVector>.offset(of: \.length) == MemoryLayout<nghttp3_vec>.offset(of: \.len)
    }
}

// MARK: - C callbacks

@inline(__always)
private func session(_ userData: UnsafeMutableRawPointer?) -> HTTP3Session? {
    guard let userData else { return nil }
    return Unmanaged<HTTP3Session>.fromOpaque(userData).takeUnretainedValue()
}

private func string(_ rcbuf: OpaquePointer?) -> String {
    guard let rcbuf else { return "" }
    let vec = nghttp3_rcbuf_get_buf(rcbuf)
    guard let base = vec.base else { return "" }
    return String(decoding: UnsafeBufferPointer(start: base, count: vec.len), as: UTF8.self)
}

extension NGHTTP3Connection {
    static let readData: nghttp3_read_data_callback = { _, streamID, vectors, count, flags, userData, _ in
        guard let session = session(userData), let vectors, let flags else { return nghttp3_ssize(NGHTTP3_ERR_CALLBACK_FAILURE) }
        let filled = vectors.withMemoryRebound(to: QUICIOVector.self, capacity: count) { base in
            session.readData(streamID: streamID, into: UnsafeMutableBufferPointer(start: base, count: count), flags: flags)
        }
        return nghttp3_ssize(filled)
    }

    static func callbacks() -> nghttp3_callbacks {
        var cb = nghttp3_callbacks()
        cb.acked_stream_data = { _, streamID, length, userData, _ in
            session(userData)?.ackedStreamData(streamID: streamID, length: length)
            return 0
        }
        cb.stream_close = { _, streamID, code, userData, _ in
            session(userData)?.streamClosed(streamID: streamID, code: code)
            return 0
        }
        cb.recv_data = { _, streamID, data, length, userData, _ in
            session(userData)?.receivedData(streamID: streamID, data: data, length: length)
            return 0
        }
        cb.deferred_consume = { _, streamID, consumed, userData, _ in
            session(userData)?.core.extendReceiveWindow(streamID: streamID, by: consumed)
            return 0
        }
        cb.begin_headers = { _, streamID, userData, _ in
            session(userData)?.beginHeaders(streamID: streamID, trailers: false)
            return 0
        }
        cb.recv_header = { _, streamID, _, name, value, _, userData, _ in
            session(userData)?.receivedHeader(streamID: streamID, name: string(name), value: string(value))
            return 0
        }
        cb.end_headers = { _, streamID, fin, userData, _ in
            session(userData)?.endHeaders(streamID: streamID, fin: fin != 0)
            return 0
        }
        cb.begin_trailers = { _, streamID, userData, _ in
            session(userData)?.beginHeaders(streamID: streamID, trailers: true)
            return 0
        }
        cb.recv_trailer = { _, streamID, _, name, value, _, userData, _ in
            session(userData)?.receivedHeader(streamID: streamID, name: string(name), value: string(value))
            return 0
        }
        cb.end_trailers = { _, streamID, fin, userData, _ in
            session(userData)?.endHeaders(streamID: streamID, fin: fin != 0)
            return 0
        }
        cb.end_stream = { _, streamID, userData, _ in
            session(userData)?.endStream(streamID: streamID)
            return 0
        }
        cb.stop_sending = { _, streamID, code, userData, _ in
            session(userData)?.core.stopSending(streamID: streamID, applicationError: code)
            return 0
        }
        cb.reset_stream = { _, streamID, code, userData, _ in
            session(userData)?.core.resetStream(streamID: streamID, applicationError: code)
            return 0
        }
        cb.shutdown = { _, id, userData in
            session(userData)?.goawayReceived(id: id)
            return 0
        }
        return cb
    }
}
