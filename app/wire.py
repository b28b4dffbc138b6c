"""Small ASGI helpers: headers in, body in (bounded), responses out."""

from collections.abc import Iterable

from starlette.types import Receive, Scope, Send

from app.errors import GatewayError

Headers = list[tuple[bytes, bytes]]


def header_map(scope: Scope) -> dict[bytes, bytes]:
    # The server lowercases names; the last value wins, which is all the gateway needs.
    return dict(scope["headers"])


async def read_body(receive: Receive, headers: dict[bytes, bytes], limit: int) -> bytes:
    """The whole request body, refused with 413 as soon as it passes `limit`."""
    declared = headers.get(b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _too_large(limit: int) -> GatewayError:
    return GatewayError(
        413,
        f"Request body is larger than the gateway's limit of {limit} bytes (MAX_BODY_BYTES): "
        "send a shorter conversation or reference large files instead of inlining them",
        code="request_too_large",
        # The rest of the body is never read, so this connection cannot be reused.
        headers=[(b"connection", b"close")],
    )


class ClientGone(Exception):
    """The client hung up before the request was complete; nobody to answer."""


async def send_response(send: Send, status: int, headers: Iterable[tuple[bytes, bytes]], body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
