"""End to end: every bad input and upstream failure of issue 2, through a gunicorn gateway."""

from __future__ import annotations

import asyncio
import io
import json
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import aiohttp
import openai
import pytest

from tests.conftest import API_KEYS, PROJECT, GatewayFactory
from tests.fakes import free_port
from tests.fakes.vertex import FakeVertex, Recorded
from tests.harness import Gateway, start_gateway

pytestmark = pytest.mark.e2e

# Short first-byte timeout for the 504 case; no retries, so each scripted upstream
# failure is seen exactly once (retries are issue 6's tests).
HEADERS_TIMEOUT = 1.5
SMALL_BODY_LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def gw(gateway_env: dict[str, str | None]) -> Iterator[Gateway]:
    env = {
        **gateway_env,
        "UPSTREAM_RETRIES": "0",
        "UPSTREAM_HEADERS_TIMEOUT": str(HEADERS_TIMEOUT),
        "MAX_BODY_BYTES": str(SMALL_BODY_LIMIT),
    }
    gateway = start_gateway(env)
    yield gateway
    assert gateway.stop() == 0


@pytest.fixture
def sdk(gw: Gateway) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(api_key=API_KEYS["full"], base_url=gw.base_url, max_retries=0, timeout=30) as client:
        yield client


class Reply:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    @property
    def json(self) -> Any:
        return json.loads(self.body)


def call(
    url: str,
    method: str = "POST",
    body: Any = None,
    raw: bytes | None = None,
    key: str | None = API_KEYS["full"],
    headers: dict[str, str] | None = None,
    expect100: bool = False,
) -> Reply:
    async def go() -> Reply:
        sent = dict(headers or {})
        if key is not None:
            sent["Authorization"] = f"Bearer {key}"
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        payload: bytes | io.BytesIO | None = data
        if data is not None:
            sent.setdefault("Content-Type", "application/json")
            if len(data) > 1024 * 1024:
                payload = io.BytesIO(data)  # aiohttp warns about sending large raw bytes
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, url, data=payload, headers=sent, expect100=expect100) as r,
        ):
            return Reply(r.status, {k.lower(): v for k, v in r.headers.items()}, await r.read())

    return asyncio.run(go())


def assert_openai_error(reply: Reply, status: int, error_type: str | None = None) -> dict[str, Any]:
    assert reply.status == status, reply.body[:500]
    assert reply.headers.get("content-type", "").startswith("application/json")
    body = reply.json
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["type"], str) and error["type"]
    assert "Traceback" not in error["message"]
    if error_type:
        assert error["type"] == error_type
    return error


def chat(gw: Gateway) -> str:
    return gw.base_url + "/chat/completions"


def good_body(marker: str, **extra: Any) -> dict[str, Any]:
    return {"model": "flash", "messages": [{"role": "user", "content": marker}], **extra}


# -- bad requests -------------------------------------------------------------


def test_invalid_json(gw: Gateway, fake_vertex: FakeVertex) -> None:
    before = len(fake_vertex.requests)
    assert_openai_error(call(chat(gw), raw=b'{"model": "flash",'), 400, "invalid_request_error")
    assert len(fake_vertex.requests) == before


@pytest.mark.parametrize("raw", [b"[]", b'"flash"', b"42", b"null", b""])
def test_body_not_an_object(gw: Gateway, raw: bytes) -> None:
    assert_openai_error(call(chat(gw), raw=raw), 400, "invalid_request_error")


@pytest.mark.parametrize("model", ["<missing>", None, 7, ["flash"], {"id": "flash"}, ""])
def test_missing_or_non_string_model(gw: Gateway, model: Any) -> None:
    body: dict[str, Any] = {"messages": [{"role": "user", "content": "x"}]}
    if model != "<missing>":
        body["model"] = model
    assert_openai_error(call(chat(gw), body=body), 400, "invalid_request_error")


