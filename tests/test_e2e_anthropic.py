"""End to end: the Anthropic Messages API through the gateway to Claude on Vertex (issue 7).

The gateway runs as a gunicorn process in front of the Vertex fake; the official
`anthropic` SDK drives it, and every test checks what reached the fake, since
that is what real Vertex would judge.
"""

from __future__ import annotations

import http.client
import json
import secrets
import socket
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

from tests.conftest import API_KEYS, KEY_IDS, LOCATION, PROJECT
from tests.fakes.metadata import FakeMetadata
from tests.fakes.vertex import FakeVertex, Recorded
from tests.fakes.vertex_chat import count_words
from tests.fakes.vertex_claude import count_tokens as fake_count_tokens
from tests.harness import Gateway, start_gateway

pytestmark = pytest.mark.e2e

# Explicit here so the tests do not move when the gateway's defaults do.
ALIASES = {
    "flash": "google/gemini-2.5-flash",
    "sonnet": "anthropic/claude-sonnet-4-6",
    "haiku": "anthropic/claude-haiku-4-5@20251001",
}
BETAS_ALLOWED = ["interleaved-thinking-2025-05-14", "context-management-2025-06-27"]
UNKNOWN_BETA = "made-up-feature-2099-01-01"
VERTEX_VERSION = "vertex-2023-10-16"
HAIKU_VERTEX = "claude-haiku-4-5@20251001"
CLAUDE_PREFIX = f"/v1/projects/{PROJECT}/locations/{LOCATION}/publishers/anthropic/models/"
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Weather for a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
# Every way a caller may name Claude Haiku 4.5: alias, Anthropic API id, Vertex id, qualified Vertex id.
HAIKU_NAMES = ["haiku", "claude-haiku-4-5-20251001", HAIKU_VERTEX, f"anthropic/{HAIKU_VERTEX}"]


def upstream_path(vertex_model: str, verb: str = "rawPredict") -> str:
    return f"{CLAUDE_PREFIX}{vertex_model}:{verb}"


@pytest.fixture(scope="module")
def claude_gateway(gateway_env: dict[str, str | None]) -> Iterator[Gateway]:
    gw = start_gateway(
        {**gateway_env, "MODEL_ALIASES": json.dumps(ALIASES), "ANTHROPIC_BETAS_ALLOWED": ",".join(BETAS_ALLOWED)}
    )
    yield gw
    code = gw.stop()
    assert code == 0, f"gateway exited {code} on SIGTERM; log: {gw.log_path}"


@pytest.fixture
def claude(claude_gateway: Gateway) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(
        api_key=API_KEYS["full"], base_url=claude_gateway.url, max_retries=0, timeout=60
    ) as client:
        yield client


def only(records: list[Recorded]) -> Recorded:
    assert len(records) == 1, f"expected one upstream request, got {[r.path for r in records]}"
    return records[0]


def assert_vertex_request(rec: Recorded, fake_metadata: FakeMetadata) -> None:
    """What every Claude request must look like when it reaches Vertex."""
    body = rec.json
    assert "model" not in body, "the model travels in the URL; Vertex refuses it in the body"
    assert body["anthropic_version"] == VERTEX_VERSION
    assert rec.query == "", "the client's query string (?beta=true) must not reach Vertex"
    auth = rec.header("Authorization") or ""
    assert auth.removeprefix("Bearer ") in fake_metadata.issued, "upstream must see the service account token"
    assert_no_client_key(rec)


def assert_no_client_key(rec: Recorded) -> None:
    seen = " ".join(f"{k}: {v}" for k, v in rec.headers) + rec.body.decode("utf-8", "replace")
    for name, key in API_KEYS.items():
        assert key not in seen, f"the {name} gateway key leaked upstream"
    assert rec.header("x-api-key") is None and rec.header("anthropic-beta") is None


