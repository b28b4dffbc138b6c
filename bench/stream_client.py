"""A low-overhead SSE client for the benchmark: raw asyncio + httptools on uvloop.

Two uses, both bounded in count and time, talking only to 127.0.0.1:
- per-chunk delay: each chunk from the mock carries its send time (time.time_ns) as
  its text; arrival minus stamp, via the gateway and direct, tells what the gateway
  adds per chunk.
- soak: many concurrent paced streams; counts complete streams, chunks and errors.

Three wire APIs (--api), each with its own body, auth header, chunk and end-of-stream marks:
- chat: OpenAI chat completions (the gateway's /v1/chat/completions, or the mock's Vertex
  chat URL); stamp in `"content":"<ns>"`; a chunk is a `data:` event (N chunks and the usage
  event, so N+1), the end is `data: [DONE]`.
- messages: Anthropic Messages (/v1/messages, `x-api-key`); stamp in a `text_delta`'s
  `"text":"<ns>"`; a chunk is a text_delta event (N), the end is `message_stop`. The mock's
  knobs ride in `max_tokens` (chunks) and `top_k` (interval ms), which the gateway translates
  into Gemini's generationConfig (see mock_upstream.py).
- gemini: Gemini's native streamGenerateContent?alt=sse, straight to the mock (the direct
  baseline of a translated stream); stamp in `"text":"<ns>"`; a chunk is a `data:` event (N and
  the finishReason event, so N+1), the end is the event with `"finishReason"`.

Run as a module for a JSON result on stdout (see --help); bench.py drives it.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import resource
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import httptools
import orjson
import uvloop

_STAMP = re.compile(rb'"(?:content|text)":\s*"(\d{16,20})"')
# Events end at a blank line: LF LF, or CRLF CRLF as Gemini on Vertex writes them.
_EVENT_END = re.compile(rb"\r?\n\r?\n")
MODEL = "flash"
PROMPT = "Stream a short answer."
GEMINI_PATH = (
    "/v1/projects/bench-project/locations/global/publishers/google/models/gemini-2.5-flash"
    ":streamGenerateContent?alt=sse"
)


@dataclass(frozen=True)
class Api:
    name: str
    path: str  # default request path
    chunk_mark: bytes  # in count-only mode: one occurrence per counted chunk
    done_mark: bytes  # the stream's last event carries it
    stamp_at: bytes  # where a stamp starts, for count-only mode's one sample per read
    extra_chunks: int  # counted chunks beyond the N stamped ones

    def is_chunk(self, event: bytes) -> bool:
        if self.name == "messages":
            return event.startswith(b"event: content_block_delta") and b'"text_delta"' in event
        return event.startswith(b"data:") and not event.startswith(b"data: [DONE]")

    def is_done(self, event: bytes) -> bool:
        if self.name == "messages":
            return event.startswith(b"event: message_stop")
        return self.done_mark in event


APIS = {
    "chat": Api("chat", "/v1/chat/completions", b"data: ", b"data: [DONE]", b'"content":"', 1),
    "messages": Api("messages", "/v1/messages", b'"text_delta"', b"event: message_stop", b'"text":"', 0),
    "gemini": Api("gemini", GEMINI_PATH, b"data: ", b'"finishReason"', b'"text":"', 1),
}


def request_body(api: str, chunks: int, interval_ms: float) -> dict[str, Any]:
    """The stream request of each API, with the mock's knobs where they survive the gateway."""
    if api == "messages":
        body: dict[str, Any] = {
            "model": MODEL,
            "max_tokens": chunks,
            "messages": [{"role": "user", "content": PROMPT}],
            "stream": True,
        }
        if interval_ms > 0:
            body["top_k"] = interval_ms
        return body
    if api == "gemini":
        config: dict[str, Any] = {"maxOutputTokens": chunks}
        if interval_ms > 0:
            config["topK"] = interval_ms
        return {"contents": [{"role": "user", "parts": [{"text": PROMPT}]}], "generationConfig": config}
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": PROMPT}],
        "stream": True,
        "mock_chunks": chunks,
        "mock_interval_ms": interval_ms,
    }


@dataclass
class StreamResult:
    status: int = 0
    chunks: int = 0
    done: bool = False
    error: str = ""
    delays_us: list[float] = field(default_factory=list)


