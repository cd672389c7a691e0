"""An independent HTTP/2 server for swift-h3's interop tests: an ASGI app run by hypercorn
(PyPI; HTTP/2 through the `h2` library). It serves the files under H2_PEER_ROOT (GET, HEAD)
and streams POST bodies back as they arrive.

    cd Tests/Peers && H2_PEER_ROOT=DIR ../../.venv/bin/hypercorn \
        --certfile CERT --keyfile KEY --bind 127.0.0.1:PORT h2_peer:app
"""
import os

ROOT = os.path.realpath(os.environ.get("H2_PEER_ROOT", "."))
CHUNK = 256 * 1024


async def _lifespan(receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _respond(send, status, body, headers=()):
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    version = (b"x-http-version", scope.get("http_version", "?").encode())
    if scope["method"] == "POST":
        # Echo: the response streams while the request body still arrives.
        await send({"type": "http.response.start", "status": 200, "headers": [version]})
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            more = message.get("more_body", False)
            await send({"type": "http.response.body", "body": message.get("body", b""), "more_body": more})
            if not more:
                return
    path = os.path.realpath(os.path.join(ROOT, scope["path"].lstrip("/")))
    if not path.startswith(ROOT + os.sep) or not os.path.isfile(path):
        await _respond(send, 404, b"not found\n", [version])
        return
    size = os.path.getsize(path)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(size).encode()), version]})
    if scope["method"] == "HEAD":
        await send({"type": "http.response.body", "body": b""})
        return
    with open(path, "rb") as f:
        sent = 0
        while True:
            chunk = f.read(CHUNK)
            sent += len(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": sent < size and bool(chunk)})
            if not chunk or sent >= size:
                return
