"""The simulator's pcap, decoded by tshark with the endpoints' TLS key log.

One row per UDP datagram (the relay writes each forwarded datagram once, on the leg it leaves
on). Coalesced QUIC packets make the QUIC fields lists; the checks reason per datagram.
"""
import struct
import subprocess

FIELDS = ["frame.number", "frame.time_relative", "ip.src", "ipv6.src", "udp.srcport", "udp.dstport",
          "udp.length", "ip.dsfield.ecn", "ipv6.tclass.ecn", "quic.header_form", "quic.long.packet_type",
          "quic.scid", "quic.dcid", "quic.key_phase", "quic.frame_type", "quic.stream.stream_id",
          "quic.stream.length", "quic.token", "quic.retry_token", "tls.handshake.type",
          "tls.handshake.ciphersuite", "tls.handshake.extension.type",
          "tls.handshake.extensions_alpn_str", "quic.ack.ect0_count", "quic.ack.ect1_count",
          "quic.ack.ecn_ce_count", "quic.decryption_failed", "quic.crypto.offset"]


class TraceError(Exception):
    pass


class Datagram:
    def __init__(self, values, server_port):
        raw = dict(zip(FIELDS, values))
        self.number = int(raw["frame.number"])
        self.time = float(raw["frame.time_relative"])
        self.source = raw["ip.src"] or raw["ipv6.src"]
        self.ipv6 = bool(raw["ipv6.src"])
        self.source_port = int(raw["udp.srcport"])
        self.to_server = int(raw["udp.dstport"]) == server_port
        self.size = int(raw["udp.length"]) - 8
        self.ecn = int((raw["ip.dsfield.ecn"] or raw["ipv6.tclass.ecn"] or "0").split(",")[0], 0)
        lists = {name: [v for v in raw[name].split(",") if v] for name in FIELDS[9:]}
        self.header_forms = lists["quic.header_form"]
        self.long_types = [int(v, 0) for v in lists["quic.long.packet_type"]]
        self.short = "0" in self.header_forms
        self.scids = lists["quic.scid"]
        self.dcids = lists["quic.dcid"]
        self.key_phases = [v in ("1", "True") for v in lists["quic.key_phase"]]
        self.frame_types = [int(v, 0) for v in lists["quic.frame_type"]]
        self.stream_ids = [int(v, 0) for v in lists["quic.stream.stream_id"]]
        self.stream_lengths = [int(v, 0) for v in lists["quic.stream.length"]]
        self.tokens = lists["quic.token"]
        self.retry_tokens = lists["quic.retry_token"]
        self.handshake_types = [int(v, 0) for v in lists["tls.handshake.type"]]
        self.ciphersuites = [int(v, 0) for v in lists["tls.handshake.ciphersuite"]]
        self.extension_types = [int(v, 0) for v in lists["tls.handshake.extension.type"]]
        self.alpns = lists["tls.handshake.extensions_alpn_str"]
        self.ecn_counts = [int(v, 0) for v in
                           lists["quic.ack.ect0_count"] + lists["quic.ack.ect1_count"] + lists["quic.ack.ecn_ce_count"]]
        self.decryption_failed = bool(lists["quic.decryption_failed"])
        self.crypto_offsets = [int(v, 0) for v in lists["quic.crypto.offset"]]

    @property
    def initial(self):
        return 0 in self.long_types

    @property
    def stream_frame(self):
        return any(0x08 <= t <= 0x0F for t in self.frame_types)


def _long_header_cids(payload):
    """(packet type, DCID, SCID) of a QUIC v1 long-header packet at the start of payload, or None."""
    if len(payload) < 7 or not payload[0] & 0x80:
        return None
    dcid_length = payload[5]
    dcid = payload[6:6 + dcid_length]
    scid_length = payload[6 + dcid_length] if len(payload) > 6 + dcid_length else 0
    scid = payload[7 + dcid_length:7 + dcid_length + scid_length]
    return (payload[0] >> 4) & 3, bytes(dcid), bytes(scid)