class _StreamProtocol(asyncio.Protocol):
    def __init__(
        self,
        request: bytes,
        result: StreamResult,
        finished: asyncio.Future[None],
        count_only: bool = False,
        api: Api = APIS["chat"],
    ) -> None:
        self.request = request
        self.count_only = count_only
        self.api = api
        self.result = result
        self.finished = finished
        self.parser = httptools.HttpResponseParser(self)
        self.buf = b""
        self.now = 0
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        # One clock read per read(): all events in this segment arrived together.
        self.now = time.time_ns()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._finish(f"parse: {exc}")

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish(f"connection lost: {exc}" if not self.result.done else "")

    def on_status(self, status: bytes) -> None:
        self.result.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        result = self.result
        api = self.api
        if self.count_only:
            # Soak mode: no per-event work, so a thousand streams cost the client little.
            # A mark may straddle two reads: count in the last read's tail + this one, minus the tail's own.
            window = self.buf + body
            result.chunks += window.count(api.chunk_mark) - self.buf.count(api.chunk_mark)
            if api.done_mark in window:
                result.done = True
            self.buf = window[-64:]
            last = body.rfind(api.stamp_at)
            if last >= 0:
                match = _STAMP.match(body, last)
                if match:
                    result.delays_us.append((self.now - int(match.group(1))) / 1000.0)
            return
        self.buf += body
        *events, self.buf = _EVENT_END.split(self.buf)
        for event in events:
            if api.is_done(event):
                result.done = True
            if api.is_chunk(event):
                result.chunks += 1
                match = _STAMP.search(event)
                if match:
                    result.delays_us.append((self.now - int(match.group(1))) / 1000.0)
            elif event.startswith(b"event: error"):
                result.error = result.error or event.decode("utf-8", "replace")[:300]

    def on_message_complete(self) -> None:
        if self.count_only and self.result.done and self.api.name == "chat":
            self.result.chunks -= 1  # the [DONE] event is not a chunk
        self._finish("")
        self.transport.close()

    def _finish(self, error: str) -> None:
        if not self.finished.done():
            if error and not self.result.error:
                self.result.error = error
            self.finished.set_result(None)


def build_request(port: int, path: str, body: dict[str, Any], key: str, api: str = "chat") -> bytes:
    payload = orjson.dumps(body)
    auth = f"x-api-key: {key}\r\nanthropic-version: 2023-06-01" if api == "messages" else f"authorization: Bearer {key}"
    head = (
        f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n"
        f"content-type: application/json\r\n{auth}\r\n"
        f"content-length: {len(payload)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + payload


async def one_stream(
    port: int, request: bytes, limit_s: float, count_only: bool = False, api: Api = APIS["chat"]
) -> StreamResult:
    loop = asyncio.get_running_loop()
    result = StreamResult()
    finished: asyncio.Future[None] = loop.create_future()
    transport = None
    try:
        transport, _ = await asyncio.wait_for(
            loop.create_connection(
                lambda: _StreamProtocol(request, result, finished, count_only, api), "127.0.0.1", port
            ),
            limit_s,
        )
        await asyncio.wait_for(finished, limit_s)
    except (TimeoutError, OSError) as exc:
        result.error = result.error or f"{type(exc).__name__}: {exc}"
    finally:
        if transport is not None:
            transport.close()
    return result


async def run_streams(
    port: int,
    path: str,
    key: str,
    streams: int,
    chunks: int,
    interval_ms: float,
    limit_s: float,
    ramp_s: float,
    count_only: bool = False,
    api: str = "chat",
) -> dict[str, Any]:
    spec = APIS[api]
    request = build_request(port, path or spec.path, request_body(api, chunks, interval_ms), key, api)
    expected = chunks + spec.extra_chunks

    async def delayed(i: int) -> StreamResult:
        # Spread connection setup over ramp_s so the listen backlog is not the test.
        if ramp_s > 0:
            await asyncio.sleep(ramp_s * i / streams)
        return await one_stream(port, request, limit_s, count_only, spec)

    def complete(r: StreamResult) -> bool:
        return not r.error and r.status == 200 and r.done and r.chunks == expected

    started = time.perf_counter()
    results = await asyncio.gather(*(delayed(i) for i in range(streams)))
    elapsed = time.perf_counter() - started
    delays = sorted(d for r in results for d in r.delays_us)
    errors = [r for r in results if not complete(r)]
    return {
        "api": api,
        "streams": streams,
        "elapsed_s": round(elapsed, 3),
        "complete": sum(1 for r in results if complete(r)),
        "errors": len(errors),
        "error_samples": sorted({f"{r.status} {r.error} chunks={r.chunks}" for r in errors})[:5],
        "chunks": sum(r.chunks for r in results),
        "delays_us": delays,
    }


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    index = min(len(values) - 1, max(0, round(q / 100.0 * (len(values) - 1))))
    return values[index]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--api", choices=sorted(APIS), default="chat", help="wire API (see the module docstring)")
    parser.add_argument("--path", default="", help="request path (default: the API's own)")
    parser.add_argument("--key", default="")
    parser.add_argument("--streams", type=int, default=10)
    parser.add_argument("--chunks", type=int, default=20)
    parser.add_argument("--interval-ms", type=float, default=20.0)
    parser.add_argument("--timeout", type=float, default=60.0, help="per stream, seconds")
    parser.add_argument("--ramp", type=float, default=0.0, help="seconds to spread connects")
    parser.add_argument("--raw-delays", action="store_true", help="include every delay")
    parser.add_argument("--count-only", action="store_true", help="soak mode: count events, sample one delay per read")
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    out = uvloop.run(
        run_streams(
            args.port,
            args.path,
            args.key,
            args.streams,
            args.chunks,
            args.interval_ms,
            args.timeout,
            args.ramp,
            args.count_only,
            args.api,
        )
    )
    delays = out["delays_us"]
    out["delay_p50_us"] = pct(delays, 50)
    out["delay_p99_us"] = pct(delays, 99)
    out["delay_max_us"] = delays[-1] if delays else float("nan")
    if not args.raw_delays:
        del out["delays_us"]
    sys.stdout.write(orjson.dumps(out).decode() + "\n")


if __name__ == "__main__":
    main()
