"""A fast mock of Vertex AI (OpenAI-compatible chat, Gemini's native API) and of the GCE metadata server.

Raw asyncio protocol on uvloop with the httptools parser, so that the mock costs
a few microseconds per request and is never the bottleneck of the benchmark.

- POST .../chat/completions: a chat.completion JSON body, or with "stream": true an
  SSE stream of N chunks (chunked transfer encoding, like Vertex) ending in
  `data: [DONE]`. Each chunk's delta content is the wall-clock send time in ns
  (time.time_ns), so a client can measure what a proxy adds per chunk.
  Per-request knobs in the body (a pass-through gateway forwards them untouched):
  "mock_chunks" (int), "mock_interval_ms" (float, pacing between chunks).
- POST .../publishers/google/models/M:generateContent: a GenerateContentResponse (JSON).
- POST .../publishers/google/models/M:streamGenerateContent?alt=sse: Gemini's SSE stream, chunked
  like Vertex: N events `data: {"candidates":[{"content":{"role":"model","parts":[{"text":"<ns>"}]}}],
  "modelVersion":..,"createTime":..,"responseId":..}`, then one with `"finishReason":"STOP"` and the
  whole `usageMetadata`; events end in CRLF CRLF as Vertex's do (`--gemini-lf`: LF LF). The text
  part is the send time in ns, as in the chat chunks. A gateway that translates Anthropic Messages
  to Gemini passes no unknown body field on, so the knobs ride in fields that survive translation:
  `generationConfig.maxOutputTokens` (Anthropic `max_tokens`) = chunk count, and
  `generationConfig.topK` (Anthropic `top_k`) = pacing between chunks in ms (absent or 0: unpaced,
  the whole stream in one write, as the chat stream). No maxOutputTokens: --chunks chunks.
  Without `alt=sse` (Vertex would send one JSON array) the mock answers 400.
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
    "gemini_json": 0,
    "gemini_streams": 0,
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

# Gemini's native API: the envelope every GenerateContentResponse carries.
_GEMINI_ENVELOPE = (
    b'"modelVersion":"gemini-2.5-flash","createTime":"2026-01-01T00:00:00.000000Z",'
    b'"responseId":"bW9jay1yZXNwb25zZS1pZA"}'
)
_GEMINI_USAGE = (
    b'"usageMetadata":{"promptTokenCount":12,"candidatesTokenCount":%d,"totalTokenCount":%d,'
    b'"trafficType":"ON_DEMAND","promptTokensDetails":[{"modality":"TEXT","tokenCount":12}],'
    b'"candidatesTokensDetails":[{"modality":"TEXT","tokenCount":%d}]},'
)
_GEMINI_ANSWER = (
    b'{"candidates":[{"content":{"role":"model","parts":[{"text":'
    b'"Hello! This is a canned answer from the benchmark mock upstream."}]},"finishReason":"STOP",'
    b'"avgLogprobs":-0.1}],' + _GEMINI_USAGE % (14, 26, 14) + _GEMINI_ENVELOPE
)
_GEMINI_JSON_RESPONSE = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json; charset=UTF-8\r\ncontent-length: "
    + str(len(_GEMINI_ANSWER)).encode()
    + b"\r\n\r\n"
    + _GEMINI_ANSWER
)
_GEMINI_A = b'data: {"candidates":[{"content":{"role":"model","parts":[{"text":"'
_GEMINI_B = b'"}]}}],' + _GEMINI_ENVELOPE
GEMINI_EOL = b"\r\n\r\n"  # --gemini-lf: b"\n\n"


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
        path = url.split(b"?", 1)[0]
        if method == b"POST" and path.endswith(b"/chat/completions"):
            self._chat(b"".join(self.body))
        elif method == b"POST" and path.endswith((b":streamGenerateContent", b":generateContent")):
            self._gemini(b"".join(self.body), path.endswith(b":generateContent"), b"alt=sse" in url)
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
        self._stream(_frame, _LAST_FRAME, chunks, interval)

    def _gemini(self, raw: bytes, whole: bool, sse: bool) -> None:
        if not self.auth:
            STATS["no_auth"] += 1
        try:
            req = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            self._write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
            return
        if whole:
            STATS["gemini_json"] += 1
            self._write(_GEMINI_JSON_RESPONSE)
            return
        if not sse:
            self._write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
            return
        STATS["gemini_streams"] += 1
        config = req.get("generationConfig") if isinstance(req, dict) else None
        config = config if isinstance(config, dict) else {}
        chunks = min(int(config.get("maxOutputTokens") or DEFAULT_CHUNKS), MAX_CHUNKS)
        interval = float(config.get("topK") or 0) / 1000.0
        self._stream(_gemini_frame, _gemini_last_frame(chunks), chunks, interval)

    def _stream(self, frame: Any, last: bytes, chunks: int, interval: float) -> None:
        """Headers, `chunks` frames from `frame()`, then `last` (which ends the chunked body)."""
        if self.transport is None:
            return
        if interval <= 0:
            # Unpaced: the whole stream in one write, stamped now.
            self.transport.write(_SSE_HEAD + b"".join(frame() for _ in range(chunks)) + last)
            STATS["chunks"] += chunks
            if not self.keep:
                self.transport.close()
            return
        self.transport.write(_SSE_HEAD)
        self.streaming = True
        self.loop.call_later(interval, self._tick, chunks, interval, frame, last)

    def _tick(self, left: int, interval: float, frame: Any, last: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            self.streaming = False
            return
        if left > 0:
            transport.write(frame())
            STATS["chunks"] += 1
            self.loop.call_later(interval, self._tick, left - 1, interval, frame, last)
            return
        transport.write(last)
        self.streaming = False
        if not self.keep:
            transport.close()


def _frame() -> bytes:
    event = _CHUNK_A + str(time.time_ns()).encode() + _CHUNK_B
    return b"%x\r\n%s\r\n" % (len(event), event)


def _gemini_frame() -> bytes:
    event = _GEMINI_A + str(time.time_ns()).encode() + _GEMINI_B + GEMINI_EOL
    return b"%x\r\n%s\r\n" % (len(event), event)


_GEMINI_LAST: dict[int, bytes] = {}


def _gemini_last_frame(chunks: int) -> bytes:
    """The finishReason event with usage for `chunks` tokens, and the chunked body's end (cached per count)."""
    frame = _GEMINI_LAST.get(chunks)
    if frame is None:
        event = (
            b'data: {"candidates":[{"content":{"role":"model","parts":[{"text":""}]},"finishReason":"STOP"}],'
            + _GEMINI_USAGE % (chunks, 12 + chunks, chunks)
            + _GEMINI_ENVELOPE
            + GEMINI_EOL
        )
        frame = b"%x\r\n%s\r\n0\r\n\r\n" % (len(event), event)
        if len(_GEMINI_LAST) < 1024:
            _GEMINI_LAST[chunks] = frame
    return frame


DEFAULT_CHUNKS = 20
MAX_CHUNKS = 100_000  # a bound on one stream, whatever maxOutputTokens says


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(MockProtocol, host, port, backlog=4096, reuse_address=True)
    print(f"mock upstream listening on {host}:{port}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    global DEFAULT_CHUNKS, GEMINI_EOL
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18081)
    parser.add_argument("--chunks", type=int, default=20, help="default SSE chunks per stream")
    parser.add_argument("--gemini-lf", action="store_true", help='end Gemini events in "\\n\\n", not "\\r\\n\\r\\n"')
    args = parser.parse_args()
    DEFAULT_CHUNKS = args.chunks
    if args.gemini_lf:
        GEMINI_EOL = b"\n\n"
    uvloop.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
