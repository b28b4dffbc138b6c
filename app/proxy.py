"""Forward one request to Vertex and relay its answer, closing upstream on every path.

Retries happen only while nothing has been sent to the client: before the
response starts, a 429/503 or a failed connection may be tried again; once a
byte is out, the upstream answer is relayed as it is, to its end or its death.
"""

import asyncio
import email.utils
import random
import time
from collections.abc import Awaitable
from types import TracebackType

import orjson
from starlette.types import Receive, Send

from app.config import Settings
from app.errors import JSON_HEADERS, GatewayError, Shape, convert_upstream_error
from app.logs import RequestLog
from app.upstream_client import (
    MAX_HEAD_BYTES,
    MAX_HEADERS,
    BodyTooLarge,
    ConnectError,
    ConnectTimeout,
    Disconnected,
    HeadersTimeout,
    HeadersTooLarge,
    ReadTimeout,
    UpstreamClient,
    UpstreamError,
    UpstreamResponse,
)
from app.vertex import TokenProvider
from app.wire import send_response

RETRY_STATUSES = frozenset((429, 503))
# Failures before any response: nothing reached the caller yet, so trying again is safe.
RETRYABLE_ERRORS = (ConnectError, Disconnected)
MAX_ERROR_BODY = 1 << 20
# A whole (non-stream) answer is held in memory before it is sent. Cloud Run cannot return a larger
# HTTP/1 response anyway (its documented limit is 32 MiB; only streamed answers may be longer), and
# JSON answers, even with inline images, stay far below it.
MAX_WHOLE_BODY = 32 << 20
STREAM_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    # Tell any buffering proxy in front of us to pass events through as they come.
    (b"x-accel-buffering", b"no"),
]


class CancelOnDisconnect:
    """Cancels the current task when the client hangs up, so the upstream call stops at once.

    Used as `with CancelOnDisconnect(receive) as watch:`; the CancelledError it
    causes is swallowed on exit and `watch.disconnected` tells what happened.
    The watcher task starts only after WATCH_DELAY: most quick requests finish
    before that and never pay for a task, while a hang-up during a slow answer
    is still seen (receive() reports a disconnect whenever it happened).
    """

    WATCH_DELAY = 0.05

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self.disconnected = False
        self._active = False
        self._watcher: asyncio.Task[None] | None = None

    def __enter__(self) -> "CancelOnDisconnect":
        self._task = asyncio.current_task()
        self._active = True
        self._timer = asyncio.get_running_loop().call_later(self.WATCH_DELAY, self._start)
        return self

    def _start(self) -> None:
        if self._active:
            self._watcher = asyncio.ensure_future(self._wait())

    async def _wait(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass
        # The request may have ended meanwhile; the flag keeps a late wake-up from cancelling anything.
        if self._active and self._task is not None:
            self.disconnected = True
            self._task.cancel()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> bool:
        self._active = False
        self._timer.cancel()
        if self._watcher is not None:
            self._watcher.cancel()
        if self.disconnected and self._task is not None:
            self._task.uncancel()
            return kind is None or issubclass(kind, asyncio.CancelledError)
        return False


def _retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    if value.strip().isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - time.time())


def _backoff(attempt: int, cap: float) -> float:
    ceiling = min(cap, 0.5 * 2 ** (attempt - 1))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


