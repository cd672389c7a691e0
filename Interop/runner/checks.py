"""Checks of a finished run. Each reads the simulator's pcap (decrypted with the key logs) or the
files on disk, never what an endpoint says about itself. Each returns None (pass) or a reason."""
import filecmp
import os

from trace import connections

CERTIFICATE, SERVER_HELLO, CLIENT_HELLO, ENCRYPTED_EXTENSIONS, FINISHED = 11, 2, 1, 8, 20
PRE_SHARED_KEY = 41
RETRY, ZERO_RTT, HANDSHAKE = 3, 1, 2


class Run:
    """What a check can look at."""

    def __init__(self, case, www, downloads, datagrams, files, second_connection_files, alpn):
        self.case, self.www, self.downloads = case, www, downloads
        self.datagrams, self.files, self.alpn = datagrams, files, alpn
        self.second_connection_files = second_connection_files
        self.connections = connections(datagrams)

    def of_connection(self, scid):
        """Server→client datagrams of the connection whose client SCID is scid (by their DCID)."""
        return [d for d in self.datagrams if not d.to_server and scid in d.dcids]


def check_files(run):
    missing, different = [], []
    for name in run.files:
        downloaded = os.path.join(run.downloads, name)
        if not os.path.isfile(downloaded):
            missing.append(name)
        elif not filecmp.cmp(os.path.join(run.www, name), downloaded, shallow=False):
            different.append(name)
    extra = sorted(set(os.listdir(run.downloads)) - set(run.files))
    if missing or different or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} of {len(run.files)} files missing (e.g. {missing[0]})")
        if different:
            parts.append(f"{len(different)} files differ (e.g. {different[0]})")
        if extra:
            parts.append(f"unexpected files {extra[:3]}")
        return "; ".join(parts)
    return None


def check_decrypted(run):
    """The key logs decrypt the capture: every connection's server Handshake flight is readable."""
    if not run.datagrams:
        return "the pcap holds no datagrams"
    for scid, _ in run.connections:
        types = {t for d in run.of_connection(scid) for t in d.handshake_types}
        if ENCRYPTED_EXTENSIONS not in types or FINISHED not in types:
            return (f"connection {scid}: the server's Handshake flight could not be decrypted "
                    f"with the key logs (TLS messages seen: {sorted(types)})")
    return None


def check_handshakes(expected):
    def check(run):
        count = len(run.connections)
        if count != expected:
            return f"expected {expected} handshake(s), the pcap shows {count} (distinct client Initial SCIDs)"
        return None
    check.__name__ = f"handshakes=={expected}"
    return check


def check_alpn(run):
    # The server's choice is in EncryptedExtensions (Handshake packets, so it needs the key log).
    chosen = {a for d in run.datagrams if not d.to_server for a in d.alpns}
    if chosen != {run.alpn}:
        return f"expected ALPN {run.alpn}, the server chose {sorted(chosen) or 'nothing visible'}"
    return None


def check_no_retry(run):
    if any(not d.to_server and RETRY in d.long_types for d in run.datagrams):
        return "the server sent a Retry"
    return None


def check_retry(run):
    retries = [d for d in run.datagrams if not d.to_server and RETRY in d.long_types]
    if not retries:
        return "no Retry packet from the server in the pcap"
    token = retries[0].retry_tokens[0] if retries[0].retry_tokens else None
    after = [d for d in run.datagrams if d.to_server and d.initial and d.number > retries[0].number]
    if not after:
        return "the client sent no Initial after the Retry"
    if not token or token not in after[0].tokens:
        return "the client's Initial after the Retry does not carry the Retry token"
    return None


def check_resumption(run):
    if len(run.connections) < 2:
        return f"expected a second connection, the pcap shows {len(run.connections)}"
    first, second = run.connections[0][0], run.connections[1][0]
    first_types = [t for d in run.of_connection(first) for t in d.handshake_types]
    if CERTIFICATE not in first_types:
        return "the first handshake shows no Certificate (capture not decrypted?)"
    second_server = run.of_connection(second)
    types = [t for d in second_server for t in d.handshake_types]
    if FINISHED not in types:
        return "the second handshake's server flight could not be decrypted"
    if CERTIFICATE in types:
        return "the second handshake carries a Certificate: the session was not resumed"
    hello = [d for d in second_server if SERVER_HELLO in d.handshake_types]
    if not hello or PRE_SHARED_KEY not in hello[0].extension_types:
        return "the second ServerHello has no pre_shared_key extension"
    return None


