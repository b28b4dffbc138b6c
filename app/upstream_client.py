"""A small keep-alive HTTP/1.1 client for the calls to Vertex, on asyncio.Protocol + httptools.

Its one job: POST a body to Vertex and hand back the answer (status and headers at once, the body as it
arrives) on pooled keep-alive connections. It replaced aiohttp on the hot path (bench/RESULTS.md,
suggestion 8). Deliberately absent: redirects, cookies, proxies from the environment, decompression
(we send Accept-Encoding: identity), HTTP/2, and resending: a POST goes out once, so one sent on a
pooled connection that the server closed while idle fails with Disconnected, and the caller's retry
rules (app/upstream.py: counted, logged, with backoff) decide.

Connections are pooled per (scheme, host, port) without a bound; a connection idle for
`pool_idle_seconds` is closed by one sweep timer per client.

An upstream is trusted with nothing it could use to hurt the worker: the response head is bounded in
bytes and header count (MAX_HEAD_BYTES, MAX_HEADERS), a whole body read with read_whole() in bytes,
and a head_timeout given to post() is a deadline for the whole head, however slowly it trickles in.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import ssl
from typing import Any, NoReturn
from urllib.parse import urlsplit

import httptools

# Per-response buffer bound: reading from the socket pauses above it, and resumes when the reader
# takes the buffer (every read takes all of it, so the low-water mark is in effect zero).
HIGH_WATER = 256 * 1024
DNS_TTL = 60.0
_MAX_TARGETS = 256
# The response head (status line, headers, any 1xx heads before it). Vertex sends ~1-2 KiB in ~20
# headers; these bounds are far above that and far below what would hurt: httptools keeps a header
# line in memory until it ends, and every header costs a Python call on the event loop.
MAX_HEAD_BYTES = 64 * 1024
MAX_HEADERS = 256
_NEVER = float("inf")  # the deadline of a response without head_timeout, or past its head
_RESERVED = (b"\nhost:", b"\ncontent-length:", b"\ntransfer-encoding:")
Key = tuple[str, str, int]


class UpstreamError(Exception):
    """Any failure to get an answer from upstream."""


class ConnectError(UpstreamError):
    """No connection: refused, DNS, TLS. Nothing was sent, so retrying is safe."""


class ConnectTimeout(ConnectError, TimeoutError):
    """Connecting (TCP and TLS handshake) took longer than connect_timeout."""


class Disconnected(UpstreamError):
    """The connection closed or reset before or during the response."""


class ReadTimeout(UpstreamError, TimeoutError):
    """No byte from upstream for idle_timeout while waiting for the head or the body."""


class HeadersTimeout(ReadTimeout):
    """The response head was not complete within the head_timeout given to post()."""


class ProtocolError(UpstreamError):
    """The answer is not valid HTTP/1.x."""


class HeadersTooLarge(ProtocolError):
    """The response head is over MAX_HEAD_BYTES or has more than MAX_HEADERS headers."""


class BodyTooLarge(ProtocolError):
    """A body read with read_whole() is over its limit."""


class Headers(dict[str, str]):
    """Response headers by lower-case name; a repeated header's values are joined with ", " (in order)."""

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        return dict.get(self, name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return dict.__getitem__(self, name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and dict.__contains__(self, name.lower())


_NO_HEADERS = Headers()  # a response's headers before its head is in: never seen outside, never written


class _Connection(asyncio.Protocol):
    """One socket and its parser. It reads each answer's head (bounded: MAX_HEAD_BYTES, MAX_HEADERS) and
    hands the response it is for the status and headers, then the body as it arrives, then the end."""

    def __init__(self, client: UpstreamClient, key: Key) -> None:
        self.client = client
        self.key = key
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport = None  # type: ignore[assignment]  # set in connection_made
        self.parser = httptools.HttpResponseParser(self)
        self.response: UpstreamResponse | None = None  # owns the connection until release/close
        self.sink: UpstreamResponse | None = None  # receives the parser's events until its message ends
        self.closed = False
        self.idle_since = 0.0
        # The head being read (reset by send): any 1xx heads before the answer's count against the bounds.
        self._head_open = False
        self._headers = Headers()
        self._repeats: dict[str, list[str]] | None = None  # a repeated header's values after its first
        self._head_bytes = self._header_bytes = self._header_count = 0
        self._informational = False

    def send(self, response: UpstreamResponse, data: bytes) -> None:
        """Write a request: `response` owns the connection, and gets the parser's events, from now on."""
        self.response = self.sink = response
        self._head_open = True
        self._headers = Headers()
        self._repeats = None
        self._head_bytes = self._header_bytes = self._header_count = 0
        self._informational = False
        self.transport.write(data)

    def detach(self, reuse: bool) -> None:
        """The response is done with the connection: back to the pool, or (already aborted) let go."""
        self.response = None
        if reuse:
            self.client._put(self)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.client._conns.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.client._conns.discard(self)
        response, self.response, self.sink = self.response, None, None
        if response is not None:
            response._lost(exc)

    def abort(self) -> None:
        self.closed = True
        self.transport.abort()  # no lingering TLS shutdown: the server sees the close at once

    def data_received(self, data: bytes) -> None:
        response = self.response
        if response is None:  # bytes on an idle connection (a 408, garbage): not reusable
            self.abort()
            return
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            response._abort(ProtocolError(f"invalid HTTP response from upstream: {exc}"))  # no-op if already failed
        if self._head_open:
            # A head line not yet ended never reaches on_header, so bytes are what bound it. Reads that
            # complete the head are not counted here: on_header has counted their headers exactly.
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                response._abort(
                    HeadersTooLarge(f"upstream's response head is still unfinished after {MAX_HEAD_BYTES} bytes")
                )
        response._on_read(self.loop.time())

    # httptools callbacks
    def on_message_begin(self) -> None:
        if self.sink is None:  # a second answer to one request
            self.abort()

    def on_header(self, name: bytes, value: bytes) -> None:
        if (response := self.sink) is None:
            return
        count = self._header_count = self._header_count + 1
        size = self._header_bytes = self._header_bytes + len(name) + len(value) + 4  # ": " and CRLF
        if count > MAX_HEADERS or size > MAX_HEAD_BYTES:
            self._refuse_head(response)
        key, text = name.decode("latin-1").lower(), value.decode("latin-1")
        headers = self._headers
        if dict.get(headers, key) is None:
            headers[key] = text
        elif (repeats := self._repeats) is None:
            # Repeats are joined once the head is complete: joining as they come is quadratic.
            self._repeats = {key: [text]}
        elif (values := repeats.get(key)) is None:
            repeats[key] = [text]
        else:
            values.append(text)

    def _refuse_head(self, response: UpstreamResponse) -> NoReturn:
        response._abort(
            HeadersTooLarge(
                f"upstream's response head is over {MAX_HEAD_BYTES} bytes or {MAX_HEADERS} headers"
                f" ({self._header_count} headers, {self._header_bytes} bytes so far)"
            )
        )
        raise _StopParsing  # feed_data stops at once instead of parsing the rest of this read

    def on_headers_complete(self) -> None:
        if (response := self.sink) is None:
            return
        status = self.parser.get_status_code()
        if status < 200:  # 1xx: informational, the real answer follows (the head bounds still count it)
            self._headers.clear()
            self._repeats = None
            self._informational = True
            return
        self._head_open = False
        if self._repeats is not None:
            self._join_repeats()
        response._on_head(status, self._headers)

    def _join_repeats(self) -> None:
        """Each repeated header becomes one value, joined with ", " in arrival order, in linear time."""
        headers = self._headers
        for key, values in (self._repeats or {}).items():
            headers[key] = ", ".join([dict.__getitem__(headers, key), *values])
        self._repeats = None

    def on_body(self, body: bytes) -> None:
        if (response := self.sink) is not None:
            response._on_body(body)

    def on_message_complete(self) -> None:
        if (response := self.sink) is None:
            return
        if self._informational:
            self._informational = False
            return
        self.sink = None
        response._on_end(self.parser.should_keep_alive())


class _StopParsing(Exception):
    """Raised in a parser callback to make feed_data return at once (the response has already failed)."""


class UpstreamResponse:
    """The answer: status and headers at once, the body as it arrives. End with release() or close()."""

    __slots__ = (
        "_activity", "_buffered", "_chunks", "_complete", "_conn", "_deadline", "_detached", "_error",
        "_head_done", "_head_timeout", "_idle", "_keep", "_paused", "_timer", "_until_eof", "_waiter",
        "headers", "status",
    )  # fmt: skip

    def __init__(self, conn: _Connection, idle_timeout: float, head_timeout: float | None = None) -> None:
        self._conn = conn
        self._idle = idle_timeout
        # The head must be complete by this loop time: one deadline from the request being sent,
        # checked by the same timer as the idle clock (no timer of its own).
        self._head_timeout = head_timeout
        self._deadline = conn.loop.time() + head_timeout if head_timeout is not None else _NEVER
        self.status = 0
        self.headers = _NO_HEADERS  # until the head is in (post() returns only then)
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._activity = 0.0
        self._error: UpstreamError | None = None
        self._head_done = self._complete = self._until_eof = False
        self._keep = self._paused = self._detached = False

    def at_eof(self) -> bool:
        """The whole body arrived and was read."""
        return self._complete and not self._chunks

    def __aiter__(self) -> UpstreamResponse:
        """The body: each item is everything that arrived since the previous one."""
        return self

    async def __anext__(self) -> bytes:
        chunk = await self._next()
        if not chunk:
            raise StopAsyncIteration
        return chunk

    async def read(self, n: int = -1) -> bytes:
        """The rest of the body, or up to n bytes of it (fewer only at its end)."""
        parts: list[bytes] = []
        size = 0
        while n < 0 or size < n:
            chunk = await self._next()
            if not chunk:
                break
            if 0 <= n < size + len(chunk):
                self._chunks.appendleft(chunk[n - size :])
                self._buffered += len(chunk) - (n - size)
                chunk = chunk[: n - size]
            parts.append(chunk)
            size += len(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def read_whole(self, limit: int) -> bytes:
        """The rest of the body; BodyTooLarge (and the connection closed) once it is over `limit` bytes.

        A Content-Length over the limit is refused before a byte of the body is read.
        """
        declared = dict.get(self.headers, "content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            self._refuse_body(f"upstream declared a {int(declared)}-byte body", limit)
        parts: list[bytes] = []
        size = 0
        while chunk := await self._next():
            size += len(chunk)
            if size > limit:
                self._refuse_body(f"upstream sent more than {limit} bytes of body", limit)
            parts.append(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _refuse_body(self, what: str, limit: int) -> NoReturn:
        error = BodyTooLarge(f"{what}, over the {limit}-byte limit for a whole answer")
        self._chunks.clear()
        self._abort(error)
        raise error

    def release(self) -> None:
        """Pool the connection if the body was read to its end and keep-alive is allowed, else close it."""
        if self._detached:
            return
        if self._complete and self._keep and not self._chunks and not self._conn.closed and self._error is None:
            self._detached = True
            self._conn.detach(reuse=True)
        else:
            self.close()

    def close(self) -> None:
        """Drop the connection now: upstream sees it close (and Vertex stops generating)."""
        if self._detached:
            return
        self._detached = True
        self._chunks.clear()
        self._abort(Disconnected("the response was closed"))
        self._conn.detach(reuse=False)

    # the client's call
    async def _exchange(self, data: bytes) -> None:
        """Send the request on the connection; returns once the answer's head is in, else raises why not."""
        self._conn.send(self, data)
        while not self._head_done:
            if self._error is not None:
                raise self._error
            await self._wait()

    # the connection's calls, as the answer arrives
    def _on_read(self, now: float) -> None:
        """After each read from the socket: the idle clock starts again, and the reader wakes."""
        self._activity = now
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _on_head(self, status: int, headers: Headers) -> None:
        self.status = status
        self.headers = headers
        self._head_done = True
        self._deadline = _NEVER  # from here on only the idle clock applies
        self._until_eof = (
            status not in (204, 304)
            and "content-length" not in headers
            and "chunked" not in headers.get("transfer-encoding", "").lower()
        )

    def _on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > HIGH_WATER and not self._paused:
            self._paused = True
            self._conn.transport.pause_reading()

    def _on_end(self, keep_alive: bool) -> None:
        self._keep = keep_alive
        self._end()

    # internals
    async def _next(self) -> bytes:
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self._complete:
                return b""
            await self._wait()
        chunks = self._chunks
        chunk = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._buffered = 0
        if self._paused:
            self._paused = False
            self._conn.transport.resume_reading()
        return chunk

    async def _wait(self) -> None:
        loop = self._conn.loop
        # The idle clock counts from the last byte or from when the reader started waiting,
        # whichever is later: time the reader spent elsewhere (and reading paused) never counts.
        self._activity = loop.time()
        if self._timer is None:
            due = self._activity + self._idle
            self._timer = loop.call_at(due if due < self._deadline else self._deadline, self._on_timer)
        self._waiter = loop.create_future()
        try:
            await self._waiter
        except asyncio.CancelledError:
            # Never leave a half-read connection behind: a cancelled reader closes it.
            self._abort(Disconnected("the request was cancelled"))
            raise
        finally:
            self._waiter = None

    def _on_timer(self) -> None:
        self._timer = None
        if self._waiter is None or self._error is not None or self._complete:
            return  # nobody waiting: the next wait arms the timer again
        now = self._conn.loop.time() + 0.002  # timers may fire a hair early (uvloop: ms ticks)
        due = self._activity + self._idle
        if now >= self._deadline and not self._head_done:
            self._abort(HeadersTimeout(f"upstream sent no complete response head within {self._head_timeout:g} s"))
        elif now >= due:
            self._abort(ReadTimeout(f"upstream sent nothing for {self._idle:g} s"))
        else:
            self._timer = self._conn.loop.call_at(due if due < self._deadline else self._deadline, self._on_timer)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _end(self) -> None:
        self._complete = True
        self._settle()

    def _abort(self, exc: UpstreamError) -> None:
        if self._error is None and not self._complete:
            self._error = exc
        self._settle()
        self._conn.abort()

    def _settle(self) -> None:
        """Stop the idle clock (the body ended or failed) and wake the reader."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._wake()

    def _lost(self, exc: Exception | None) -> None:
        if self._complete:
            return
        if self._head_done and self._until_eof and exc is None:
            self._keep = False  # a body delimited by the end of the connection (HTTP/1.0 style)
            self._end()
            return
        if self._error is None:
            when = "during the response" if self._head_done else "before the response"
            self._error = Disconnected(f"upstream closed the connection {when}" + (f": {exc}" if exc else ""))
        self._settle()


class UpstreamClient:
    """HTTP/1.1 POSTs with keep-alive pooling; one instance per worker (per event loop).

    ConnectTimeout and ReadTimeout are also TimeoutErrors, so `except TimeoutError` still sees them.
    """

    def __init__(
        self,
        connect_timeout: float,
        idle_timeout: float,
        pool_idle_seconds: float = 60,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._connect_timeout = connect_timeout
        self._idle_timeout = idle_timeout
        self._pool_idle = pool_idle_seconds
        self._ssl = ssl_context  # for https URLs; a client without one speaks plain http only
        self._idle: dict[Key, list[_Connection]] = {}
        self._conns: set[_Connection] = set()
        self._targets: dict[str, tuple[Key, bytes]] = {}
        self._dns: dict[tuple[str, int], tuple[float, list[Any]]] = {}
        self._lookups: dict[tuple[str, int], asyncio.Task[list[Any]]] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed = False

    async def post(
        self, url: str, body: bytes, headers: dict[str, str], head_timeout: float | None = None
    ) -> UpstreamResponse:
        """POST `body`; returns once the response head arrived. Host and Content-Length are added here.

        With head_timeout, the head must be complete within that many seconds of the request being
        sent (HeadersTimeout), however steadily its bytes arrive; idle_timeout still bounds each silence.
        """
        key, start = self._targets.get(url) or self._target(url)
        block = "".join(f"{name}: {value}\r\n" for name, value in headers.items()).encode("latin-1")
        # CR/LF only as line ends (no header injection); no header this client sets itself.
        low = b"\n" + block.lower()
        if block.count(b"\n") != len(headers) or block.count(b"\r") != len(headers) or any(r in low for r in _RESERVED):
            raise ValueError(
                "header names and values must not contain CR/LF, Host, Content-Length or Transfer-Encoding"
            )
        data = b"%s%sContent-Length: %d\r\n\r\n%s" % (start, block, len(body), body)
        conn = None
        idle = self._idle.get(key)
        while idle and conn is None:
            candidate = idle.pop()
            if not candidate.closed and not candidate.transport.is_closing():
                conn = candidate  # else closed while idle: dropped
        response = UpstreamResponse(conn or await self._connect(key), self._idle_timeout, head_timeout)
        await response._exchange(data)
        return response

    async def close(self) -> None:
        """Close every connection, idle or busy (busy responses then raise Disconnected)."""
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        self._idle.clear()
        for conn in list(self._conns):
            conn.abort()
        await asyncio.sleep(0)  # let connection_lost run, so the sockets are gone when we return

    def _target(self, url: str) -> tuple[Key, bytes]:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        if parts.scheme == "https" and self._ssl is None:
            raise ValueError(f"an https URL needs a client made with an ssl_context: {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host = parts.netloc.rpartition("@")[2]
        if len(self._targets) >= _MAX_TARGETS:
            self._targets.clear()
        head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\n".encode("latin-1")
        found = self._targets[url] = ((parts.scheme, parts.hostname, port), head)
        return found

    async def _connect(self, key: Key) -> _Connection:
        if self._closed:
            raise ConnectError("the upstream client is closed")
        scheme, host, port = key
        context = self._ssl if scheme == "https" else None
        loop = asyncio.get_running_loop()
        errors: list[OSError] = []
        try:
            async with asyncio.timeout(self._connect_timeout):
                for family, _, _, _, address in await self._resolve(host, port):
                    try:
                        _, conn = await loop.create_connection(
                            lambda: _Connection(self, key), address[0], port, family=family,
                            ssl=context, server_hostname=host if context else None,
                        )  # fmt: skip
                        return conn
                    except OSError as exc:  # includes ssl.SSLError: try the next address
                        errors.append(exc)
        except TimeoutError:
            raise ConnectTimeout(f"connecting to {host}:{port} took longer than {self._connect_timeout:g} s") from None
        except OSError as exc:  # DNS
            raise ConnectError(f"cannot resolve {host}: {exc}") from exc
        last = errors[-1] if errors else OSError("no address")
        raise ConnectError(f"cannot connect to {host}:{port}: {type(last).__name__}: {last}") from last

    async def _resolve(self, host: str, port: int) -> list[Any]:
        """getaddrinfo, cached for DNS_TTL and shared by concurrent callers (a burst of new connections)."""
        loop = asyncio.get_running_loop()
        cached = self._dns.get((host, port))
        if cached is not None and cached[0] > loop.time():
            return cached[1]
        lookup = self._lookups.get((host, port))
        if lookup is None:
            lookup = self._lookups[(host, port)] = loop.create_task(self._lookup(host, port))
            lookup.add_done_callback(lambda task: task.cancelled() or task.exception())  # always retrieved
        return await asyncio.shield(lookup)

    async def _lookup(self, host: str, port: int) -> list[Any]:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        finally:
            del self._lookups[(host, port)]
        self._dns[(host, port)] = (loop.time() + DNS_TTL, infos)
        return infos

    def _put(self, conn: _Connection) -> None:
        if self._closed or self._pool_idle <= 0:
            conn.abort()
            return
        conn.idle_since = conn.loop.time()
        self._idle.setdefault(conn.key, []).append(conn)
        if self._sweeper is None:
            self._sweeper = conn.loop.call_at(conn.idle_since + self._pool_idle, self._sweep)

    def _sweep(self) -> None:
        """Close connections idle for pool_idle_seconds; each stack is oldest first."""
        self._sweeper = None
        loop = asyncio.get_running_loop()
        cutoff = loop.time() - self._pool_idle + 0.002  # a hair of slack: timers may fire early
        oldest: float | None = None
        for key, stack in list(self._idle.items()):
            expired = 0
            while expired < len(stack) and (stack[expired].closed or stack[expired].idle_since <= cutoff):
                stack[expired].abort()
                expired += 1
            del stack[:expired]
            if not stack:
                del self._idle[key]
            elif oldest is None or stack[0].idle_since < oldest:
                oldest = stack[0].idle_since
        if oldest is not None:
            self._sweeper = loop.call_at(oldest + self._pool_idle, self._sweep)


def default_ssl_context() -> ssl.SSLContext:
    """Verifying TLS context: the system CA store, or certifi's where the image has none."""
    context = ssl.create_default_context()
    if not context.cert_store_stats()["x509_ca"]:
        import certifi

        context.load_verify_locations(certifi.where())
    context.set_alpn_protocols(["http/1.1"])
    return context