def test_unknown_alias_lists_valid_ones(sdk: openai.OpenAI, fake_vertex: FakeVertex, marker: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": marker}])
    message = caught.value.body["message"]  # type: ignore[index]
    assert "gpt-4o" in message and "flash" in message and "pro-preview" in message
    assert fake_vertex.find(marker) == []


def test_body_over_limit_is_413(gw: Gateway, fake_vertex: FakeVertex, marker: str) -> None:
    body = good_body(marker, padding="x" * (SMALL_BODY_LIMIT + 1))
    assert_openai_error(call(chat(gw), body=body), 413)
    assert fake_vertex.find(marker) == []


def test_default_body_limit_is_32_mib(gateway: Gateway, fake_vertex: FakeVertex, marker: str) -> None:
    limit = 32 * 1024 * 1024
    just_under = good_body(marker, padding="y" * (limit - 1024))
    reply = call(chat(gateway), body=just_under)
    assert reply.status == 200, reply.body[:500]
    over = good_body(marker, padding="z" * limit)
    # Expect: 100-continue lets the gateway refuse before the body is sent, as a
    # careful client would; otherwise the refusal can race the upload (a reset).
    assert_openai_error(call(chat(gateway), body=over, expect100=True), 413)
    assert len(fake_vertex.find(marker)) == 1


@pytest.mark.parametrize("method,path", [("GET", "/v1/nope"), ("POST", "/v1/completions"), ("GET", "/v2/models")])
def test_unknown_route_is_404(gw: Gateway, method: str, path: str) -> None:
    assert_openai_error(call(gw.url + path, method=method, body={} if method == "POST" else None), 404)


@pytest.mark.parametrize(
    "method,path", [("GET", "/v1/chat/completions"), ("DELETE", "/v1/models"), ("PUT", "/v1/chat/completions")]
)
def test_wrong_method_is_405(gw: Gateway, method: str, path: str) -> None:
    assert_openai_error(call(gw.url + path, method=method), 405)


# -- keys ---------------------------------------------------------------------


@pytest.mark.parametrize("key", [None, "", "gwk-unknown-key", API_KEYS["disabled"], API_KEYS["expired"]])
def test_bad_keys_are_401(gw: Gateway, fake_vertex: FakeVertex, marker: str, key: str | None) -> None:
    headers = {} if key is None else {"x-api-key": key}
    reply = call(chat(gw), body=good_body(marker), key=None, headers=headers)
    assert_openai_error(reply, 401, "authentication_error")
    assert fake_vertex.find(marker) == []


@pytest.mark.parametrize("name", ["disabled", "expired"])
def test_sdk_raises_authentication_error(gw: Gateway, name: str) -> None:
    with openai.OpenAI(api_key=API_KEYS[name], base_url=gw.base_url, max_retries=0) as client:
        with pytest.raises(openai.AuthenticationError):
            client.chat.completions.create(model="flash", messages=[{"role": "user", "content": "x"}])
        with pytest.raises(openai.AuthenticationError):
            client.models.list()


def test_model_not_allowed_for_key_is_403(gw: Gateway, fake_vertex: FakeVertex, marker: str) -> None:
    with openai.OpenAI(api_key=API_KEYS["flash_only"], base_url=gw.base_url, max_retries=0) as client:
        with pytest.raises(openai.PermissionDeniedError) as caught:
            client.chat.completions.create(model="pro-preview", messages=[{"role": "user", "content": marker}])
        assert caught.value.status_code == 403
        assert client.chat.completions.create(model="flash", messages=[{"role": "user", "content": marker}])
    assert [r.json["model"] for r in fake_vertex.find(marker)] == ["google/gemini-2.5-flash"]


# -- upstream failures --------------------------------------------------------


def test_upstream_unreachable_is_502(gateway_factory: GatewayFactory, marker: str) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    gw = gateway_factory({"VERTEX_BASE_URL": dead, "UPSTREAM_RETRIES": "0"})
    error = assert_openai_error(call(chat(gw), body=good_body(marker)), 502)
    assert "Traceback" not in error["message"]


def test_upstream_reset_is_502(gw: Gateway, fake_vertex: FakeVertex, marker: str) -> None:
    assert_openai_error(call(chat(gw), body=good_body(marker, fake={"reset": True})), 502)
    assert only(fake_vertex.find(marker)).aborted


def test_upstream_timeout_is_504(gw: Gateway, fake_vertex: FakeVertex, marker: str) -> None:
    reply = call(chat(gw), body=good_body(marker, fake={"header_delay": HEADERS_TIMEOUT + 3}))
    assert_openai_error(reply, 504)
    # The gateway gave up on the upstream request rather than leaving it open.
    rec = only(fake_vertex.find(marker))
    assert rec.finished.wait(5) and rec.disconnected


@pytest.mark.parametrize("wrapped", [False, True])
def test_upstream_429_keeps_status_retry_after_and_openai_shape(
    sdk: openai.OpenAI, fake_vertex: FakeVertex, marker: str, wrapped: bool
) -> None:
    controls = {"status": 429, "retry_after": "7", "error_list": wrapped}
    with pytest.raises(openai.RateLimitError) as caught:
        sdk.chat.completions.create(
            model="flash", messages=[{"role": "user", "content": marker}], extra_body={"fake": controls}
        )
    response = caught.value.response
    assert response.status_code == 429 and response.headers["retry-after"] == "7"
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert "Scripted failure." in body["error"]["message"]
    assert len(fake_vertex.find(marker)) == 1


@pytest.mark.parametrize(
    "status,exception",
    [(400, openai.BadRequestError), (403, openai.PermissionDeniedError), (404, openai.NotFoundError),
     (500, openai.InternalServerError), (503, openai.InternalServerError)],
)  # fmt: skip
def test_upstream_google_errors_map_to_sdk_exceptions(
    sdk: openai.OpenAI, marker: str, status: int, exception: type[openai.APIStatusError]
) -> None:
    with pytest.raises(exception) as caught:
        sdk.chat.completions.create(
            model="flash", messages=[{"role": "user", "content": marker}], extra_body={"fake": {"status": status}}
        )
    assert caught.value.status_code == status
    error = caught.value.response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and "Scripted failure." in error["message"]


def test_upstream_error_that_is_not_json_still_openai_shaped(gw: Gateway, marker: str) -> None:
    reply = call(chat(gw), body=good_body(marker, fake={"status": 500, "error_body": "<html>oops</html>"}))
    assert_openai_error(reply, 500)


# -- streams cut short --------------------------------------------------------


def trace_headers() -> tuple[str, dict[str, str]]:
    trace = uuid.uuid4().hex
    return trace, {"X-Cloud-Trace-Context": f"{trace}/1;o=1"}


def test_upstream_dying_mid_stream_ends_client_stream(gw: Gateway, fake_vertex: FakeVertex, marker: str) -> None:
    trace, headers = trace_headers()
    body = good_body(marker, stream=True, fake={"chunks": 10, "die_after": 3})

    async def go() -> tuple[int, list[bytes]]:
        sent = {"x-api-key": API_KEYS["full"], **headers}
        async with aiohttp.ClientSession() as session, session.post(chat(gw), json=body, headers=sent) as r:
            # read() raises ClientPayloadError if the gateway breaks the HTTP framing.
            data = await asyncio.wait_for(r.read(), 30)
            return r.status, [line for line in data.split(b"\n") if line.startswith(b"data: ")]

    status, events = asyncio.run(go())
    assert status == 200
    assert len(events) >= 3 and events[:3] == [e for e in events[:3] if e.startswith(b"data: {")]
    assert b"data: [DONE]" not in events
    assert only(fake_vertex.find(marker)).aborted
    entry = gw.wait_for_log(lambda e: e.get("logging.googleapis.com/trace") == f"projects/{PROJECT}/traces/{trace}")
    assert entry["severity"] in ("WARNING", "ERROR") and entry.get("outcome"), entry


def test_client_disconnect_closes_upstream(gw: Gateway, fake_vertex: FakeVertex, marker: str) -> None:
    trace, headers = trace_headers()
    body = good_body(marker, stream=True, fake={"chunks": 2000, "delay": 0.01})

    async def go() -> int:
        sent = {"x-api-key": API_KEYS["full"], **headers}
        async with aiohttp.ClientSession() as session, session.post(chat(gw), json=body, headers=sent) as r:
            seen = 0
            async for line in r.content:
                seen += line.startswith(b"data: {")
                if seen == 3:
                    break
            # Leaving the block with the body unread closes the connection.
            return r.status

    assert asyncio.run(go()) == 200
    rec = only(fake_vertex.find(marker))
    assert rec.finished.wait(10), "upstream request still open after the client left"
    assert rec.disconnected and rec.events_sent < 2000
    gw.wait_for_log(lambda e: e.get("logging.googleapis.com/trace") == f"projects/{PROJECT}/traces/{trace}")


def only(records: list[Recorded]) -> Recorded:
    assert len(records) == 1, f"expected one upstream request, got {len(records)}"
    return records[0]


def test_oversized_content_length_refused_before_the_body(gw: Gateway, fake_vertex: FakeVertex) -> None:
    # Only the headers are sent: a gateway that buffered the body first would never answer.
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {API_KEYS['full']}\r\nContent-Length: {SMALL_BODY_LIMIT * 16}\r\n\r\n".encode()
            + b'{"model": "flash", "padding": "'
        )
        head = sock.recv(65536).split(b"\r\n", 1)[0]
    assert head.startswith(b"HTTP/1.1 413"), head


def test_no_presented_key_in_logs_or_upstream(gw: Gateway, fake_vertex: FakeVertex) -> None:
    # Runs last in this module: every key above (good, bad, disabled, expired) was presented here.
    secrets = [k.encode() for k in [*API_KEYS.values(), "gwk-unknown-key"]]
    text = "\n".join(gw.lines()).encode()
    assert not any(s in text for s in secrets), "a presented key appears in the gateway's output"
    for rec in fake_vertex.requests:
        raw = rec.body + "\n".join(f"{k}: {v}" for k, v in rec.headers).encode()
        assert not any(s in raw for s in secrets), f"client key reached upstream: {rec.path}"