def raw(
    gateway: Gateway, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One plain HTTP request, for what an SDK cannot send (bad JSON, HEAD, no key)."""
    conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def anthropic_error(body: bytes | object, kind: str) -> str:
    """Assert Anthropic's error shape and the error type; return the message."""
    data = json.loads(body) if isinstance(body, bytes) else body
    assert isinstance(data, dict) and data.get("type") == "error", data
    assert set(data["error"]) >= {"type", "message"}, data
    assert data["error"]["type"] == kind, data
    message = data["error"]["message"]
    assert isinstance(message, str) and message
    return message


def trace_header() -> tuple[str, dict[str, str]]:
    """A unique trace id: the gateway writes it into the request's log line, which finds that line again."""
    trace = secrets.token_hex(16)
    return trace, {"X-Cloud-Trace-Context": f"{trace}/1;o=1"}


def log_line(gateway: Gateway, trace: str) -> dict[str, Any]:
    want = f"projects/{PROJECT}/traces/{trace}"
    return gateway.wait_for_log(lambda e: e.get("logging.googleapis.com/trace") == want and "httpRequest" in e)


# -- the anthropic Python SDK -------------------------------------------------


@pytest.mark.parametrize("name", HAIKU_NAMES)
def test_create_forwards_body_unchanged_but_model_and_version(
    name: str, claude: anthropic.Anthropic, fake_vertex: FakeVertex, fake_metadata: FakeMetadata, marker: str
) -> None:
    sent = {
        "max_tokens": 2048,
        "messages": [{"role": "user", "content": f"hi {marker}"}],
        "system": "Be brief.",
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "stop_sequences": ["\n\nHuman:"],
        "metadata": {"user_id": "tester"},
    }
    reply = claude.messages.create(model=name, **sent)  # type: ignore[call-overload]
    assert reply.content[0].type == "text" and reply.content[0].text == f"echo: hi {marker}"
    assert reply.stop_reason == "end_turn"
    assert reply.usage.input_tokens > 0 and reply.usage.output_tokens > 0

    rec = only(fake_vertex.find(marker))
    assert rec.path == upstream_path(HAIKU_VERTEX)
    assert_vertex_request(rec, fake_metadata)
    assert rec.json == {**sent, "anthropic_version": VERTEX_VERSION}


def test_bearer_auth_token(
    claude_gateway: Gateway, fake_vertex: FakeVertex, fake_metadata: FakeMetadata, marker: str
) -> None:
    # What ANTHROPIC_AUTH_TOKEN does: `Authorization: Bearer`, no x-api-key.
    with anthropic.Anthropic(
        api_key=None, auth_token=API_KEYS["hashed"], base_url=claude_gateway.url, max_retries=0, timeout=60
    ) as client:
        reply = client.messages.create(
            model="sonnet", max_tokens=32, messages=[{"role": "user", "content": f"bearer {marker}"}]
        )
    assert reply.content[0].type == "text" and reply.content[0].text == f"echo: bearer {marker}"
    rec = only(fake_vertex.find(marker))
    assert rec.path == upstream_path("claude-sonnet-4-6")
    assert_vertex_request(rec, fake_metadata)


def test_stream_events_final_message_and_usage(
    claude: anthropic.Anthropic, fake_vertex: FakeVertex, fake_metadata: FakeMetadata, marker: str
) -> None:
    prompt = f"tell me about streams {marker}"
    with claude.messages.stream(
        model="claude-haiku-4-5-20251001", max_tokens=64, messages=[{"role": "user", "content": prompt}]
    ) as stream:
        kinds = []
        pieces = []
        for event in stream:
            kinds.append(event.type)
            if event.type == "content_block_delta" and event.delta.type == "text_delta":
                pieces.append(event.delta.text)
        final = stream.get_final_message()

    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert {"content_block_start", "content_block_stop", "message_delta"} <= set(kinds)
    assert len(pieces) > 1, "the answer should arrive as several deltas, not one buffered block"
    assert "".join(pieces) == f"echo: {prompt}"
    assert final.content[0].type == "text" and final.content[0].text == f"echo: {prompt}"
    assert final.stop_reason == "end_turn"
    # message_start says output_tokens 1; message_delta's final count must win.
    assert final.usage.input_tokens > 0
    assert final.usage.output_tokens == count_words(final.content[0].model_dump(include={"type", "text"})) > 1

    rec = only(fake_vertex.find(marker))
    assert rec.path == upstream_path(HAIKU_VERTEX, "streamRawPredict")
    assert rec.json["stream"] is True
    assert_vertex_request(rec, fake_metadata)


def test_count_tokens_keeps_model_as_vertex_id(
    claude: anthropic.Anthropic, fake_vertex: FakeVertex, fake_metadata: FakeMetadata, marker: str
) -> None:
    messages: list[Any] = [{"role": "user", "content": f"count these words please {marker}"}]
    counted = claude.messages.count_tokens(model="claude-haiku-4-5-20251001", system="Be brief.", messages=messages)
    assert counted.input_tokens == fake_count_tokens({"messages": messages, "system": "Be brief."})["input_tokens"]

    rec = only(fake_vertex.find(marker))
    # At `global` (the default location) count-tokens goes to a region that serves it.
    assert rec.path == upstream_path("count-tokens").replace("/locations/global/", "/locations/us-east5/")
    assert rec.json["model"] == HAIKU_VERTEX
    assert rec.json["messages"] == messages and rec.json["system"] == "Be brief."
    assert_no_client_key(rec)
    assert (rec.header("Authorization") or "").removeprefix("Bearer ") in fake_metadata.issued


@pytest.mark.parametrize("streaming", [False, True], ids=["create", "stream"])
def test_tool_use_then_tool_result(
    streaming: bool, claude: anthropic.Anthropic, fake_vertex: FakeVertex, fake_metadata: FakeMetadata, marker: str
) -> None:
    messages: list[Any] = [{"role": "user", "content": f"weather in Paris? {marker}"}]

    def ask() -> anthropic.types.Message:
        kwargs: Any = {"model": "sonnet", "max_tokens": 128, "messages": messages, "tools": [WEATHER_TOOL]}
        if not streaming:
            return claude.messages.create(**kwargs)
        with claude.messages.stream(**kwargs) as stream:
            return stream.get_final_message()

    first = ask()
    assert first.stop_reason == "tool_use"
    call = first.content[0]
    assert call.type == "tool_use" and call.name == "get_weather"
    # Streamed, the input arrives as input_json_delta fragments the SDK must reassemble.
    assert call.input == {"city": "Paris"}

    messages.append({"role": "assistant", "content": [block.model_dump() for block in first.content]})
    messages.append(
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": f"sunny {marker}"}]}
    )
    second = ask()
    assert second.stop_reason == "end_turn"
    assert second.content[0].type == "text" and second.content[0].text == f"tool said: sunny {marker}"

    first_rec, second_rec = fake_vertex.find(marker)
    for rec in (first_rec, second_rec):
        assert rec.path == upstream_path("claude-sonnet-4-6", "streamRawPredict" if streaming else "rawPredict")
        assert_vertex_request(rec, fake_metadata)
        assert rec.json["tools"] == [WEATHER_TOOL]
    # The tool_use block goes back to Vertex as Vertex issued it, id included.
    assert second_rec.json["messages"][1]["content"][0]["id"] == call.id
    assert second_rec.json["messages"][2]["content"][0]["tool_use_id"] == call.id


def test_betas_move_into_body_filtered_and_query_dropped(
    claude: anthropic.Anthropic, fake_vertex: FakeVertex, fake_metadata: FakeMetadata, marker: str
) -> None:
    # The beta client is what Claude Code uses: POST /v1/messages?beta=true with an anthropic-beta header.
    reply = claude.beta.messages.create(
        model="haiku",
        max_tokens=32,
        messages=[{"role": "user", "content": f"betas {marker}"}],
        betas=["interleaved-thinking-2025-05-14", UNKNOWN_BETA, "context-management-2025-06-27"],
    )
    assert reply.content[0].type == "text" and reply.content[0].text == f"echo: betas {marker}"
    rec = only(fake_vertex.find(marker))
    assert rec.path == upstream_path(HAIKU_VERTEX)
    assert_vertex_request(rec, fake_metadata)
    assert rec.json["anthropic_beta"] == ["interleaved-thinking-2025-05-14", "context-management-2025-06-27"]


def test_betas_from_header_and_body_merge(
    claude: anthropic.Anthropic, fake_vertex: FakeVertex, fake_metadata: FakeMetadata, marker: str
) -> None:
    claude.messages.create(
        model="haiku",
        max_tokens=32,
        messages=[{"role": "user", "content": f"merge {marker}"}],
        extra_headers={"anthropic-beta": f"{UNKNOWN_BETA} ,context-management-2025-06-27"},
        extra_body={"anthropic_beta": ["interleaved-thinking-2025-05-14", "context-management-2025-06-27", "nope"]},
    )
    rec = only(fake_vertex.find(marker))
    assert_vertex_request(rec, fake_metadata)
    assert sorted(rec.json["anthropic_beta"]) == sorted(BETAS_ALLOWED), "allowed once each, unknown ones dropped"


def test_no_betas_means_no_beta_field(claude: anthropic.Anthropic, fake_vertex: FakeVertex, marker: str) -> None:
    claude.messages.create(
        model="haiku",
        max_tokens=32,
        messages=[{"role": "user", "content": f"plain {marker}"}],
        extra_headers={"anthropic-beta": UNKNOWN_BETA},
    )
    assert "anthropic_beta" not in only(fake_vertex.find(marker)).json


def test_large_body_in_one_write_is_accepted(claude_gateway: Gateway, fake_vertex: FakeVertex, marker: str) -> None:
    # Claude Code sends 30-100 KiB bodies (system prompt, tools, history); over loopback or a
    # proxy the headers and the whole body often arrive in one read, which is not a big header.
    body = json.dumps(
        {"model": "haiku", "max_tokens": 8, "messages": [{"role": "user", "content": marker + " x" * 40_000}]}
    ).encode()
    head = (
        "POST /v1/messages HTTP/1.1\r\nHost: gateway\r\ncontent-type: application/json\r\n"
        f"x-api-key: {API_KEYS['full']}\r\ncontent-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode()
    assert len(body) > 64 * 1024
    with socket.create_connection(("127.0.0.1", claude_gateway.port), timeout=30) as sock:
        sock.sendall(head + body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status_line = answer.split(b"\r\n", 1)[0]
    assert status_line == b"HTTP/1.1 200 OK", answer[:300]
    assert len(fake_vertex.find(marker)) == 1


# -- errors, in Anthropic's shape ---------------------------------------------


def test_wrong_key_is_authentication_error(claude_gateway: Gateway) -> None:
    client = anthropic.Anthropic(api_key="gwk-not-issued", base_url=claude_gateway.url, max_retries=0)
    with client, pytest.raises(anthropic.AuthenticationError) as caught:
        client.messages.create(model="haiku", max_tokens=8, messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 401
    assert "Invalid API key" in anthropic_error(caught.value.body, "authentication_error")


@pytest.mark.parametrize("who", ["none", "disabled", "expired", "basic"])
def test_missing_revoked_expired_key_raw(who: str, claude_gateway: Gateway) -> None:
    headers = {"content-type": "application/json"}
    if who in ("disabled", "expired"):
        headers["x-api-key"] = API_KEYS[who]
    elif who == "basic":
        headers["authorization"] = f"Basic {API_KEYS['full']}"
    body = json.dumps({"model": "haiku", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]})
    status, _, answer = raw(claude_gateway, "POST", "/v1/messages", body.encode(), headers)
    assert status == 401
    message = anthropic_error(answer, "authentication_error")
    assert {"none": "Missing", "basic": "Missing", "disabled": "revoked", "expired": "expired"}[who] in message


def test_model_not_allowed_for_key_is_permission_error(
    claude_gateway: Gateway, fake_vertex: FakeVertex, marker: str
) -> None:
    trace, headers = trace_header()
    client = anthropic.Anthropic(api_key=API_KEYS["flash_only"], base_url=claude_gateway.url, max_retries=0)
    with client, pytest.raises(anthropic.PermissionDeniedError) as caught:
        client.messages.create(
            model="claude-haiku-4-5-20251001",
            max_tokens=8,
            messages=[{"role": "user", "content": marker}],
            extra_headers=headers,
        )
    assert caught.value.status_code == 403
    assert "'haiku'" in anthropic_error(caught.value.body, "permission_error")
    assert fake_vertex.find(marker) == []
    entry = log_line(claude_gateway, trace)
    assert entry["httpRequest"]["status"] == 403
    assert entry["key_id"] == KEY_IDS["flash_only"] and entry["alias"] == "haiku"


def test_flash_only_key_may_not_count_tokens_for_claude(claude_gateway: Gateway) -> None:
    client = anthropic.Anthropic(api_key=API_KEYS["flash_only"], base_url=claude_gateway.url, max_retries=0)
    with client, pytest.raises(anthropic.PermissionDeniedError):
        client.messages.count_tokens(model="haiku", messages=[{"role": "user", "content": "hi"}])


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/messages/count_tokens", "/v1/messages?beta=true"])
@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"max_tokens": 8, "messages": []}', "'model' is required"),
    ],
    ids=["bad-json", "array", "no-model"],
)
def test_bad_body_is_invalid_request_error(path: str, payload: bytes, needle: str, claude_gateway: Gateway) -> None:
    headers = {"content-type": "application/json", "x-api-key": API_KEYS["full"]}
    status, _, answer = raw(claude_gateway, "POST", path, payload, headers)
    assert status == 400
    assert needle in anthropic_error(answer, "invalid_request_error")


