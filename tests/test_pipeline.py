"""Endpoint.__call__, the one place a request's end becomes at most one answer and exactly one request line:
a table of ways a handler can end, and what the caller receives and the line records for each. The status
and size on the line are what the Responder sent, whatever the handler set on the way."""

import asyncio
import io
import json
import sys
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import pytest
from starlette.types import Message

from app.asgi import ClientGone
from app.errors import GatewayError
from app.pipeline import Call, Endpoint

Handler = Callable[[Call], Awaitable[None]]


async def answers_whole(call: Call) -> None:
    await call.out.whole(201, [(b"content-type", b"application/json")], b'{"ok":true}')


async def streams(call: Call) -> None:
    await call.out.start_stream(200, [(b"content-type", b"text/event-stream")])
    await call.out.chunk(b"data: 1\n\n")
    await call.out.chunk(b"data: 22\n\n")
    await call.out.end_stream()


async def refuses(call: Call) -> None:
    raise GatewayError(429, "Key 'team' is over its limit; wait", code="rate_limited")


async def fails_after_first_byte(call: Call) -> None:
    await call.out.start_stream(200, [(b"content-type", b"text/event-stream")])
    await call.out.chunk(b"data: 1\n\n")
    raise GatewayError(502, "Vertex AI broke off its answer")


async def hangs_up(call: Call) -> None:
    raise ClientGone()


async def has_a_bug(call: Call) -> None:
    raise KeyError("oops")


async def returns_silently(call: Call) -> None:
    """What a route does when a watcher saw the caller leave: nothing more to send."""
    call.line.outcome = "client_disconnected"


CASES = [
    # handler, statuses sent, body bytes sent, line status, responseSize, outcome, error
    (answers_whole, [201], 11, 201, 11, None, None),
    (streams, [200], 19, 200, 19, None, None),
    (refuses, [429], None, 429, "body", None, "Key 'team' is over its limit; wait"),
    (fails_after_first_byte, [200], 9, 200, 9, None, "Vertex AI broke off its answer"),
    (hangs_up, [], 0, 499, 0, "client_disconnected", None),
    (has_a_bug, [500], None, 500, "body", None, "internal error"),
    (returns_silently, [], 0, 499, 0, "client_disconnected", None),
]


def run(handler: Handler, monkeypatch: pytest.MonkeyPatch) -> tuple[list[Message], dict[str, Any]]:
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    sent: list[Message] = []

    class Probe(Endpoint):
        async def handle(self, call: Call) -> None:
            await handler(call)

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    async def scenario() -> None:
        gateway: Any = SimpleNamespace(project="proj")
        scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": [], "client": None}
        await Probe(gateway)(scope, receive, send)
        await asyncio.sleep(0)  # request lines are written once the loop turns

    asyncio.run(scenario())
    (line,) = [json.loads(text) for text in out.getvalue().splitlines()]
    return sent, line


@pytest.mark.parametrize(
    ("handler", "statuses", "body_bytes", "status", "size", "outcome", "error"),
    CASES,
    ids=[case[0].__name__ for case in CASES],
)
def test_how_a_request_ends(
    handler: Handler,
    statuses: list[int],
    body_bytes: int | None,
    status: int,
    size: int | str,
    outcome: str | None,
    error: str | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent, line = run(handler, monkeypatch)
    assert [m["status"] for m in sent if m["type"] == "http.response.start"] == statuses, "at most one answer"
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    if body_bytes is not None:
        assert len(body) == body_bytes
    if statuses and statuses[0] >= 400:
        assert json.loads(body)["error"]["message"], "a refusal says what was wrong, in the caller's shape"
    assert line["httpRequest"]["status"] == status
    assert line["httpRequest"]["responseSize"] == str(len(body) if size == "body" else size)
    assert line.get("outcome") == outcome
    assert line.get("error") == error