class Upstream:
    def __init__(self, client: UpstreamClient, tokens: TokenProvider, settings: Settings) -> None:
        self.client = client
        self.tokens = tokens
        self.settings = settings
        base = {"Content-Type": "application/json", "Accept-Encoding": "identity", "User-Agent": "llm-gateway"}
        self._headers = {
            True: {**base, "Accept": "text/event-stream"},
            False: {**base, "Accept": "application/json"},
        }
        # A deadline for the whole response head, kept by the client's own per-response timer
        # (a trickle of bytes re-arms the idle clock but never moves this deadline).
        self._head_timeout = settings.headers_timeout

    async def open(self, url: str, payload: bytes, stream: bool, log: RequestLog) -> UpstreamResponse:
        """POST to Vertex; retried only before any response reaches the client."""
        retries = 0
        reauthenticated = False
        while True:
            log.attempts += 1
            token = await self.tokens.token()
            headers = {**self._headers[stream], "Authorization": f"Bearer {token}"}
            try:
                response = await self.client.post(url, payload, headers, self._head_timeout)
            except RETRYABLE_ERRORS as exc:
                if retries < self.settings.upstream_retries:
                    retries += 1
                    await asyncio.sleep(_backoff(retries, self.settings.retry_max_wait))
                    continue
                if isinstance(exc, TimeoutError):
                    raise _timed_out(self.settings, exc) from None
                raise _unreachable(url, exc) from None
            except TimeoutError as exc:
                raise _timed_out(self.settings, exc) from None
            except HeadersTooLarge as exc:
                raise _headers_too_large(exc) from None
            except UpstreamError as exc:
                raise _unreachable(url, exc) from None
            if response.status == 401 and not reauthenticated:
                # A token revoked or rotated early: fetch a fresh one and try exactly once more.
                response.close()
                self.tokens.invalidate(token)
                reauthenticated = True
                continue
            if response.status in RETRY_STATUSES and retries < self.settings.upstream_retries:
                wait = _retry_after_seconds(response.headers.get("Retry-After"))
                wait = _backoff(retries + 1, self.settings.retry_max_wait) if wait is None else wait
                if wait <= self.settings.retry_max_wait:
                    response.close()
                    retries += 1
                    await asyncio.sleep(wait)
                    continue
            return response


def _unreachable(url: str, exc: BaseException) -> GatewayError:
    host = url.split("/")[2]
    return GatewayError(
        502,
        f"Vertex AI at {host} could not be reached ({type(exc).__name__}: {exc}); retry shortly",
        code="upstream_unreachable",
    )


def _timed_out(settings: Settings, exc: BaseException) -> GatewayError:
    if isinstance(exc, ConnectTimeout):
        what = f"could not connect within {settings.connect_timeout:g} s (UPSTREAM_CONNECT_TIMEOUT)"
    elif isinstance(exc, HeadersTimeout) or not isinstance(exc, ReadTimeout):
        what = f"sent no response headers within {settings.headers_timeout:g} s (UPSTREAM_HEADERS_TIMEOUT)"
    else:  # silent before its headers for longer than the idle bound
        what = f"sent nothing for {settings.idle_timeout:g} s before its response headers (UPSTREAM_IDLE_TIMEOUT)"
    return GatewayError(504, f"Vertex AI {what}; retry, or raise the timeout", code="upstream_timeout")


def _headers_too_large(exc: HeadersTooLarge) -> GatewayError:
    return GatewayError(
        502,
        f"Vertex AI sent response headers over the gateway's bound ({MAX_HEAD_BYTES} bytes, {MAX_HEADERS} headers): "
        f"{exc}; the answer was dropped and the connection closed",
        code="upstream_headers_too_large",
    )


def normalize_usage(usage: object) -> dict[str, int] | None:
    if not isinstance(usage, dict):
        return None
    out: dict[str, int] = {}
    for name, value in usage.items():
        if isinstance(value, int) and not isinstance(value, bool):
            name = {"prompt_tokens": "input_tokens", "completion_tokens": "output_tokens"}.get(name, name)
            if name in ("input_tokens", "output_tokens", "total_tokens"):
                out[name] = value
    return out or None


def _usage_of_json(body: bytes) -> dict[str, int] | None:
    try:
        return usage_of(orjson.loads(body))
    except orjson.JSONDecodeError:
        return None


def usage_of(data: object) -> dict[str, int] | None:
    if not isinstance(data, dict):
        return None
    usage = data.get("usage")
    if usage is None and isinstance(data.get("message"), dict):
        usage = data["message"].get("usage")  # Anthropic's message_start
    return normalize_usage(usage)