def server_view(pcap, output, decrypt_output, server_port):
    """Rewrites the relay's pcap as the server sees the traffic; returns the frame numbers (1-based)
    kept in the decryption view, or None when that view is the same as the server view.

    The relay records the client→server datagrams on its server-facing leg (relay → server) and the
    server→client ones on its client-facing leg (relay → client). Wireshark keeps TLS state per
    UDP conversation, so it would not find the ClientHello's random for the server's packets. Here
    the server→client datagrams get the server's address as source and the relay's current
    server-facing address as destination, as on the server's own wire. Payloads are untouched.

    A client answers a Retry with a new ClientHello (often a new random) at CRYPTO offset 0, which
    Wireshark takes for a retransmission of the first, so it would look up the wrong random in the
    key log. The decryption view leaves out, per Retry, the client's datagrams of the attempt it
    ended and the Retry itself; those are read, undecrypted, from the server view."""
    with open(pcap, "rb") as f:
        data = f.read()
    if len(data) < 24:
        raise TraceError("the pcap is empty or truncated")
    endian = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    records, offset, relay, server = [], 24, None, None
    while offset + 16 <= len(data):
        length = struct.unpack(endian + "I", data[offset + 8:offset + 12])[0]
        header = data[offset:offset + 16]
        record = bytearray(data[offset + 16:offset + 16 + length])
        offset += 16 + length
        version = record[0] >> 4 if record else 0
        ip_length, address = (20, 4) if version == 4 else (40, 16)
        if len(record) < ip_length + 8:
            records.append((header, record, None, None))
            continue
        source_at = 12 if version == 4 else 8
        destination_at = source_at + address
        udp = ip_length
        destination_port = struct.unpack(">H", record[udp + 2:udp + 4])[0]
        to_server = destination_port == server_port
        if to_server:
            relay = (bytes(record[source_at:source_at + address]), bytes(record[udp:udp + 2]))
            server = (bytes(record[destination_at:destination_at + address]), bytes(record[udp + 2:udp + 4]))
        elif relay is not None:
            record[source_at:source_at + address] = server[0]
            record[udp:udp + 2] = server[1]
            record[destination_at:destination_at + address] = relay[0]
            record[udp + 2:udp + 4] = relay[1]
            if version == 4:  # header checksum
                record[10:12] = b"\0\0"
                total = sum(struct.unpack(">10H", bytes(record[:20])))
                total = (total & 0xFFFF) + (total >> 16)
                total = (total & 0xFFFF) + (total >> 16)
                record[10:12] = struct.pack(">H", ~total & 0xFFFF)
        records.append((header, record, to_server, _long_header_cids(record[udp + 8:])))
    with open(output, "wb") as f:
        f.write(data[:24] + b"".join(h + r for h, r, _, _ in records))
    dropped = set()
    for index, (_, _, to_server, cids) in enumerate(records):
        if to_server is False and cids and cids[0] == 3:  # a Retry, addressed to the client's SCID
            dropped.add(index)
            for earlier in range(index):
                _, _, earlier_to_server, earlier_cids = records[earlier]
                if earlier_to_server and earlier_cids and earlier_cids[0] == 0 and earlier_cids[2] == cids[1]:
                    dropped.add(earlier)
    if not dropped:
        return None
    with open(decrypt_output, "wb") as f:
        f.write(data[:24] + b"".join(h + r for i, (h, r, _, _) in enumerate(records) if i not in dropped))
    return [i + 1 for i in range(len(records)) if i not in dropped]


def _tshark_rows(pcap, keylog, server_port):
    command = ["tshark", "-n", "-r", pcap, "-o", f"tls.keylog_file:{keylog}",
               "-d", f"udp.port=={server_port},quic",
               "-T", "fields", "-E", "separator=/t", "-E", "occurrence=a", "-E", "aggregator=,"]
    for field in FIELDS:
        command += ["-e", field]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise TraceError(f"tshark failed: {result.stderr.strip()[:300]}")
    return [values for values in (line.split("\t") for line in result.stdout.splitlines())
            if len(values) == len(FIELDS)]


def read_trace(pcap, keylog, server_port):
    """Returns the datagrams of the pcap, decrypted with keylog, in the order the relay sent them."""
    view = pcap.replace(".pcap", "") + "-server-view.pcap"
    decrypt_view = pcap.replace(".pcap", "") + "-decrypt-view.pcap"
    kept = server_view(pcap, view, decrypt_view, server_port)
    rows = _tshark_rows(view, keylog, server_port)
    if kept is not None:
        for number, values in zip(kept, _tshark_rows(decrypt_view, keylog, server_port)):
            values[0] = str(number)
            rows[number - 1] = values
    return [Datagram(values, server_port) for values in rows]


def connections(datagrams):
    """Client connections in order of their first Initial: a list of (scid, first frame number).

    A connection is named by the Source Connection ID of the client's Initial packets, which
    stays the same across Initial retransmissions and a Retry."""
    seen = {}
    for d in datagrams:
        if d.to_server and d.initial and d.scids:
            seen.setdefault(d.scids[0], d.number)
    return sorted(seen.items(), key=lambda item: item[1])