def test_unknown_model_is_bad_request(claude: anthropic.Anthropic, fake_vertex: FakeVertex, marker: str) -> None:
    # Not a claude-/gemini- id, so it cannot pass through either (an unlisted Claude id passes through by
    # default, and is refused when MODEL_PASSTHROUGH does not match it: tests/test_e2e_passthrough.py).
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude.messages.create(model="gpt-4o", max_tokens=8, messages=[{"role": "user", "content": marker}])
    message = anthropic_error(caught.value.body, "invalid_request_error")
    assert "gpt-4o" in message and "haiku" in message, "name the model and the valid ones"
    assert fake_vertex.find(marker) == []


def test_claude_alias_on_chat_completions_names_messages(
    claude_gateway: Gateway, fake_vertex: FakeVertex, marker: str
) -> None:
    client = openai.OpenAI(api_key=API_KEYS["full"], base_url=claude_gateway.base_url, max_retries=0)
    with client, pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="sonnet", messages=[{"role": "user", "content": marker}])
    assert caught.value.status_code == 400
    body = caught.value.body
    # OpenAI's shape here, not Anthropic's: the SDK reads error.message / code / param.
    assert isinstance(body, dict) and body["type"] == "invalid_request_error" and body["param"] == "model"
    assert "/v1/messages" in body["message"]
    assert fake_vertex.find(marker) == []


