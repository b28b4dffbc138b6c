"""The gunicorn worker class: uvicorn tuned for a streaming proxy on the open internet.

uvicorn's httptools protocol trusts its client: no bound on a request's head or trailers, no
deadline before the headers, no cap on connections. BoundedHttpToolsProtocol adds those
(SPEC, Errors and Failure behaviour) at a cost of a few attribute updates per request.
"""

import logging
import math
import os
import resource
import time
from asyncio import TimerHandle, Transport
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn_worker import UvicornWorker

from app.asgi import DRAIN_ALLOWANCE

# Generous for any real client (browsers send ~1-2 KiB), small enough that a
# hostile one cannot make a worker hold megabytes of header per connection.
# The same bounds hold for a chunked request's trailers, counted with its head.
MAX_HEADER_BYTES = 64 * 1024
MAX_HEADER_COUNT = 128
DEFAULT_HEADERS_TIMEOUT = 20.0
# Above Cloud Run's own ceiling of 1,000 concurrent requests per instance.
DEFAULT_MAX_CONNECTIONS = 1000
# File descriptors kept back from the connection cap: logs, the listening socket, Secret Manager.
FD_RESERVE = 64


def _config_error(name: str, raw: str, want: str) -> SystemExit:
    # The same shape as app/config.py's errors: gunicorn prints it and stops.
    return SystemExit(f"config error: {name}={raw!r} must be {want}")