def check_zero_rtt(run):
    problem = check_resumption(run)
    if problem:
        return problem
    start = run.connections[1][1]
    client = [d for d in run.datagrams if d.to_server and d.number >= start]
    early = [d for d in client if ZERO_RTT in d.long_types]
    if not early:
        return "no 0-RTT packets from the client in the second connection"
    early_streams = {s for d in early if d.stream_frame for s in d.stream_ids if s % 4 == 0}
    requests = len(run.second_connection_files)
    if len(early_streams) < requests:
        return (f"{len(early_streams)} of the {requests} requests of the second connection were sent "
                f"in 0-RTT")
    return None


def check_chacha20(run):
    suites = [c for d in run.datagrams if not d.to_server and SERVER_HELLO in d.handshake_types
              for c in d.ciphersuites]
    if not suites:
        return "no ServerHello in the pcap"
    if any(c != 0x1303 for c in suites):
        return f"ServerHello cipher suites {[hex(c) for c in suites]}, expected 0x1303 (ChaCha20-Poly1305)"
    return None


def check_client_hellos(minimum):
    # Wireshark dissects a CRYPTO stream's bytes once, so a retransmitted ClientHello is counted as
    # a client datagram with an Initial (and no Handshake packet) carrying CRYPTO at offset 0.
    def check(run):
        first = run.connections[0][0] if run.connections else None
        hellos = sum(1 for d in run.datagrams if d.to_server and d.initial and 2 not in d.long_types
                     and 0 in d.crypto_offsets and first in d.scids)
        if hellos < minimum:
            return f"expected at least {minimum} ClientHello transmissions (Initial retransmission), saw {hellos}"
        return None
    check.__name__ = f"client_hellos>={minimum}"
    return check


def check_key_update(run):
    client = any(d.to_server and d.short and any(d.key_phases) for d in run.datagrams)
    server = any(not d.to_server and d.short and any(d.key_phases) for d in run.datagrams)
    if not (client and server):
        missing = [side for side, seen in (("client", client), ("server", server)) if not seen]
        return f"no 1-RTT packets with key phase 1 from the {' and '.join(missing)}"
    return None


def check_ecn(run):
    problems = []
    for name, to_server in (("client", True), ("server", False)):
        sent = [d for d in run.datagrams if d.to_server == to_server]
        if not any(d.ecn in (1, 2) for d in sent):
            problems.append(f"the {name} marked no datagram ECT")
        if not any(0x03 in d.frame_types and any(d.ecn_counts) for d in sent):
            problems.append(f"the {name} sent no ACK frame with nonzero ECN counts")
    return "; ".join(problems) or None


def check_amplification(run):
    # Before the server has seen a client Handshake packet (which validates the address), it may
    # send at most three times the bytes it has received.
    received = sent = 0
    for d in run.datagrams:
        if d.to_server:
            if HANDSHAKE in d.long_types or d.short:
                break
            received += d.size
        else:
            sent += d.size
    if sent > 3 * received:
        return f"the server sent {sent} bytes before address validation, after receiving {received}"
    if not any(d.to_server and (HANDSHAKE in d.long_types) for d in run.datagrams):
        return "the client never sent a Handshake packet"
    return None


def check_rebinding(run):
    paths = []
    for d in run.datagrams:
        if d.to_server and (d.source, d.source_port) not in paths:
            paths.append((d.source, d.source_port))
    if len(paths) < 2:
        return "the relay's address did not change during the connection (no rebinding seen)"
    moved = next(d.number for d in run.datagrams if d.to_server and (d.source, d.source_port) == paths[1])
    if not any(not d.to_server and d.number > moved and d.stream_frame for d in run.datagrams):
        return "no server STREAM data after the rebinding: it did not happen mid-transfer"
    challenges = [d for d in run.datagrams if not d.to_server and 0x1A in d.frame_types]
    responses = [d for d in run.datagrams if d.to_server and 0x1B in d.frame_types]
    if not challenges:
        return "the server sent no PATH_CHALLENGE after the client's address changed"
    if not responses:
        return "the client sent no PATH_RESPONSE"
    return None


def check_preferred_address(run):
    """connectionmigration: the handshake went to the address dialled, then the client moved to
    the server's preferred address (the second relay's capture) and the data came that way."""
    moved = [d for d in run.datagrams if getattr(d, "preferred_path", False)]
    if any(d.initial for d in moved):
        return "Initial packets went to the preferred address: the handshake did not start on the address dialled"
    if not any(d.to_server and d.short for d in moved):
        return "the client never sent a 1-RTT packet to the server's preferred address"
    received = sum(d.size for d in moved if not d.to_server)
    total = sum(os.path.getsize(os.path.join(run.www, name)) for name in run.files)
    if received < total // 2:
        return (f"only {received} bytes came from the preferred address (files: {total} bytes): "
                "the transfer did not move there")
    return None


def check_ipv6(run):
    if not run.datagrams or not all(d.ipv6 for d in run.datagrams):
        return "not all datagrams in the pcap are IPv6"
    return None