def test_upstream_429_keeps_status_and_retry_after(
    claude: anthropic.Anthropic, fake_vertex: FakeVertex, marker: str
) -> None:
    # Longer than the gateway's own retry budget, so it hands the 429 to the caller.
    fake_vertex.push({"status": 429, "retry_after": "120"}, path_contains=HAIKU_VERTEX)
    with pytest.raises(anthropic.RateLimitError) as caught:
        claude.messages.create(model="haiku", max_tokens=8, messages=[{"role": "user", "content": marker}])
    assert caught.value.status_code == 429
    assert caught.value.response.headers.get("retry-after") == "120"
    message = anthropic_error(caught.value.body, "rate_limit_error")
    assert "RESOURCE_EXHAUSTED" in message and "Scripted failure." in message
    assert only(fake_vertex.find(marker)).status == 429


def test_upstream_429_on_stream_before_any_event(
    claude: anthropic.Anthropic, fake_vertex: FakeVertex, marker: str
) -> None:
    fake_vertex.push({"status": 429, "retry_after": "120", "error_list": True}, path_contains="streamRawPredict")
    with (
        pytest.raises(anthropic.RateLimitError) as caught,
        claude.messages.stream(model="haiku", max_tokens=8, messages=[{"role": "user", "content": marker}]) as stream,
    ):
        stream.get_final_message()
    assert caught.value.response.headers.get("retry-after") == "120"
    anthropic_error(caught.value.body, "rate_limit_error")


