import HTTPTypes

/// The client's 0-RTT decisions for one request (RFC 8470, RFC 9114 section 4.1.1.2), as pure
/// functions of what is known about the request: no I/O, tested on their own.
package enum EarlyDataPolicy {
    /// Whether a request may go in 0-RTT when the connection can send early data.
    ///
    /// Early data can be replayed by an attacker, so only safe methods (GET, HEAD, OPTIONS) go
    /// early unless the caller opts in for this request. Either way the body must be one the
    /// client can send again (bytes in memory, or none): a server that refuses early data, or
    /// answers 425, gets the request again after the handshake.
    package static func mayUseEarlyData(method: HTTPRequest.Method, allowEarlyData: Bool, bodyReplayable: Bool) -> Bool {
        guard bodyReplayable else { return false }
        if allowEarlyData { return true }
        return method == .get || method == .head || method == .options
    }

    /// Whether a response means "send this again after the handshake": a 425 (Too Early) to a
    /// request that went in early data, and only once (the retry goes in 1-RTT; a second 425
    /// is the caller's answer).
    package static func shouldRetryTooEarly(status: Int, sentEarly: Bool, alreadyRetried: Bool) -> Bool {
        status == 425 && sentEarly && !alreadyRetried
    }
}