def _seconds_env(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (0 < value <= 3600):
        raise _config_error(name, raw, "a number of seconds above 0 and at most 3600")
    return value


def _count_env(name: str) -> int | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise _config_error(name, raw, "a whole number >= 1")
    return int(raw)


def _drain_budget() -> int:
    """How much of a request with a declared length may still be read after its answer went out.

    Covers app/asgi.py's promise: a body up to DRAIN_ALLOWANCE past MAX_BODY_BYTES is read and
    discarded so the client sees its 413 instead of a broken pipe. app/config.py validates the
    variable and stops startup on a bad value; here a bad one just falls back to the default.
    A chunked body answered early gets only CHUNKED_DRAIN_BYTES (below).
    """
    raw = os.environ.get("MAX_BODY_BYTES", "").strip()
    limit = int(raw) if raw.isdigit() else 32 * 1024 * 1024
    return limit + DRAIN_ALLOWANCE


# From accept (or from the first byte of a keep-alive connection's next request) to the end of
# the headers. Idle time between requests is uvicorn's keep-alive (gunicorn's keepalive, 620 s).
HEADERS_TIMEOUT = _seconds_env("CLIENT_HEADERS_TIMEOUT", DEFAULT_HEADERS_TIMEOUT)
MAX_CONNECTIONS_SETTING = _count_env("MAX_CONNECTIONS")
DRAIN_BYTES = _drain_budget()
# The app drains a chunked 413 itself before answering, so a chunked request answered early is a
# refusal before the body (401, 403) whose size nobody declared: enough for an ordinary request to
# finish and read its answer, little enough that a flood of them cannot keep the loop busy draining
# (bench/attack.py: at 4 MiB, 16 such connections pushed /health's median to 86 ms).
CHUNKED_DRAIN_BYTES = 1024 * 1024


def _plain(status: bytes, message: str, *extra: bytes) -> bytes:
    body = message.encode()
    head = [b"HTTP/1.1 " + status, b"content-type: text/plain; charset=utf-8", *extra]
    head += [b"content-length: %d" % len(body), b"connection: close"]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


TOO_LARGE_MESSAGE = f"Request headers or trailers exceed {MAX_HEADER_BYTES} bytes."
TOO_LARGE = _plain(b"431 Request Header Fields Too Large", TOO_LARGE_MESSAGE)
BAD_REQUEST = _plain(b"400 Bad Request", "Invalid HTTP request received.")
TIMED_OUT = _plain(b"408 Request Timeout", f"Request headers not received within {HEADERS_TIMEOUT:g} s.")
BUSY = _plain(b"503 Service Unavailable", "Too many open connections; retry shortly.", b"retry-after: 1")
WARN_INTERVAL = 60.0


class _Warnings:
    """One server warning per kind a minute, with a count of the ones held back.

    Under attack, a line per refused connection or request would cost more CPU than the refusal.
    """

    def __init__(self) -> None:
        self.last: dict[str, float] = {}
        self.held: dict[str, int] = {}

    def warn(self, logger: logging.Logger, message: str) -> None:
        now = time.monotonic()
        if now - self.last.get(message, -WARN_INTERVAL) < WARN_INTERVAL:
            self.held[message] = self.held.get(message, 0) + 1
            return
        self.last[message] = now
        held = self.held.pop(message, 0)
        logger.warning("%s%s", message, f" ({held} more like it in the last minute)" if held else "")


WARNINGS = _Warnings()


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with bounds on a request's head, trailers, time and connections.

    Sizes: httptools hands over a header only once it is complete and keeps a partial one in its
    own buffer, so two counts bound a request: the fields it reported (URL, headers, trailers:
    exact, whatever the reads), and the bytes of reads that completed nothing (an unfinished
    head, trailer or chunk-size line: all that can sit in the parser's buffer). Each alone never
    exceeds the real size, so neither refuses a legitimate request.
    """

    max_connections = DEFAULT_MAX_CONNECTIONS  # set per worker by GatewayWorker

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0  # header and trailer fields reported for this request (the URL joins at the end)
        self._fields = 0
        self._stalled = 0  # bytes of consecutive reads that completed nothing
        self._progress = 0  # bumped when the parser gets past a head, body bytes or a request's end
        self._headers_done = False  # this request's headers are in: further fields are trailers
        self._drain_left = 0  # how much more may be read of a request whose answer went out
        self._refusal: bytes | None = None
        # When the current wait began (a head, or the rest of an answered request); None when idle.
        self._wait_start: float | None = None
        self._clock: TimerHandle | None = None

    # -- connections ------------------------------------------------------------------

    def connection_made(self, transport: Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.max_connections:
            self._refuse_connection(transport)
            return
        super().connection_made(transport)
        self._wait_start = self.loop.time()
        self._clock = self.loop.call_later(HEADERS_TIMEOUT, self._check_clock)

    def _refuse_connection(self, transport: Transport) -> None:
        # Answered before reading anything, and never counted: an idle horde cannot exhaust the
        # worker's file descriptors, and a client sees a 503 it can retry rather than a reset.
        self.transport = transport
        transport.write(BUSY)
        transport.close()
        WARNINGS.warn(self.logger, f"Refusing connections over MAX_CONNECTIONS ({self.max_connections}).")

    def connection_lost(self, exc: Exception | None) -> None:
        if self._clock is not None:
            self._clock.cancel()
            self._clock = None
        super().connection_lost(exc)

    # -- reads --------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        # uvicorn's data_received, with the bounds around the parser.
        self._unset_keepalive_if_required()
        if self._wait_start is None and not self._headers_done:
            # The first bytes of a keep-alive connection's next request: its head is now on the clock.
            self._wait_start = self.loop.time()
        progress = self._progress
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            WARNINGS.warn(self.logger, "Invalid HTTP request received." if self._refusal is None else TOO_LARGE_MESSAGE)
            self._refuse(self._refusal or BAD_REQUEST)
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        if self._progress == progress:
            self._stalled += len(data)
            if self._stalled > MAX_HEADER_BYTES:
                WARNINGS.warn(self.logger, TOO_LARGE_MESSAGE)
                self._refuse(TOO_LARGE)
                return
        else:
            self._stalled = 0
        if self._headers_done and self.cycle.response_complete:
            # Answered early (a 401, a declared-size 413): the rest is read and thrown away so the
            # client can read the answer, but only as much as a near-miss body; then we hang up.
            self._drain_left -= len(data)
            if self._drain_left < 0:
                self.transport.close()

    def _too_large(self) -> httptools.HttpParserError:
        # Raised inside the parser, it comes back out of feed_data as an HttpParserError.
        self._refusal = TOO_LARGE
        return httptools.HttpParserError(TOO_LARGE_MESSAGE)

    def _refuse(self, answer: bytes | None) -> None:
        """Close the connection, answering only when nothing else is on the wire."""
        cycle = self.cycle
        if self._headers_done:
            # This request's own cycle: once its answer has started, a second one would corrupt it.
            quiet = cycle.response_started
            if not quiet:
                cycle.disconnected = True  # the app's pending receive() sees a disconnect
                cycle.message_event.set()
        else:
            # A head: the previous request's answer may still be going out.
            quiet = cycle is not None and not cycle.response_complete
        if answer is not None and not quiet:
            self.transport.write(answer)
        self.transport.close()

    # -- parser callbacks ---------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = self._fields = 0

    def on_header(self, name: bytes, value: bytes) -> None:
        self._fields += 1
        self._head_bytes += len(name) + len(value) + 4  # "name: value\r\n", near enough
        if self._head_bytes > MAX_HEADER_BYTES:
            raise self._too_large()
        if self._fields > MAX_HEADER_COUNT:
            # Surfaces as a plain 400 and a closed connection.
            raise httptools.HttpParserError(f"more than {MAX_HEADER_COUNT} header fields")
        if self._headers_done:
            # A trailer: bounded like a header, then dropped (RFC 9110 6.5.1 allows it). uvicorn would
            # append it to scope["headers"], where it would override the real header of that name.
            return
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._head_bytes + len(self.url) > MAX_HEADER_BYTES:
            raise self._too_large()
        self._headers_done = True
        self._wait_start = None
        self._progress += 1
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._progress += 1
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._headers_done = False
        self._wait_start = None
        self._progress += 1
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._headers_done and not self.transport.is_closing():
            # Answered before the request was all in: the rest must arrive within the same timeout,
            # and within a budget (a rare path: the header scan costs nothing on the usual one).
            self._wait_start = self.loop.time()
            chunked = any(name == b"transfer-encoding" for name, _ in self.headers)
            self._drain_left = CHUNKED_DRAIN_BYTES if chunked else DRAIN_BYTES

    # -- the clock: one timer per connection, re-armed only when it fires -----------------

    def _check_clock(self) -> None:
        self._clock = None
        if self.transport.is_closing():
            return
        start, now = self._wait_start, self.loop.time()
        if start is not None and now - start >= HEADERS_TIMEOUT:
            self._timed_out()
            return
        delay = HEADERS_TIMEOUT if start is None else start + HEADERS_TIMEOUT - now
        self._clock = self.loop.call_later(delay, self._check_clock)

    def _timed_out(self) -> None:
        # A 408 only for a started head; an idle connection or an answered request just closes.
        started = not self._headers_done and (self._stalled > 0 or self._fields > 0)
        self._refuse(TIMED_OUT if started else None)


def _connection_cap() -> int:
    """MAX_CONNECTIONS, or the default within the worker's file-descriptor limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        # Raise the soft limit as far as allowed (Go's runtime does the same); best effort.
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if MAX_CONNECTIONS_SETTING is not None:
        return MAX_CONNECTIONS_SETTING
    # Each client connection may hold an upstream one too.
    return max(1, min(DEFAULT_MAX_CONNECTIONS, (soft - FD_RESERVE) // 2))


class GatewayWorker(UvicornWorker):
    CONFIG_KWARGS: dict[str, Any] = {
        "loop": "uvloop",
        "http": BoundedHttpToolsProtocol,
        "ws": "none",
        # The app writes its own structured line per request.
        "access_log": False,
        "lifespan": "on",
        # Leaves a margin inside gunicorn's graceful_timeout (9 s) so the worker
        # exits 0 on its own instead of being killed.
        "timeout_graceful_shutdown": 7,
        "server_header": False,
        # The app reads X-Forwarded-For itself for its log line; uvicorn's middleware would
        # cost every request a pass over the headers to trust only 127.0.0.1 anyway.
        "proxy_headers": False,
        "date_header": True,
        # No limit_concurrency: uvicorn checks it per request against all open connections, so
        # at the cap it refuses requests on established connections too. The cap is at accept.
    }

    def init_process(self) -> None:
        BoundedHttpToolsProtocol.max_connections = _connection_cap()
        self.log.info(
            "client limits: headers %d bytes / %d fields, headers timeout %g s, %d connections",
            MAX_HEADER_BYTES,
            MAX_HEADER_COUNT,
            HEADERS_TIMEOUT,
            BoundedHttpToolsProtocol.max_connections,
        )
        super().init_process()
