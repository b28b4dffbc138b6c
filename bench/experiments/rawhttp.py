"""Prototype: a minimal keep-alive HTTP/1.1 client on asyncio.Protocol + httptools.

Measured in bench/RESULTS.md as the replacement for aiohttp in `Upstream.open`
(suggestion 8). It offers just the surface app/proxy.py and app/endpoint.py use
from aiohttp.ClientResponse: status, headers.get, read(), content.read(n),
content.iter_any(), content.at_eof(), release(), close().

Not production code as it stands: no TLS options beyond the default context, no
flow control towards a slow client beyond pausing reads, no retry of a request on
a pooled connection the server closed meanwhile (aiohttp retries those).
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httptools

_HIGH_WATER = 16


class _Headers(dict[str, str]):
    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(name.lower(), default)


class _Conn(asyncio.Protocol):
    def __init__(self, pool: Pool, key: tuple[str, int, bool]) -> None:
        self.pool = pool
        self.key = key
        self.transport: Any = None
        self.parser = httptools.HttpResponseParser(self)
        self.response: Response | None = None
        self.closed = False
        self._name = b""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.response is not None:
            self.response._lost(exc)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if self.response is not None:
                self.response._lost(exc)
            self.transport.close()

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.response is not None
        self.response.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        assert self.response is not None
        self.response.status = self.parser.get_status_code()
        if not self.response._head.done():
            self.response._head.set_result(None)

    def on_body(self, body: bytes) -> None:
        assert self.response is not None
        self.response._feed(body)

    def on_message_complete(self) -> None:
        response = self.response
        assert response is not None
        response._keep = self.parser.should_keep_alive()
        response._finish()


class Response:
    def __init__(self, conn: _Conn) -> None:
        self._conn = conn
        self.status = 0
        self.headers = _Headers()
        loop = asyncio.get_running_loop()
        self._head: asyncio.Future[None] = loop.create_future()
        self._chunks: collections.deque[bytes] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._eof = False
        self._error: BaseException | None = None
        self._keep = False
        self._done = False
        self._paused = False

    # the aiohttp-like surface
    @property
    def content(self) -> Response:
        return self

    def at_eof(self) -> bool:
        return self._eof and not self._chunks

    async def iter_any(self) -> AsyncIterator[bytes]:
        while True:
            chunk = await self._next()
            if not chunk:
                return
            yield chunk

    async def read(self, limit: int = -1) -> bytes:
        out = []
        size = 0
        while limit < 0 or size < limit:
            chunk = await self._next()
            if not chunk:
                break
            out.append(chunk)
            size += len(chunk)
        return b"".join(out)

    def release(self) -> None:
        self._done = True
        conn = self._conn
        conn.response = None
        if self._eof and self._keep and not conn.closed and self._error is None:
            conn.pool._put(conn)
        else:
            conn.transport.close()

    def close(self) -> None:
        self._done = True
        self._conn.response = None
        self._conn.transport.close()

    # internals
    async def _next(self) -> bytes:
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self._eof:
                return b""
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
            self._waiter = None
        # Everything that arrived so far in one piece (as aiohttp's iter_any does): one
        # ASGI message and one socket write for many upstream chunk frames.
        chunks = self._chunks
        chunk = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        if self._paused:
            self._paused = False
            self._conn.transport.resume_reading()
        return chunk

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _feed(self, body: bytes) -> None:
        self._chunks.append(body)
        if len(self._chunks) >= _HIGH_WATER and not self._paused:
            self._paused = True
            self._conn.transport.pause_reading()
        self._wake()

    def _finish(self) -> None:
        self._eof = True
        self._wake()

    def _lost(self, exc: BaseException | None) -> None:
        if not self._eof:
            self._error = ConnectionResetError(f"upstream closed the connection: {exc}")
        if not self._head.done():
            self._head.set_exception(self._error or ConnectionResetError("closed"))
        self._wake()


class Pool:
    def __init__(self) -> None:
        self._idle: dict[tuple[str, int, bool], list[_Conn]] = collections.defaultdict(list)
        self._targets: dict[str, tuple[tuple[str, int, bool], bytes]] = {}
        self._ssl = ssl.create_default_context()

    def _target(self, url: str) -> tuple[tuple[str, int, bool], bytes]:
        found = self._targets.get(url)
        if found is None:
            parts = urlsplit(url)
            tls = parts.scheme == "https"
            port = parts.port or (443 if tls else 80)
            host = parts.hostname or ""
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            host_header = host if parts.port is None else f"{host}:{port}"
            found = ((host, port, tls), f"POST {path} HTTP/1.1\r\nHost: {host_header}\r\n".encode("latin-1"))
            self._targets[url] = found
        return found

    def _put(self, conn: _Conn) -> None:
        self._idle[conn.key].append(conn)

    async def _get(self, key: tuple[str, int, bool]) -> _Conn:
        idle = self._idle[key]
        while idle:
            conn = idle.pop()
            if not conn.closed and not conn.transport.is_closing():
                return conn
        host, port, tls = key
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(lambda: _Conn(self, key), host, port, ssl=self._ssl if tls else None)
        return conn

    async def post(self, url: str, payload: bytes, header_block: bytes) -> Response:
        """header_block: pre-rendered 'Name: value\\r\\n' lines (no Host, no Content-Length)."""
        key, start = self._target(url)
        conn = await self._get(key)
        response = Response(conn)
        conn.response = response
        conn.transport.write(b"".join((start, header_block, b"Content-Length: %d\r\n\r\n" % len(payload), payload)))
        await response._head
        return response

    async def close(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.transport.close()
        self._idle.clear()
