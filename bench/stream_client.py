"""A low-overhead SSE client for the benchmark: raw asyncio + httptools on uvloop.

Two uses, both bounded in count and time, talking only to 127.0.0.1:
- per-chunk delay: each chunk from the mock carries its send time (time.time_ns) as
  its delta content; arrival minus stamp, via the gateway and direct, tells what the
  gateway adds per chunk.
- soak: many concurrent paced streams; counts complete streams, chunks and errors.

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

_STAMP = re.compile(rb'"content":\s*"(\d{16,20})"')


@dataclass
class StreamResult:
    status: int = 0
    chunks: int = 0
    done: bool = False
    error: str = ""
    delays_us: list[float] = field(default_factory=list)


class _StreamProtocol(asyncio.Protocol):
    def __init__(
        self, request: bytes, result: StreamResult, finished: asyncio.Future[None], count_only: bool = False
    ) -> None:
        self.request = request
        self.count_only = count_only
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
        if self.count_only:
            # Soak mode: no per-event work, so a thousand streams cost the client little.
            # An event ends at a blank line; one may straddle two reads.
            ends = body.count(b"\n\n")
            if self.buf.endswith(b"\n") and body.startswith(b"\n"):
                ends += 1
            result.chunks += ends
            tail = (self.buf + body)[-64:]
            if b"data: [DONE]" in tail:
                result.done = True
            self.buf = tail
            last = body.rfind(b'"content":"')
            if last >= 0:
                match = _STAMP.match(body, last)
                if match:
                    result.delays_us.append((self.now - int(match.group(1))) / 1000.0)
            return
        self.buf += body
        *events, self.buf = self.buf.split(b"\n\n")
        for event in events:
            if event.startswith(b"data: [DONE]"):
                result.done = True
            elif event.startswith(b"data:"):
                result.chunks += 1
                match = _STAMP.search(event)
                if match:
                    result.delays_us.append((self.now - int(match.group(1))) / 1000.0)

    def on_message_complete(self) -> None:
        if self.count_only and self.result.done:
            self.result.chunks -= 1  # the [DONE] event is not a chunk
        self._finish("")
        self.transport.close()

    def _finish(self, error: str) -> None:
        if not self.finished.done():
            if error and not self.result.error:
                self.result.error = error
            self.finished.set_result(None)


def build_request(port: int, path: str, body: dict[str, Any], key: str) -> bytes:
    payload = orjson.dumps(body)
    head = (
        f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n"
        f"content-type: application/json\r\nauthorization: Bearer {key}\r\n"
        f"content-length: {len(payload)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + payload


async def one_stream(port: int, request: bytes, limit_s: float, count_only: bool = False) -> StreamResult:
    loop = asyncio.get_running_loop()
    result = StreamResult()
    finished: asyncio.Future[None] = loop.create_future()
    transport = None
    try:
        transport, _ = await asyncio.wait_for(
            loop.create_connection(lambda: _StreamProtocol(request, result, finished, count_only), "127.0.0.1", port),
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
) -> dict[str, Any]:
    body = {
        "model": "flash",
        "messages": [{"role": "user", "content": "Stream a short answer."}],
        "stream": True,
        "mock_chunks": chunks,
        "mock_interval_ms": interval_ms,
    }
    request = build_request(port, path, body, key)

    async def delayed(i: int) -> StreamResult:
        # Spread connection setup over ramp_s so the listen backlog is not the test.
        if ramp_s > 0:
            await asyncio.sleep(ramp_s * i / streams)
        return await one_stream(port, request, limit_s, count_only)

    started = time.perf_counter()
    results = await asyncio.gather(*(delayed(i) for i in range(streams)))
    elapsed = time.perf_counter() - started
    delays = sorted(d for r in results for d in r.delays_us)
    errors = [r for r in results if r.error or r.status != 200 or not r.done or r.chunks != chunks + 1]
    return {
        "streams": streams,
        "elapsed_s": round(elapsed, 3),
        "complete": sum(1 for r in results if r.status == 200 and r.done and r.chunks == chunks + 1),
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
    parser.add_argument("--path", default="/v1/chat/completions")
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
