"""The call to Vertex: open it (retried only while nothing has reached the caller), own the response
from open to close, and turn the client's failures into the caller's 502/504.

Retries happen only before the response starts: a 429/503 or a failed connection may be tried again,
and a 401 once after a fresh token; once a byte is out, the answer is relayed as it is.
"""

import asyncio
import email.utils
import random
import time

from app.config import Settings
from app.errors import GatewayError
from app.logs import RequestLog
from app.upstream_client import (
    MAX_HEAD_BYTES,
    MAX_HEADERS,
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

RETRY_STATUSES = frozenset((429, 503))
# Failures before any response: nothing reached the caller yet, so trying again is safe.
RETRYABLE_ERRORS = (ConnectError, Disconnected)


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

    def exchange(self, url: str, payload: bytes, stream: bool, line: RequestLog) -> "Exchange":
        """The one owner of an upstream response: `async with upstream.exchange(...) as response:` opens it,
        and every way out of the block releases it to the pool (read to its end) or closes it (so Vertex
        stops generating)."""
        return Exchange(self, url, payload, stream, line)

    async def open(self, url: str, payload: bytes, stream: bool, line: RequestLog) -> UpstreamResponse:
        """POST to Vertex; retried only before any response reaches the client."""
        retries = 0
        reauthenticated = False
        while True:
            line.attempts += 1
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


class Exchange:
    """`Upstream.exchange`'s context manager: a plain class, since this runs on every request."""

    __slots__ = ("_args", "_response", "_upstream")

    def __init__(self, upstream: Upstream, url: str, payload: bytes, stream: bool, line: RequestLog) -> None:
        self._upstream = upstream
        self._args = (url, payload, stream, line)
        self._response: UpstreamResponse | None = None

    async def __aenter__(self) -> UpstreamResponse:
        self._response = await self._upstream.open(*self._args)
        return self._response

    async def __aexit__(self, *exc_info: object) -> None:
        response = self._response
        if response is None:
            return
        if response.at_eof():
            response.release()
        else:
            response.close()
