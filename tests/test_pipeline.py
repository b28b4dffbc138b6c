"""Endpoint.__call__, the one place a request's end becomes at most one answer and exactly one request line:
a table of ways a handler can end, and what the caller receives and the line records for each. The status
and size on the line are what the Responder sent, whatever the handler set on the way."""

import asyncio
import io
import json
import sys
from collections.abc import Awaitable, Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from starlette.testclient import TestClient
from starlette.types import Message

from app.asgi import ClientGone
from app.config import load_settings
from app.errors import GatewayError
from app.main import create_app
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


async def crashes_mid_stream(call: Call) -> None:
    await call.out.start_stream(200, [(b"content-type", b"text/event-stream")])
    await call.out.chunk(b"data: 1\n\n")
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
    # A bug is a 500 on the line (severity ERROR, a server error to the metrics) even after the stream began.
    (crashes_mid_stream, [200], 9, 500, 9, None, "internal error"),
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


# -- Starlette's own errors end the same way ------------------------------------------------------------------


@pytest.fixture
def app_client(monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    async def no_discovery(self: object) -> None:
        return None

    monkeypatch.setattr("app.vertex.TokenProvider.discover", no_discovery)
    settings = load_settings(
        {"GOOGLE_CLOUD_PROJECT": "test-project", "API_KEYS_JSON": '[{"id": "k", "key": "sk-test-0123456789"}]'}
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def request_lines(client: TestClient, out: io.StringIO, path: str) -> list[dict[str, Any]]:
    """The request lines for `path`, once the app's loop has written them (it may finish the request after the
    client has its answer; bounded to a second)."""
    assert client.portal is not None
    found: list[dict[str, Any]] = []
    for _ in range(100):
        client.portal.call(asyncio.sleep, 0.01)
        found = [json.loads(text) for text in out.getvalue().splitlines() if '"httpRequest"' in text]
        found = [entry for entry in found if entry["httpRequest"]["requestUrl"] == path]
        if found:
            break
    return found


@pytest.mark.parametrize(
    ("method", "path", "status", "shape_key", "says"),
    [
        ("POST", "/v1/chat/completions/", 404, "error", "no trailing slash"),
        ("POST", "/v1/messages/x", 404, "type", "/v1/messages"),
        ("GET", "/v1/chat/completions", 405, "error", "use POST"),
        ("DELETE", "/health", 405, "error", "Method DELETE is not allowed on /health"),
        ("GET", "/health", 500, "error", "internal"),
    ],
)
def test_starlettes_own_errors_are_answered_and_logged_like_refusals(
    app_client: TestClient,
    method: str,
    path: str,
    status: int,
    shape_key: str,
    says: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client, out = app_client, io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)  # here: pytest swaps its own capture in after the fixtures
    if status == 500:  # a bug outside the endpoints
        monkeypatch.setattr("app.vertex.TokenProvider.status", property(lambda self: 1 / 0))
    reply = client.request(method, path)
    assert reply.status_code == status
    body = reply.json()
    assert shape_key in body and says in json.dumps(body), body
    (line,) = request_lines(client, out, path)
    assert line["httpRequest"]["status"] == status
    assert line["httpRequest"]["responseSize"] == str(len(reply.content))
    assert line["error"]
