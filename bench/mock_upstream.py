"""A fast mock of Vertex AI's OpenAI-compatible endpoint and of the GCE metadata server.

Raw asyncio protocol on uvloop with the httptools parser, so that the mock costs
a few microseconds per request and is never the bottleneck of the benchmark.

- POST .../chat/completions: a chat.completion JSON body, or with "stream": true an
  SSE stream of N chunks (chunked transfer encoding, like Vertex) ending in
  `data: [DONE]`. Each chunk's delta content is the wall-clock send time in ns
  (time.time_ns), so a client can measure what a proxy adds per chunk.
  Per-request knobs in the body (a pass-through gateway forwards them untouched):
  "mock_chunks" (int), "mock_interval_ms" (float, pacing between chunks).
- GET /computeMetadata/v1/...: token, project id, service-account info, universe
  domain, and GET / (ping), all with `Metadata-Flavor: Google`, so google-auth
  works unchanged with GCE_METADATA_HOST / GCE_METADATA_IP pointed here.
- GET /__stats: request counters (JSON), for the harness.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from typing import Any

import httptools
import orjson
import uvloop

PROJECT = os.environ.get("MOCK_PROJECT", "bench-project")

STATS: dict[str, int] = {
    "requests": 0,
    "json": 0,
    "streams": 0,
    "chunks": 0,
    "metadata": 0,
    "no_auth": 0,
}

_COMPLETION = orjson.dumps(
    {
        "id": "chatcmpl-mock",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "google/gemini-2.5-flash",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Hello! This is a canned answer from the benchmark mock upstream.",
                },
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 14, "total_tokens": 26},
    }
)
_JSON_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
    + str(len(_COMPLETION)).encode()
    + b"\r\n\r\n"
)
_JSON_RESPONSE = _JSON_HEAD + _COMPLETION
_SSE_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
# The chunk JSON is split around the timestamp so each chunk is one bytes join.
_CHUNK_A = (
    b'data: {"id":"chatcmpl-mock","object":"chat.completion.chunk","created":1700000000,'
    b'"model":"google/gemini-2.5-flash","choices":[{"index":0,"delta":{"role":"assistant",'
    b'"content":"'
)
_CHUNK_B = b'"},"finish_reason":null}]}\n\n'
_LAST = (
    b'data: {"id":"chatcmpl-mock","object":"chat.completion.chunk","created":1700000000,'
    b'"model":"google/gemini-2.5-flash","choices":[{"index":0,"delta":{},'
    b'"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":20,'
    b'"total_tokens":32}}\n\ndata: [DONE]\n\n'
)
_LAST_FRAME = b"%x\r\n%s\r\n0\r\n\r\n" % (len(_LAST), _LAST)


def _meta_response(status: bytes, body: bytes, ctype: bytes) -> bytes:
    return (
        b"HTTP/1.1 "
        + status
        + b"\r\nmetadata-flavor: Google\r\ncontent-type: "
        + ctype
        + b"\r\ncontent-length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


def _metadata(path: str) -> bytes:
    STATS["metadata"] += 1
    path = path.split("?", 1)[0].rstrip("/")
    text = b"application/text"
    if path in ("", "/computeMetadata/v1"):
        return _meta_response(b"200 OK", b"ok", text)
    if path.endswith("/service-accounts/default/token"):
        body = orjson.dumps({"access_token": "mock-access-token", "expires_in": 3599, "token_type": "Bearer"})
        return _meta_response(b"200 OK", body, b"application/json")
    if path.endswith("/service-accounts/default"):
        body = orjson.dumps(
            {
                "aliases": ["default"],
                "email": f"bench@{PROJECT}.iam.gserviceaccount.com",
                "scopes": ["https://www.googleapis.com/auth/cloud-platform"],
            }
        )
        return _meta_response(b"200 OK", body, b"application/json")
    if path.endswith("/service-accounts/default/email"):
        return _meta_response(b"200 OK", f"bench@{PROJECT}.iam.gserviceaccount.com".encode(), text)
    if path.endswith("/project/project-id"):
        return _meta_response(b"200 OK", PROJECT.encode(), text)
    if path.endswith("/universe/universe-domain"):
        return _meta_response(b"200 OK", b"googleapis.com", text)
    return _meta_response(b"404 Not Found", b"not found", text)


class MockProtocol(asyncio.Protocol):
    __slots__ = ("auth", "body", "keep", "loop", "parser", "streaming", "transport", "url")

    def __init__(self) -> None:
        self.transport: Any = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.body: list[bytes] = []
        self.auth = False
        self.loop = asyncio.get_running_loop()
        self.streaming = False
        self.keep = True

    # asyncio callbacks
    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.url = b""
        self.body = []
        self.auth = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"authorization":
            self.auth = True

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        STATS["requests"] += 1
        self.keep = self.parser.should_keep_alive()
        url = self.url
        method = self.parser.get_method()
        if method == b"POST" and url.split(b"?", 1)[0].endswith(b"/chat/completions"):
            self._chat(b"".join(self.body))
        elif url.startswith(b"/computeMetadata") or url == b"/":
            self._write(_metadata(url.decode("latin-1")))
        elif url == b"/__stats":
            body = orjson.dumps(STATS)
            self._write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
                + str(len(body)).encode()
                + b"\r\n\r\n"
                + body
            )
        else:
            self._write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")

    def _write(self, data: bytes) -> None:
        if self.transport is None:
            return
        self.transport.write(data)
        if not self.keep:
            self.transport.close()

    def _chat(self, raw: bytes) -> None:
        if not self.auth:
            STATS["no_auth"] += 1
        try:
            req = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            self._write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
            return
        if not isinstance(req, dict) or not req.get("stream"):
            STATS["json"] += 1
            self._write(_JSON_RESPONSE)
            return
        STATS["streams"] += 1
        chunks = int(req.get("mock_chunks", DEFAULT_CHUNKS))
        interval = float(req.get("mock_interval_ms", 0)) / 1000.0
        if self.transport is None:
            return
        if interval <= 0:
            # Unpaced: the whole stream in one write, stamped now.
            self.transport.write(_SSE_HEAD + b"".join(_frame() for _ in range(chunks)) + _LAST_FRAME)
            STATS["chunks"] += chunks
            if not self.keep:
                self.transport.close()
            return
        self.transport.write(_SSE_HEAD)
        self.streaming = True
        self.loop.call_later(interval, self._tick, chunks, interval)

    def _tick(self, left: int, interval: float) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            self.streaming = False
            return
        if left > 0:
            transport.write(_frame())
            STATS["chunks"] += 1
            self.loop.call_later(interval, self._tick, left - 1, interval)
            return
        transport.write(_LAST_FRAME)
        self.streaming = False
        if not self.keep:
            transport.close()


def _frame() -> bytes:
    event = _CHUNK_A + str(time.time_ns()).encode() + _CHUNK_B
    return b"%x\r\n%s\r\n" % (len(event), event)


DEFAULT_CHUNKS = 20


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(MockProtocol, host, port, backlog=4096, reuse_address=True)
    print(f"mock upstream listening on {host}:{port}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    global DEFAULT_CHUNKS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18081)
    parser.add_argument("--chunks", type=int, default=20, help="default SSE chunks per stream")
    args = parser.parse_args()
    DEFAULT_CHUNKS = args.chunks
    uvloop.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
