"""Small ASGI helpers: headers in, body in (bounded), responses out through a Responder that remembers
what it sent."""

from collections.abc import Iterable

from starlette.types import Receive, Scope, Send

from app.errors import GatewayError

Headers = list[tuple[bytes, bytes]]


def header_map(scope: Scope) -> dict[bytes, bytes]:
    # The server lowercases names; the last value wins, which is all the gateway needs.
    return dict(scope["headers"])


# How far past the limit a body may run and still get a clean 413. Closing the connection on a
# client that is still sending makes it see a broken pipe, not the answer; below this margin the
# connection stays open and the rest of the body is read and thrown away (by uvicorn once the
# response is complete, or here for a chunked body), so the client can finish and read the 413.
# Beyond it the connection is closed at once: a huge upload is cut off early.
DRAIN_ALLOWANCE = 4 * 1024 * 1024


async def read_body(receive: Receive, headers: dict[bytes, bytes], limit: int) -> bytes:
    """The whole request body, refused with 413 once it passes `limit` (never buffered past it)."""
    declared = headers.get(b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit, close=int(declared) > limit + DRAIN_ALLOWANCE)
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        more = message.get("more_body", False)
        size += len(chunk)
        if size > limit + DRAIN_ALLOWANCE:
            raise _too_large(limit, close=True)
        if size > limit:
            chunks.clear()  # over the limit: read on to the end, keep nothing
        elif chunk:
            chunks.append(chunk)
    if size > limit:
        raise _too_large(limit, close=False)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _too_large(limit: int, close: bool) -> GatewayError:
    return GatewayError(
        413,
        f"Request body is larger than the gateway's limit of {limit} bytes (MAX_BODY_BYTES): "
        "send a shorter conversation or reference large files instead of inlining them",
        code="request_too_large",
        headers=[(b"connection", b"close")] if close else None,
    )


class ClientGone(Exception):
    """The client hung up before the request was complete; nobody to answer."""


class Responder:
    """The way out for one request: sends the answer and remembers what it said (the status, 0 until the
    answer starts, and the body bytes sent), so an error after the first byte is never answered a second
    time and the request line records what the caller was told."""

    __slots__ = ("_send", "sent", "status")

    def __init__(self, send: Send) -> None:
        self._send = send
        self.status = 0
        self.sent = 0

    @property
    def started(self) -> bool:
        return self.status != 0

    async def whole(self, status: int, headers: Iterable[tuple[bytes, bytes]], body: bytes) -> None:
        self.status, self.sent = status, len(body)
        await self._send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode())],
            }
        )
        await self._send({"type": "http.response.body", "body": body})

    async def start_stream(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.status = status
        await self._send({"type": "http.response.start", "status": status, "headers": headers})

    async def chunk(self, body: bytes) -> None:
        self.sent += len(body)
        await self._send({"type": "http.response.body", "body": body, "more_body": True})

    async def end_stream(self) -> None:
        await self._send({"type": "http.response.body", "body": b"", "more_body": False})
