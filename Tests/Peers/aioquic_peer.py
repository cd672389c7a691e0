#!/usr/bin/env python3
"""A small general-purpose HTTP/3 client and server on aioquic's public API.

aioquic's wheel ships no example programs, so the interop tests use this one.

  server: aioquic_peer.py server --port P --cert C --key K --root DIR [--host H]
          GET/HEAD serve files under DIR (404 if missing); POST and PUT echo the request body.
  client: aioquic_peer.py client URL [--method M] [--data FILE] [--output FILE]
          [--cafile CA] [--insecure] [--header 'name: value']...
          Prints "status N" and the response headers on stdout; writes the body to --output.
"""
import argparse
import asyncio
import os
import ssl
import sys
from urllib.parse import urlparse

from aioquic.asyncio import QuicConnectionProtocol, connect, serve
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, QuicEvent, StreamReset


class ServerProtocol(QuicConnectionProtocol):
    root = "."

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._http = H3Connection(self._quic)
        self._requests = {}

    def quic_event_received(self, event: QuicEvent) -> None:
        for http_event in self._http.handle_event(event):
            if isinstance(http_event, HeadersReceived):
                headers = dict(http_event.headers)
                self._requests[http_event.stream_id] = {"headers": headers, "body": bytearray()}
                if http_event.stream_ended:
                    self._respond(http_event.stream_id)
            elif isinstance(http_event, DataReceived):
                request = self._requests.get(http_event.stream_id)
                if request is None:
                    continue
                request["body"] += http_event.data
                if http_event.stream_ended:
                    self._respond(http_event.stream_id)

    def _respond(self, stream_id: int) -> None:
        request = self._requests.pop(stream_id)
        method = request["headers"].get(b":method", b"GET").decode()
        path = request["headers"].get(b":path", b"/").decode().split("?")[0]
        if method in ("POST", "PUT"):
            body = bytes(request["body"])
            status = 200
        else:
            full = os.path.realpath(os.path.join(self.root, path.lstrip("/")))
            if not full.startswith(os.path.realpath(self.root)) or not os.path.isfile(full):
                status, body = 404, b"not found\n"
            else:
                status = 200
                with open(full, "rb") as f:
                    body = f.read()
        headers = [(b":status", str(status).encode()), (b"content-length", str(len(body)).encode()),
                   (b"server", b"aioquic-peer")]
        if method == "HEAD":
            self._http.send_headers(stream_id, headers, end_stream=True)
        else:
            self._http.send_headers(stream_id, headers)
            self._http.send_data(stream_id, body, end_stream=True)
        self.transmit()


class ClientProtocol(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._http = H3Connection(self._quic)
        self._done = {}
        self._responses = {}

    async def request(self, method, url, headers, body):
        parsed = urlparse(url)
        stream_id = self._quic.get_next_available_stream_id()
        authority = parsed.netloc
        fields = [(b":method", method.encode()), (b":scheme", b"https"), (b":authority", authority.encode()),
                  (b":path", (parsed.path or "/").encode() + (b"?" + parsed.query.encode() if parsed.query else b"")),
                  (b"user-agent", b"aioquic-peer")]
        fields += [(k.lower().encode(), v.encode()) for k, v in headers]
        waiter = self._loop.create_future()
        self._done[stream_id] = waiter
        self._responses[stream_id] = {"headers": [], "body": bytearray()}
        self._http.send_headers(stream_id, fields, end_stream=body is None)
        if body is not None:
            self._http.send_data(stream_id, body, end_stream=True)
        self.transmit()
        await waiter
        return self._responses.pop(stream_id)

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, StreamReset) and event.stream_id in self._done:
            self._done.pop(event.stream_id).set_exception(RuntimeError(f"stream reset {event.error_code:#x}"))
            return
        if isinstance(event, ConnectionTerminated):
            for waiter in self._done.values():
                if not waiter.done():
                    waiter.set_exception(RuntimeError(f"connection closed {event.error_code:#x}"))
            return
        for http_event in self._http.handle_event(event):
            response = self._responses.get(getattr(http_event, "stream_id", -1))
            if response is None:
                continue
            if isinstance(http_event, HeadersReceived):
                response["headers"] += http_event.headers
            elif isinstance(http_event, DataReceived):
                response["body"] += http_event.data
            if getattr(http_event, "stream_ended", False):
                waiter = self._done.pop(http_event.stream_id)
                if not waiter.done():
                    waiter.set_result(None)


async def run_server(args):
    configuration = QuicConfiguration(is_client=False, alpn_protocols=H3_ALPN)
    configuration.load_cert_chain(args.cert, args.key)
    ServerProtocol.root = args.root
    await serve(args.host, args.port, configuration=configuration, create_protocol=ServerProtocol)
    print(f"listening on {args.host}:{args.port}", flush=True)
    await asyncio.Future()


async def run_client(args):
    parsed = urlparse(args.url)
    configuration = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, server_name=parsed.hostname)
    if args.insecure:
        configuration.verify_mode = ssl.CERT_NONE
    elif args.cafile:
        configuration.load_verify_locations(args.cafile)
    body = None
    if args.data:
        with open(args.data, "rb") as f:
            body = f.read()
    headers = [tuple(part.strip() for part in h.split(":", 1)) for h in args.header]
    # --token-file: present the server's last NEW_TOKEN token, keep the one it sends now.
    if args.token_file and os.path.exists(args.token_file):
        with open(args.token_file, "rb") as f:
            configuration.token = f.read()

    def save_token(token):
        if args.token_file:
            with open(args.token_file, "wb") as f:
                f.write(token)

    async with connect(args.connect or parsed.hostname, parsed.port or 443, configuration=configuration,
                       create_protocol=ClientProtocol, token_handler=save_token) as client:
        response = await asyncio.wait_for(client.request(args.method, args.url, headers, body), timeout=60)
    for name, value in response["headers"]:
        if name == b":status":
            print(f"status {value.decode()}")
        else:
            print(f"{name.decode()}: {value.decode()}")
    if args.output:
        with open(args.output, "wb") as f:
            f.write(response["body"])
    else:
        sys.stdout.buffer.write(response["body"])


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="role", required=True)
    server = sub.add_parser("server")
    server.add_argument("--host", default="127.0.0.1")
    server.add_argument("--port", type=int, required=True)
    server.add_argument("--cert", required=True)
    server.add_argument("--key", required=True)
    server.add_argument("--root", default=".")
    client = sub.add_parser("client")
    client.add_argument("url")
    client.add_argument("--method", default="GET")
    client.add_argument("--data")
    client.add_argument("--output")
    client.add_argument("--cafile")
    client.add_argument("--connect", help="address to connect to instead of the URL's host")
    client.add_argument("--insecure", action="store_true")
    client.add_argument("--header", action="append", default=[])
    client.add_argument("--token-file", help="read and write the server's NEW_TOKEN token here")
    args = parser.parse_args()
    try:
        asyncio.run(run_server(args) if args.role == "server" else run_client(args))
    except KeyboardInterrupt:
        pass
    except Exception as error:  # one clear line, no traceback
        print(f"aioquic_peer: {error}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