def test_upstream_503_is_overloaded_error(claude: anthropic.Anthropic, fake_vertex: FakeVertex, marker: str) -> None:
    fake_vertex.push({"status": 503, "retry_after": "120"}, path_contains=HAIKU_VERTEX)
    with pytest.raises(anthropic.InternalServerError) as caught:
        claude.messages.create(model="haiku", max_tokens=8, messages=[{"role": "user", "content": marker}])
    assert caught.value.status_code == 503
    assert "UNAVAILABLE" in anthropic_error(caught.value.body, "overloaded_error")


def test_upstream_anthropic_error_passes_through(
    claude: anthropic.Anthropic, fake_vertex: FakeVertex, marker: str
) -> None:
    # Claude on Vertex reports request problems in Anthropic's own shape; keep them verbatim.
    upstream = {"type": "error", "error": {"type": "invalid_request_error", "message": f"prompt is too long {marker}"}}
    fake_vertex.push({"status": 400, "error_body": upstream}, path_contains=HAIKU_VERTEX)
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude.messages.create(model="haiku", max_tokens=8, messages=[{"role": "user", "content": marker}])
    assert caught.value.body == upstream


# -- the base URL and the log line --------------------------------------------


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_root_answers_200(method: str, claude_gateway: Gateway) -> None:
    # Claude Code probes its base URL; no key is needed for that.
    status, headers, body = raw(claude_gateway, method, "/")
    assert status == 200
    assert headers["content-type"].startswith("text/html")
    assert (body == b"") if method == "HEAD" else (b"<html" in body.lower())


