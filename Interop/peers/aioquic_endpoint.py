#!/usr/bin/env python3
"""A quic-interop-runner endpoint on aioquic's public API, for Interop/run-matrix.

Environment (the official runner's contract, with local overrides):
  ROLE=client|server, TESTCASE, REQUESTS (client: space-separated URLs), SSLKEYLOGFILE, QLOGDIR,
  WWW (server, default /www), DOWNLOADS (client, default /downloads), CERTS (server: cert.pem and
  priv.key, default /certs), PORT (server, default 443), BIND_ADDRESS (server, default ::).
  Local extension: ALPN=h3 makes the client speak h3 for a transfer-style case (used when the
  peer only speaks h3); the server always offers hq-interop and h3 and serves whichever is chosen.
Exit: 0 success, 1 failure, 127 unsupported test case.
"""
import asyncio
import os
import ssl
import sys
from urllib.parse import urlparse

from aioquic.asyncio import QuicConnectionProtocol, connect, serve
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import (ConnectionTerminated, HandshakeCompleted, ProtocolNegotiated,
                                 StreamDataReceived, StreamReset)
from aioquic.quic.logger import QuicFileLogger
from aioquic.tls import CipherSuite

HQ = "hq-interop"
# TESTCASE values this endpoint runs; everything else (v2, ecn, ...) is 127, and so is
# connectionmigration for the server. aioquic sets no ECN marks and its server offers no
# preferred address.
SUPPORTED = {"handshake", "transfer", "longrtt", "chacha20", "multiplexing", "retry", "resumption",
             "zerortt", "http3", "keyupdate", "multiconnect", "blackhole", "transferloss",
             "handshakeloss", "transfercorruption", "handshakecorruption", "amplificationlimit",
             "rebind-port", "rebind-addr", "ipv6", "goodput"}


def log(message):
    print(f"aioquic_endpoint: {message}", file=sys.stderr, flush=True)


def base_configuration(is_client, alpns):
    configuration = QuicConfiguration(is_client=is_client, alpn_protocols=alpns,
                                      max_data=64 * 1024 * 1024, max_stream_data=32 * 1024 * 1024,
                                      idle_timeout=30.0)
    if os.environ.get("SSLKEYLOGFILE"):
        configuration.secrets_log_file = open(os.environ["SSLKEYLOGFILE"], "a", buffering=1)
    if os.environ.get("QLOGDIR"):
        os.makedirs(os.environ["QLOGDIR"], exist_ok=True)
        configuration.quic_logger = QuicFileLogger(os.environ["QLOGDIR"])
    return configuration


# ---------------------------------------------------------------- server

class ServerProtocol(QuicConnectionProtocol):
    www = "/www"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._h3 = None
        self._hq_buffers = {}

    def _file(self, path):
        full = os.path.realpath(os.path.join(self.www, path.split("?")[0].lstrip("/")))
        if not full.startswith(os.path.realpath(self.www) + os.sep) or not os.path.isfile(full):
            return None
        with open(full, "rb") as f:
            return f.read()

    def quic_event_received(self, event):
        if isinstance(event, ProtocolNegotiated) and event.alpn_protocol in H3_ALPN:
            self._h3 = H3Connection(self._quic)
        if self._h3 is not None:
            for http_event in self._h3.handle_event(event):
                if isinstance(http_event, HeadersReceived):
                    headers = dict(http_event.headers)
                    body = self._file(headers.get(b":path", b"/").decode())
                    status = b"200" if body is not None else b"404"
                    body = body if body is not None else b""
                    self._h3.send_headers(http_event.stream_id, [
                        (b":status", status), (b"content-length", str(len(body)).encode())])
                    self._h3.send_data(http_event.stream_id, body, end_stream=True)
            self.transmit()
            return
        if isinstance(event, StreamDataReceived):
            buffer = self._hq_buffers.setdefault(event.stream_id, bytearray())
            buffer += event.data
            if event.end_stream:
                del self._hq_buffers[event.stream_id]
                line = bytes(buffer).split(b"\r\n")[0].decode(errors="replace")
                parts = line.split()
                body = self._file(parts[1]) if len(parts) == 2 and parts[0] == "GET" else None
                if body is None:
                    log(f"cannot serve {line!r}")
                    self._quic.reset_stream(event.stream_id, 0x10)
                else:
                    self._quic.send_stream_data(event.stream_id, body, end_stream=True)
                self.transmit()


async def run_server(testcase):
    configuration = base_configuration(False, [HQ] + H3_ALPN)
    certs = os.environ.get("CERTS", "/certs")
    configuration.load_cert_chain(os.path.join(certs, "cert.pem"), os.path.join(certs, "priv.key"))
    ServerProtocol.www = os.environ.get("WWW", "/www")
    tickets = {}
    await serve(os.environ.get("BIND_ADDRESS", "::"), int(os.environ.get("PORT", "443")),
                configuration=configuration, create_protocol=ServerProtocol,
                session_ticket_fetcher=tickets.pop,
                session_ticket_handler=lambda ticket: tickets.__setitem__(ticket.ticket, ticket),
                retry=testcase == "retry")
    log(f"listening ({testcase})")
    await asyncio.Future()


# ---------------------------------------------------------------- client

