"""Vertex's answer to the caller: an error converted to the caller's shape, a whole answer bounded in
size, or a stream passed on chunk by chunk (through a Translator where the client speaks another API);
the request line learns the usage and what went wrong (the Responder knows the status and bytes sent)."""

from collections.abc import Awaitable
from typing import Protocol

from app.asgi import Responder
from app.errors import JSON_HEADERS, GatewayError, Shape, convert_upstream_error, render
from app.logs import RequestLog
from app.upstream_call import Translator, UpstreamCall
from app.upstream_client import BodyTooLarge, ReadTimeout, UpstreamError, UpstreamResponse
from app.usage import UsageSniffer, usage_of_json

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


async def relay(
    response: UpstreamResponse, target: UpstreamCall, shape: Shape, out: Responder, line: RequestLog
) -> None:
    """Send Vertex's answer to the client; the caller owns (and closes) `response`."""
    if response.status >= 400:
        await _relay_error(response, target, shape, out, line)
        return
    content_type = response.headers.get("Content-Type", "")
    answer = target.answer
    if not target.stream or not content_type.startswith("text/event-stream"):
        body = await _read_or_fail(response.read_whole(MAX_WHOLE_BODY))
        if answer is not None:
            body = answer.whole(body)
            line.usage = answer.usage
            content_type = "application/json"
        elif content_type.startswith("application/json"):
            line.usage = usage_of_json(body)
        headers = [(b"content-type", content_type.encode("latin-1") or b"application/json")]
        await _send_whole(out, response.status, headers, body, line)
        return
    await out.start_stream(response.status, STREAM_HEADERS)
    if answer is not None:
        await _translate_stream(response, answer, out, line)
        return
    await pass_stream(response, UsageSniffer(), out, line)


class Sniffer(Protocol):
    usage: dict[str, int] | None

    def feed(self, chunk: bytes) -> None: ...


async def pass_stream(response: UpstreamResponse, sniffer: Sniffer, out: Responder, line: RequestLog) -> None:
    """Vertex's stream (headers already sent) passed on chunk by chunk as it arrives, usage picked out on the way."""
    try:
        async for chunk in response:
            line.mark_first_byte()
            sniffer.feed(chunk)
            await out.chunk(chunk)
    except UpstreamError as exc:
        # Headers are out, so the status cannot change: end the stream cleanly and say why in the log.
        line.outcome = "upstream_died_mid_stream"
        line.error = f"{type(exc).__name__}: {exc}"
    finally:
        line.usage = sniffer.usage
    await out.end_stream()


async def _translate_stream(response: UpstreamResponse, answer: Translator, out: Responder, line: RequestLog) -> None:
    try:
        async for chunk in response:
            line.mark_first_byte()
            translated = answer.chunk(chunk)
            if translated:
                await out.chunk(translated)
        tail = answer.end()
    except UpstreamError as exc:
        line.outcome = "upstream_died_mid_stream"
        line.error = f"{type(exc).__name__}: {exc}"
        tail = answer.broken(f"Vertex AI broke off its answer ({type(exc).__name__}); retry")
    finally:
        line.usage = answer.usage
    await out.chunk(tail)
    await out.end_stream()


async def _relay_error(
    response: UpstreamResponse, target: UpstreamCall, shape: Shape, out: Responder, line: RequestLog
) -> None:
    status, headers, converted, logged = await error_answer(response, target, shape)
    line.error = logged
    await _send_whole(out, status, headers, converted, line)


async def error_answer(
    response: UpstreamResponse, target: UpstreamCall, shape: Shape
) -> tuple[int, list[tuple[bytes, bytes]], bytes, str]:
    """Vertex's error answer (status >= 400) in the caller's shape: status, headers, body, and what the request
    line records as the error."""
    body = await _read_or_fail(response.read(MAX_ERROR_BODY))
    # A 401 that survived a token refresh is the gateway's credential problem, not the
    # caller's: passing it on would make SDKs blame the caller's (valid) key.
    status = 502 if response.status == 401 else response.status
    retry_after = response.headers.get("Retry-After")
    extra = [(b"retry-after", retry_after.encode("latin-1"))] if retry_after else []
    if response.status == 404 and target.not_found:
        converted = render(shape, GatewayError(404, target.not_found, param="model", code="model_not_found"))[2]
    else:
        converted = convert_upstream_error(shape, response.status, body, status)
    return status, JSON_HEADERS + extra, converted, body[:500].decode("utf-8", "replace")


async def read_answer(response: UpstreamResponse) -> bytes:
    """A whole (non-stream) answer, bounded in size; a failure to read it is a clean error (nothing was sent)."""
    return await _read_or_fail(response.read_whole(MAX_WHOLE_BODY))


async def _send_whole(
    out: Responder, status: int, headers: list[tuple[bytes, bytes]], body: bytes, line: RequestLog
) -> None:
    line.mark_first_byte()
    await out.whole(status, headers, body)


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