def test_log_line_for_create(claude: anthropic.Anthropic, claude_gateway: Gateway, marker: str) -> None:
    trace, headers = trace_header()
    reply = claude.messages.create(
        model="claude-haiku-4-5-20251001",
        max_tokens=32,
        messages=[{"role": "user", "content": f"log me {marker}"}],
        extra_headers=headers,
    )
    entry = log_line(claude_gateway, trace)
    assert entry["httpRequest"]["requestUrl"] == "/v1/messages"
    assert entry["httpRequest"]["status"] == 200
    assert entry["key_id"] == KEY_IDS["full"]
    assert entry["alias"] == "haiku" and entry["vertex_model"] == ALIASES["haiku"]
    assert entry["stream"] is False
    assert entry["latency_ms"] > 0 and entry["ttfb_ms"] is not None and entry["ttfb_ms"] <= entry["latency_ms"]
    assert entry["usage"]["input_tokens"] == reply.usage.input_tokens
    assert entry["usage"]["output_tokens"] == reply.usage.output_tokens
    assert API_KEYS["full"] not in json.dumps(entry)


def test_log_line_for_stream_takes_usage_from_events(
    claude: anthropic.Anthropic, claude_gateway: Gateway, marker: str
) -> None:
    trace, headers = trace_header()
    with claude.messages.stream(
        model="sonnet",
        max_tokens=64,
        messages=[{"role": "user", "content": f"stream and log me please {marker}"}],
        extra_headers=headers,
    ) as stream:
        final = stream.get_final_message()
    entry = log_line(claude_gateway, trace)
    assert entry["httpRequest"]["status"] == 200
    assert entry["key_id"] == KEY_IDS["full"]
    assert entry["alias"] == "sonnet" and entry["vertex_model"] == ALIASES["sonnet"]
    assert entry["stream"] is True
    assert entry["ttfb_ms"] is not None and entry["latency_ms"] >= entry["ttfb_ms"]
    # input from message_start, output from message_delta (message_start's placeholder is 1).
    assert entry["usage"]["input_tokens"] == final.usage.input_tokens
    assert entry["usage"]["output_tokens"] == final.usage.output_tokens > 1


def test_log_line_for_count_tokens(claude: anthropic.Anthropic, claude_gateway: Gateway) -> None:
    trace, headers = trace_header()
    claude.messages.count_tokens(
        model="haiku", messages=[{"role": "user", "content": "how many"}], extra_headers=headers
    )
    entry = log_line(claude_gateway, trace)
    assert entry["httpRequest"]["requestUrl"] == "/v1/messages/count_tokens"
    assert entry["httpRequest"]["status"] == 200
    assert entry["key_id"] == KEY_IDS["full"] and entry["vertex_model"] == ALIASES["haiku"]


# -- the gateway's default configuration --------------------------------------


@pytest.mark.parametrize("name", ["haiku", "claude-haiku-4-5-20251001"])
def test_default_aliases_serve_claude(
    name: str, gateway: Gateway, fake_vertex: FakeVertex, fake_metadata: FakeMetadata, marker: str
) -> None:
    # The shared gateway runs with no MODEL_ALIASES: its defaults must include Claude.
    with anthropic.Anthropic(api_key=API_KEYS["full"], base_url=gateway.url, max_retries=0, timeout=60) as client:
        reply = client.messages.create(model=name, max_tokens=16, messages=[{"role": "user", "content": marker}])
    assert reply.content[0].type == "text" and reply.content[0].text == f"echo: {marker}"
    rec = only(fake_vertex.find(marker))
    assert rec.path == upstream_path(HAIKU_VERTEX)
    assert_vertex_request(rec, fake_metadata)