class ClientProtocol(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # before any event: the server's control and QPACK streams may arrive with the handshake
        self._h3 = H3Connection(self._quic) if self._quic.configuration.alpn_protocols == H3_ALPN else None
        self._waiters = {}
        self._bodies = {}
        self.handshake_done = asyncio.get_event_loop().create_future()

    async def get(self, url):
        parsed = urlparse(url)
        stream_id = self._quic.get_next_available_stream_id()
        waiter = self._loop.create_future()
        self._waiters[stream_id] = waiter
        self._bodies[stream_id] = bytearray()
        if self._h3 is not None:
            self._h3.send_headers(stream_id, [
                (b":method", b"GET"), (b":scheme", b"https"), (b":authority", parsed.netloc.encode()),
                (b":path", (parsed.path or "/").encode()), (b"user-agent", b"aioquic-endpoint")],
                end_stream=True)
        else:
            self._quic.send_stream_data(stream_id, f"GET {parsed.path or '/'}\r\n".encode(), end_stream=True)
        self.transmit()
        await waiter
        return bytes(self._bodies.pop(stream_id))

    def _finish(self, stream_id, error=None):
        waiter = self._waiters.pop(stream_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_exception(error) if error else waiter.set_result(None)

    def quic_event_received(self, event):
        if isinstance(event, HandshakeCompleted) and not self.handshake_done.done():
            self.handshake_done.set_result(event)
        if isinstance(event, StreamReset):
            self._finish(event.stream_id, RuntimeError(f"stream {event.stream_id} reset {event.error_code:#x}"))
            return
        if isinstance(event, ConnectionTerminated):
            error = RuntimeError(f"connection closed {event.error_code:#x} {event.reason_phrase}")
            for stream_id in list(self._waiters):
                self._finish(stream_id, error)
            if not self.handshake_done.done():
                self.handshake_done.set_exception(error)
            return
        if self._h3 is not None:
            for http_event in self._h3.handle_event(event):
                stream_id = getattr(http_event, "stream_id", None)
                if stream_id not in self._bodies:
                    continue
                if isinstance(http_event, HeadersReceived):
                    status = dict(http_event.headers).get(b":status")
                    if status != b"200":
                        self._finish(stream_id, RuntimeError(f"status {status}"))
                        continue
                elif isinstance(http_event, DataReceived):
                    self._bodies[stream_id] += http_event.data
                if getattr(http_event, "stream_ended", False):
                    self._finish(stream_id)
        elif isinstance(event, StreamDataReceived) and event.stream_id in self._bodies:
            self._bodies[event.stream_id] += event.data
            if event.end_stream:
                self._finish(event.stream_id)


async def client_connection(urls, configuration, testcase, downloads, early=False):
    parsed = urlparse(urls[0])
    tickets = []
    async with connect(parsed.hostname, parsed.port or 443, configuration=configuration,
                       create_protocol=ClientProtocol, session_ticket_handler=tickets.append,
                       wait_connected=not early) as client:
        if not early:
            await client.handshake_done
        if testcase == "keyupdate":
            client._quic.request_key_update()
            client.transmit()
        bodies = await asyncio.gather(*(client.get(url) for url in urls))
        for url, body in zip(urls, bodies):
            name = os.path.basename(urlparse(url).path) or "index.html"
            with open(os.path.join(downloads, name), "wb") as f:
                f.write(body)
        if testcase in ("resumption", "zerortt"):
            # A ticket usually arrives with the handshake; give a late one a moment.
            for _ in range(20):
                if tickets:
                    break
                await asyncio.sleep(0.05)
        client.close()
        await client.wait_closed()
    return tickets[-1] if tickets else None


async def run_client(testcase):
    urls = os.environ.get("REQUESTS", "").split()
    if not urls:
        log("REQUESTS is empty")
        return 1
    downloads = os.environ.get("DOWNLOADS", "/downloads")
    use_h3 = testcase == "http3" or os.environ.get("ALPN") == "h3"

    def configuration():
        c = base_configuration(True, H3_ALPN if use_h3 else [HQ])
        c.verify_mode = ssl.CERT_NONE
        c.server_name = "server"
        if testcase == "chacha20":
            c.cipher_suites = [CipherSuite.CHACHA20_POLY1305_SHA256]
        return c

    if testcase == "multiconnect":
        for url in urls:
            await client_connection([url], configuration(), testcase, downloads)
    elif testcase in ("resumption", "zerortt"):
        ticket = await client_connection(urls[:1], configuration(), testcase, downloads)
        if ticket is None:
            log("no session ticket received")
            return 1
        if len(urls) > 1:
            second = configuration()
            second.session_ticket = ticket
            await client_connection(urls[1:], second, testcase, downloads, early=testcase == "zerortt")
    else:
        await client_connection(urls, configuration(), testcase, downloads)
    return 0


def main():
    role, testcase = os.environ.get("ROLE"), os.environ.get("TESTCASE", "")
    # aioquic's client probes a server's preferred address by itself: connectionmigration is a
    # plain transfer for it (its server offers none: 127).
    if testcase not in SUPPORTED and not (testcase == "connectionmigration" and role == "client"):
        log(f"unsupported test case {testcase!r}")
        return 127
    if role not in ("client", "server"):
        log(f"unknown ROLE {role!r}")
        return 1
    try:
        return asyncio.run(run_server(testcase) if role == "server" else run_client(testcase))
    except KeyboardInterrupt:
        return 0
    except Exception as error:
        log(f"{type(error).__name__}: {error}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