class UsageSniffer:
    """Picks token usage out of an SSE stream without holding more than one partial event."""

    MAX_PARTIAL = 1 << 20

    def __init__(self) -> None:
        self._partial = b""
        self.usage: dict[str, int] | None = None

    def feed(self, chunk: bytes) -> None:
        if not self._partial and chunk.endswith(b"\n\n") and b'"usage"' not in chunk:
            return  # the common case: whole events, none with usage
        data = self._partial + chunk if self._partial else chunk
        end = data.rfind(b"\n\n")
        if end < 0:
            self._partial = data if len(data) <= self.MAX_PARTIAL else b""
            return
        self._partial = data[end + 2 :] if len(data) - end - 2 <= self.MAX_PARTIAL else b""
        complete = data[:end]
        if b'"usage"' not in complete:
            return
        for event in complete.split(b"\n\n"):
            if b'"usage"' not in event:
                continue
            for line in event.split(b"\n"):
                if line.startswith(b"data:"):
                    try:
                        found = usage_of(orjson.loads(line[5:]))
                    except orjson.JSONDecodeError:
                        continue
                    if found:
                        self.usage = {**(self.usage or {}), **found}


async def relay(response: UpstreamResponse, shape: Shape, stream: bool, send: Send, log: RequestLog) -> None:
    """Send Vertex's answer to the client; the caller closes `response`."""
    log.status = response.status
    retry_after = response.headers.get("Retry-After")
    if response.status >= 400:
        body = await _read_or_fail(response.content.read(MAX_ERROR_BODY))
        log.error = body[:500].decode("utf-8", "replace")
        # A 401 that survived a token refresh is the gateway's credential problem, not the
        # caller's: passing it on would make SDKs blame the caller's (valid) key.
        status = 502 if response.status == 401 else response.status
        log.status = status
        extra = [(b"retry-after", retry_after.encode("latin-1"))] if retry_after else []
        converted = convert_upstream_error(shape, response.status, body, status)
        await _send_whole(send, status, JSON_HEADERS + extra, converted, log)
        return
    content_type = response.headers.get("Content-Type", "")
    if not stream or not content_type.startswith("text/event-stream"):
        body = await _read_or_fail(response.read_whole(MAX_WHOLE_BODY))
        if content_type.startswith("application/json"):
            log.usage = _usage_of_json(body)
        headers = [(b"content-type", content_type.encode("latin-1") or b"application/json")]
        await _send_whole(send, response.status, headers, body, log)
        return
    log.response_started = True
    await send({"type": "http.response.start", "status": response.status, "headers": STREAM_HEADERS})
    sniffer = UsageSniffer()
    try:
        async for chunk in response.content.iter_any():
            log.mark_first_byte()
            log.response_bytes += len(chunk)
            sniffer.feed(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    except UpstreamError as exc:
        # Headers are out, so the status cannot change: end the stream cleanly and say why in the log.
        log.outcome = "upstream_died_mid_stream"
        log.error = f"{type(exc).__name__}: {exc}"
    finally:
        log.usage = sniffer.usage
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _send_whole(
    send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes, log: RequestLog
) -> None:
    log.mark_first_byte()
    log.response_bytes = len(body)
    log.response_started = True
    await send_response(send, status, headers, body)


async def _read_or_fail(read: Awaitable[bytes]) -> bytes:
    """A whole (non-streamed) upstream body; nothing was sent yet, so a failure can still be a clean error."""
    try:
        return await read
    except BodyTooLarge as exc:
        raise GatewayError(
            502,
            f"Vertex AI's answer is larger than the gateway passes whole ({MAX_WHOLE_BODY >> 20} MiB): {exc}; "
            'ask for a shorter answer, or stream it ("stream": true)',
            code="upstream_body_too_large",
        ) from None
    except ReadTimeout:
        raise GatewayError(
            504, "Vertex AI stopped sending its answer midway (UPSTREAM_IDLE_TIMEOUT); retry", code="upstream_timeout"
        ) from None
    except UpstreamError as exc:
        raise GatewayError(
            502, f"Vertex AI broke off its answer ({type(exc).__name__}: {exc}); retry", code="upstream_broken"
        ) from None
