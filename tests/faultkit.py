"""Small helpers shared by the fault, shutdown and hostile-caller tests (issue 6).

Plain sockets and http.client on purpose: these tests need to send what no SDK
would (bad framing, huge headers, absolute-form targets) and to see exactly what
came back, including a connection closed without an answer.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from tests.conftest import API_KEYS, PROJECT
from tests.harness import Gateway

CHAT = "/v1/chat/completions"


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    trace: str = ""
    raw_headers: list[tuple[str, str]] = field(default_factory=list)

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    def error_message(self) -> str:
        return str(self.json["error"]["message"])


def new_trace() -> str:
    return uuid.uuid4().hex


def trace_headers(trace: str) -> dict[str, str]:
    # The gateway puts the trace id on its log line: how a test finds its own line.
    return {"X-Cloud-Trace-Context": f"{trace}/1;o=1"}


def log_for(gw: Gateway, trace: str, timeout: float = 10.0) -> dict[str, Any]:
    want = f"projects/{PROJECT}/traces/{trace}"
    return gw.wait_for_log(lambda e: e.get("logging.googleapis.com/trace") == want, timeout)


def chat_body(marker: str, stream: bool = False, fake: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "flash", "messages": [{"role": "user", "content": marker}], "stream": stream}
    if fake:
        body["fake"] = fake
    return body


def post(
    gw: Gateway,
    body: dict[str, Any] | bytes,
    *,
    path: str = CHAT,
    key: str | None = API_KEYS["full"],
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> Reply:
    """One request on a fresh connection; the whole answer (a stream is read to its end)."""
    trace = new_trace()
    sent = {"Content-Type": "application/json", **trace_headers(trace), **(headers or {})}
    if key is not None:
        sent["Authorization"] = f"Bearer {key}"
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=timeout)
    try:
        conn.request("POST", path, body=data, headers=sent)
        response = conn.getresponse()
        payload = response.read()
        raw = response.getheaders()
        return Reply(response.status, {k.lower(): v for k, v in raw}, payload, trace, raw)
    finally:
        conn.close()


def get(gw: Gateway, path: str, key: str | None = None, headers: dict[str, str] | None = None) -> Reply:
    trace = new_trace()
    sent = {**trace_headers(trace), **(headers or {})}
    if key is not None:
        sent["Authorization"] = f"Bearer {key}"
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=30)
    try:
        conn.request("GET", path, headers=sent)
        response = conn.getresponse()
        raw = response.getheaders()
        return Reply(response.status, {k.lower(): v for k, v in raw}, response.read(), trace, raw)
    finally:
        conn.close()


def assert_openai_error(reply: Reply, status: int, code: str | None = None) -> dict[str, Any]:
    assert reply.status == status, f"want {status}, got {reply.status}: {reply.body[:300]!r}"
    assert reply.headers.get("content-type", "").startswith("application/json"), reply.headers
    error = reply.json["error"]
    assert isinstance(error["message"], str) and error["message"], error
    assert isinstance(error["type"], str) and error["type"], error
    assert "param" in error and "code" in error, error
    if code is not None:
        assert error["code"] == code, error
    assert b"Traceback" not in reply.body
    return dict(error)


def sse_data(body: bytes) -> list[str]:
    return [line[6:].decode() for line in body.split(b"\n") if line.startswith(b"data: ")]


# -- the worker process, seen from outside ------------------------------------


def worker_pids(gw: Gateway) -> list[int]:
    """gunicorn's workers are the master's children."""
    pid = gw.proc.pid
    children: list[int] = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as handle:
                children += [int(p) for p in handle.read().split()]
        except FileNotFoundError:
            continue
    return children


def the_worker(gw: Gateway) -> int:
    pids = worker_pids(gw)
    assert len(pids) == 1, f"expected one worker, found {pids}"
    return pids[0]


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def eventually(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll a condition, bounded: a behaviour that never arrives is a failure, not a hang."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(interval)


def raw_exchange(port: int, data: bytes, timeout: float = 10.0) -> tuple[bytes, str | None]:
    """Send bytes on a fresh connection, read until the server closes; (answer, error on send/recv)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
        except OSError as exc:
            return b"", f"send: {type(exc).__name__}"
        chunks: list[bytes] = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except OSError as exc:
            return b"".join(chunks), f"recv: {type(exc).__name__}"
        return b"".join(chunks), None


def parse_raw(answer: bytes) -> Reply:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    raw = [tuple(part.strip() for part in line.split(":", 1)) for line in lines[1:] if ":" in line]
    headers = {k.lower(): v for k, v in raw}
    if headers.get("transfer-encoding") == "chunked":
        body = dechunk(body)
    return Reply(status, headers, body, raw_headers=raw)  # type: ignore[arg-type]


def dechunk(data: bytes) -> bytes:
    out = bytearray()
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += rest[:size]
        data = rest[size + 2 :]
    return bytes(out)


# -- a hostile upstream (issue 16) ----------------------------------------------


class CountingWriter:
    """What a script writes with: StreamWriter's write and drain, counting the bytes written."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self.written = 0

    def write(self, data: bytes) -> None:
        self._writer.write(data)
        self.written += len(data)

    async def drain(self) -> None:
        await self._writer.drain()


# A script answers one request: it writes what it likes and returns (or raises ConnectionError when
# the gateway hangs up first); the connection then serves the next request, if the gateway sends one.
Script = Callable[[CountingWriter], Awaitable[None]]

CHAT_ANSWER = json.dumps(
    {
        "id": "chatcmpl-hostile",
        "object": "chat.completion",
        "created": 0,
        "model": "google/gemini-2.5-flash",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "fine"}, "finish_reason": "stop"}],
    }
).encode()


@dataclass
class HostileRequest:
    script: str
    body: bytes
    sent: int = 0  # bytes the script wrote before it returned or the gateway hung up
    closed: threading.Event = field(default_factory=threading.Event)  # the gateway closed the connection


class HostileUpstream:
    """A raw HTTP/1.1 "Vertex" on 127.0.0.1, in its own thread and event loop.

    A request whose body contains the name of one of `scripts` is answered by that script, any other
    by a small chat completion; a connection serves requests until the gateway closes it. Raw asyncio
    streams on purpose: what it sends (endless heads, lying lengths, a trickle) is what no HTTP server
    library would let through.
    """

    def __init__(self, scripts: dict[str, Script]) -> None:
        self.scripts = scripts
        self.requests: list[HostileRequest] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def find(self, name: str) -> list[HostileRequest]:
        return [r for r in list(self.requests) if name.encode() in r.body]

    def __enter__(self) -> HostileUpstream:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(asyncio.start_server(self._serve, "127.0.0.1", 0), self._loop)
        self._server = future.result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            self._server.close()
            current = asyncio.current_task()
            tasks = [t for t in asyncio.all_tasks() if t is not current]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        record: HostileRequest | None = None
        counted = CountingWriter(writer)
        try:
            while (body := await self._read_request(reader)) is not None:
                name = next((n for n in self.scripts if n.encode() in body), "")
                record = HostileRequest(name, body)
                self.requests.append(record)
                counted.written = 0
                await self.scripts.get(name, _answer_chat)(counted)
                record.sent = counted.written
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # the gateway hung up, mid-answer or after it
        finally:
            writer.transport.abort()
            if record is not None:
                record.sent = counted.written
                record.closed.set()

    @staticmethod
    async def _read_request(reader: asyncio.StreamReader) -> bytes | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        return await reader.readexactly(length)


async def _answer_chat(writer: CountingWriter) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(CHAT_ANSWER)
    writer.write(head + CHAT_ANSWER)
    await writer.drain()
