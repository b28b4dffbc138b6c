"""The native Vertex AI passthrough at /vertex (issue 13): Google's and Anthropic's own Vertex SDKs, unchanged
but for the base URL and the key.

The unit tests read the URL grammar (app/vertex_paths.py) and the usage readers (app/usage.py). The e2e tests
run the gateway as its container does, in front of the fake Vertex, with the real google-genai (express mode
and project/location with credentials) and anthropic's AnthropicVertex, and check what reached the fake: the
gateway's project, location and token, the body as the SDK sent it (Claude: but for what Vertex requires),
no caller key. The refusals of hostile paths are in tests/test_hostile_vertex.py.
"""

from __future__ import annotations

import http.client
import json
import secrets
import threading
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from google.oauth2.credentials import Credentials

from app.errors import Shape
from app.route_hints import shape_for
from app.usage import UsageMetadataSniffer, UsageSniffer, gemini_usage, usage_of_json
from app.vertex_paths import NativeCall, parse_native
from tests.conftest import API_KEYS, KEY_DOCUMENT, KEY_IDS, LOCATION, PROJECT
from tests.fakes.vertex import FakeVertex, Recorded
from tests.fakes.vertex_gemini import compute_tokens
from tests.harness import Gateway, start_gateway

KEY = API_KEYS["full"]
ALIASES = {
    "flash": "google/gemini-2.5-flash",
    "pro-preview": "google/gemini-3.1-pro-preview",
    "haiku": "anthropic/claude-haiku-4-5@20251001",
    "sonnet": "anthropic/claude-sonnet-4-6",
    "embed": "google/gemini-embedding-001",
    "text-embed": "google/text-embedding-005",
}
# A key that may make one request a minute, and a body limit the tests can reach.
RPM_KEY = f"gwk-rpm-{secrets.token_urlsafe(16)}"
MAX_BODY_BYTES = 100_000
GOOGLE = f"/projects/{PROJECT}/locations/{LOCATION}/publishers/google/models/"
CLAUDE = f"/v1/projects/{PROJECT}/locations/{LOCATION}/publishers/anthropic/models/"
# The gateway's count-tokens location when VERTEX_LOCATION is global (CLAUDE_COUNT_TOKENS_LOCATION's default).
COUNT_TOKENS = f"/v1/projects/{PROJECT}/locations/us-east5/publishers/anthropic/models/count-tokens:rawPredict"


# -- the URL grammar --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "query", "want"),
    [
        (
            "/vertex/v1beta1/publishers/google/models/gemini-2.5-flash:generateContent",
            "",
            NativeCall("v1beta1", "google", "gemini-2.5-flash", "generateContent", False),
        ),
        (
            "/vertex/v1/projects/any/locations/us-central1/publishers/google/models/flash:streamGenerateContent",
            "alt=sse",
            NativeCall("v1", "google", "flash", "streamGenerateContent", True),
        ),
        (
            "/vertex/v1beta1/projects/None/locations/global/publishers/google/models/flash:streamGenerateContent",
            "",
            NativeCall("v1beta1", "google", "flash", "streamGenerateContent", False),
        ),
        (
            "/vertex/v1/projects/example.com:p-1/locations/global/publishers/anthropic/models/"
            "claude-haiku-4-5@20251001:streamRawPredict",
            "",
            NativeCall("v1", "anthropic", "claude-haiku-4-5@20251001", "streamRawPredict", False),
        ),
        (
            "/vertex/v1/projects/any/locations/global/publishers/anthropic/models/count-tokens:rawPredict",
            "",
            NativeCall("v1", "anthropic", None, "rawPredict", False),
        ),
        *[
            (
                f"/vertex/v1/publishers/google/models/m_1.2:{method}",
                "",
                NativeCall("v1", "google", "m_1.2", method, False),
            )
            for method in ("countTokens", "computeTokens", "embedContent", "predict")
        ],
    ],
)
def test_served_paths(path: str, query: str, want: NativeCall) -> None:
    assert parse_native(path.encode(), query.encode()) == want


FLASH_PATH = "/vertex/v1/publishers/google/models/flash"


@pytest.mark.parametrize(
    ("path", "query", "says"),
    [
        ("/vertex/v1/projects/p/locations/l/endpoints/123:predict", "", "only publisher models"),
        ("/vertex/v1/projects/p/locations/l/tuningJobs", "", "only publisher models"),
        ("/vertex/v1/projects/p/locations/l/operations/1", "", "only publisher models"),
        ("/vertex/v1beta1/projects/p/locations/l/cachedContents", "", "only publisher models"),
        ("/vertex/v1/projects/p/locations/l/datasets/7", "", "only publisher models"),
        ("/vertex/v1/models/gemini-2.5-flash:generateContent", "", "only publisher models"),
        ("/vertex/v1/publishers/meta/models/llama:rawPredict", "", "publisher 'meta'"),
        ("/vertex/v2/publishers/google/models/flash:generateContent", "", "/vertex/v1beta1/"),
        (FLASH_PATH + ":rawPredict", "", "not served for google models"),
        (FLASH_PATH + ":predictLongRunning", "", "not served for google models"),
        (FLASH_PATH + ":batchEmbedContents", "", "not served for google models"),
        ("/vertex/v1/publishers/anthropic/models/claude-x:generateContent", "", "not served for anthropic"),
        ("/vertex/v1/publishers/anthropic/models/count-tokens:streamRawPredict", "", "count-tokens:rawPredict"),
        (FLASH_PATH, "", "the method is missing"),
        (FLASH_PATH + "%3AgenerateContent", "", "percent-encoded"),
        ("/vertex/v1/publishers/google/models/fl%61sh:generateContent", "", "percent-encoded"),
        ("/vertex/v1/publishers/google/models/../models/flash:generateContent", "", "'..'"),
        ("/vertex/v1/./publishers/google/models/flash:generateContent", "", "'.'"),
        ("/vertex/v1//publishers/google/models/flash:generateContent", "", "empty path segments"),
        (FLASH_PATH + ":generateContent/", "", "trailing slash"),
        ("/vertex/v1/publishers/google/models/fla sh:generateContent", "", "model id"),
        ("/vertex/v1/publishers/google/models/" + "m" * 129 + ":generateContent", "", "model id"),
        ("/vertex/v1/publishers/google/models/-flash:generateContent", "", "model id"),
        (FLASH_PATH + ":generateContent", "alt=sse", "only one is alt=sse"),
        (FLASH_PATH + ":streamGenerateContent", "alt=json", "only one is alt=sse"),
        (FLASH_PATH + ":streamGenerateContent", "alt=sse&key=AIzaSECRET", "'alt', 'key'"),
        (FLASH_PATH + ":streamGenerateContent", "$alt=json;enum-encoding=int", "only one is alt=sse"),
    ],
)
def test_refused_paths_say_why_and_what_is_served(path: str, query: str, says: str) -> None:
    with pytest.raises(Exception) as refused:
        parse_native(path.encode(), query.encode())
    error: Any = refused.value
    assert error.status == 404 and error.code == "not_found"
    assert says in error.message, error.message
    assert "serves model calls only" in error.message and "AIzaSECRET" not in error.message


def test_vertex_errors_outside_the_endpoint_are_in_googles_shape() -> None:
    assert shape_for("/vertex") is Shape.GOOGLE and shape_for("/vertex/v1/x") is Shape.GOOGLE
    assert shape_for("/vertexy") is Shape.OPENAI


# -- usage from Gemini's native answers -------------------------------------------------------------------

METADATA = {
    "promptTokenCount": 12,
    "candidatesTokenCount": 30,
    "thoughtsTokenCount": 100,
    "totalTokenCount": 142,
    "trafficType": "ON_DEMAND",
    "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 12}],
}
WANT = {"input_tokens": 12, "output_tokens": 30, "thinking_tokens": 100, "total_tokens": 142}


def gemini_response(text: str, usage: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"candidates": [{"content": {"role": "model", "parts": [{"text": text}]}}]}
    if usage:
        response["usageMetadata"] = usage
    return response


def test_usage_of_a_whole_gemini_answer() -> None:
    assert gemini_usage(METADATA) == WANT
    assert usage_of_json(json.dumps(gemini_response("hi", METADATA)).encode()) == WANT
    assert gemini_usage({"promptTokenCount": True, "totalTokenCount": "3"}) is None


def test_usage_of_a_gemini_sse_stream_split_anywhere() -> None:
    early = {"promptTokenCount": 12, "totalTokenCount": 12}
    events = [gemini_response("a", early), gemini_response('b {"usageMetadata', early), gemini_response("c", METADATA)]
    stream = b"".join(b"data: " + json.dumps(e).encode() + b"\r\n\r\n" for e in events)
    for cut in range(0, len(stream), 7):
        sniffer = UsageMetadataSniffer()
        sniffer.feed(stream[:cut])
        sniffer.feed(stream[cut:])
        assert sniffer.usage == WANT, cut
    # The other routes' sniffer keeps its one-search fast path for "usage" and never reads Gemini's.
    other = UsageSniffer()
    other.feed(stream)
    assert other.usage is None


def test_usage_of_a_json_array_stream_split_anywhere() -> None:
    """Vertex's stream without alt=sse: one JSON array, in pieces cut anywhere; the newest counts win."""
    early = {"promptTokenCount": 12, "totalTokenCount": 12}
    events = [
        gemini_response('a "usageMetadata": {"x": 1}', early),
        gemini_response("b}{", early),
        gemini_response("c", METADATA),
    ]
    stream = ("[" + ",\r\n".join(json.dumps(e, indent=2) for e in events) + "]").encode()
    for cut in range(0, len(stream) + 1, 5):
        for second in (cut, min(len(stream), cut + 9)):
            sniffer = UsageMetadataSniffer()
            for piece in (stream[:cut], stream[cut:second], stream[second:]):
                sniffer.feed(piece)
            assert sniffer.usage == WANT, (cut, second)
    sniffer = UsageMetadataSniffer()
    for i in range(len(stream)):
        sniffer.feed(stream[i : i + 1])
    assert sniffer.usage == WANT
    unfinished = UsageMetadataSniffer()
    unfinished.feed(stream[: stream.rindex(b"142")])
    assert unfinished.usage == {"input_tokens": 12, "total_tokens": 12}


def test_the_fakes_compute_tokens_answers_as_vertex() -> None:
    answer = compute_tokens({"contents": [{"role": "user", "parts": [{"text": "two words"}]}]})
    (info,) = answer["tokensInfo"]
    assert info["role"] == "user" and info["tokens"] == ["dHdv", "d29yZHM="]
    assert all(isinstance(i, str) and i.isdigit() for i in info["tokenIds"])  # int64: strings in proto3 JSON


# -- end to end -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def native_gateway(gateway_env: dict[str, str | None]) -> Iterator[Gateway]:
    keys = [*KEY_DOCUMENT, {"id": "team-rpm", "key": RPM_KEY, "rpm": 1}]
    env = {
        "MODEL_ALIASES": json.dumps(ALIASES),
        "API_KEYS_JSON": json.dumps(keys),
        "MAX_BODY_BYTES": str(MAX_BODY_BYTES),
    }
    gw = start_gateway({**gateway_env, **env})
    yield gw
    assert gw.stop() == 0, f"gateway log: {gw.log_path}"


def express(gw: Gateway, key: str = KEY, **options: Any) -> genai.Client:
    """google-genai in Vertex express mode, as the issue writes it."""
    return genai.Client(
        vertexai=True, api_key=key, http_options=types.HttpOptions(base_url=gw.url + "/vertex", **options)
    )


def only(records: list[Recorded]) -> Recorded:
    assert len(records) == 1, [r.path for r in records]
    return records[0]


def assert_reached_as_the_gateway(rec: Recorded, fake: FakeVertex, key: str = KEY) -> None:
    """Vertex saw the gateway's own token and none of the caller's credentials."""
    auth = rec.header("Authorization") or ""
    assert auth.startswith("Bearer ") and auth[7:] in fake.valid_tokens
    assert rec.header("x-goog-api-key") is None and rec.header("x-api-key") is None
    assert key not in json.dumps(rec.headers) and key.encode() not in rec.body


def request_line(gw: Gateway, path: str) -> dict[str, Any]:
    """The newest request line whose path starts with `path` (waiting a bounded time for one)."""
    gw.wait_for_log(lambda e: e.get("httpRequest", {}).get("requestUrl", "").startswith(path))
    return [e for e in gw.request_logs() if e["httpRequest"]["requestUrl"].startswith(path)][-1]


@pytest.mark.e2e
def test_google_genai_express_generate_content(native_gateway: Gateway, fake_vertex: FakeVertex, marker: str) -> None:
    with express(native_gateway) as client:
        answer = client.models.generate_content(model="flash", contents=f"hi {marker}")
    assert answer.text == f"echo: hi {marker}"
    assert answer.usage_metadata is not None and answer.usage_metadata.prompt_token_count
    rec = only(fake_vertex.find(marker))
    # google-genai's default API version, the gateway's project and location, the alias's Vertex model.
    assert rec.path == f"/v1beta1{GOOGLE}gemini-2.5-flash:generateContent" and rec.query == ""
    assert rec.json == {"contents": [{"parts": [{"text": f"hi {marker}"}], "role": "user"}]}
    assert_reached_as_the_gateway(rec, fake_vertex)
    line = native_gateway.wait_for_log(lambda e: e.get("alias") == "flash" and e.get("stream") is False)
    assert line["key_id"] == KEY_IDS["full"] and line["vertex_model"] == "google/gemini-2.5-flash"
    assert line["usage"]["input_tokens"] == answer.usage_metadata.prompt_token_count
    assert line["usage"]["total_tokens"] == answer.usage_metadata.total_token_count


@pytest.mark.e2e
def test_google_genai_stream_arrives_chunk_by_chunk(
    native_gateway: Gateway, fake_vertex: FakeVertex, marker: str
) -> None:
    gate = f"gate-{marker}"
    fake_vertex.push({"chunks": 4, "gate": gate, "gate_timeout": 20}, path_contains=":streamGenerateContent")
    received: list[str] = []
    with express(native_gateway) as client:
        stream = client.models.generate_content_stream(model="gemini-2.5-flash", contents=marker)
        first = next(iter(stream))
        # The fake holds every later chunk until the gate opens: the first one came through alone.
        rec = only(fake_vertex.find(marker))
        assert rec.events_sent <= 1 and not fake_vertex.gate(gate).is_set()
        received.append(first.text or "")
        fake_vertex.open_gate(gate)
        received += [chunk.text or "" for chunk in stream]
    assert len(received) == 4 and "".join(received) == f"echo: {marker} #1 #2 #3"
    assert rec.path == f"/v1beta1{GOOGLE}gemini-2.5-flash:streamGenerateContent" and rec.query == "alt=sse"
    line = request_line(native_gateway, "/vertex/v1beta1/publishers/google/models/gemini-2.5-flash:streamGen")
    assert line["alias"] == "flash" and line["stream"] is True
    assert line["usage"]["output_tokens"] > 0 and line["httpRequest"]["status"] == 200


@pytest.mark.e2e
def test_google_genai_count_and_compute_tokens(native_gateway: Gateway, fake_vertex: FakeVertex, marker: str) -> None:
    with express(native_gateway) as client:
        counted = client.models.count_tokens(model="flash", contents=f"three little {marker}")
        computed = client.models.compute_tokens(model="flash", contents=f"two {marker}")
    assert counted.total_tokens and counted.total_tokens > 0
    assert computed.tokens_info is not None
    (info,) = computed.tokens_info
    assert info.role == "user" and info.tokens == [b"two", marker.encode()] and len(info.token_ids or []) == 2
    count, compute = sorted(fake_vertex.find(marker), key=lambda r: r.received_at)
    assert count.path == f"/v1beta1{GOOGLE}gemini-2.5-flash:countTokens" and count.route == "gemini_count_tokens"
    assert compute.path == f"/v1beta1{GOOGLE}gemini-2.5-flash:computeTokens"
    assert compute.route == "gemini_compute_tokens" and compute.status == 200
    for rec in (count, compute):
        assert_reached_as_the_gateway(rec, fake_vertex)


@pytest.mark.e2e
@pytest.mark.parametrize("api_version", ["v1", "v1beta1"])
def test_google_genai_with_project_location_and_credentials(
    native_gateway: Gateway, fake_vertex: FakeVertex, marker: str, api_version: str
) -> None:
    """The non-express form: the client's own project and location, the key as an OAuth bearer token."""
    client = genai.Client(
        vertexai=True,
        project="client-project",
        location="europe-west4",
        credentials=Credentials(token=KEY),
        http_options=types.HttpOptions(base_url=native_gateway.url + "/vertex", api_version=api_version),
    )
    with client:
        answer = client.models.generate_content(model="pro-preview", contents=marker)
        streamed = list(client.models.generate_content_stream(model="pro-preview", contents=marker))
    assert marker in (answer.text or "") and marker in "".join(c.text or "" for c in streamed)
    whole, stream = sorted(fake_vertex.find(marker), key=lambda r: r.received_at)
    assert whole.path == f"/{api_version}{GOOGLE}gemini-3.1-pro-preview:generateContent"
    assert stream.path == f"/{api_version}{GOOGLE}gemini-3.1-pro-preview:streamGenerateContent"
    for rec in (whole, stream):
        assert "client-project" not in rec.raw_path and "europe-west4" not in rec.raw_path
        assert_reached_as_the_gateway(rec, fake_vertex)


def raw_post(gw: Gateway, path: str, body: bytes, key: str = KEY) -> tuple[int, bytes]:
    """One POST with exactly these bytes: (status, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=30)
    try:
        conn.request("POST", path, body, {"x-goog-api-key": key, "Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@pytest.mark.e2e
def test_bodies_pass_byte_for_byte_and_the_json_array_stream_is_not_buffered(
    native_gateway: Gateway, fake_vertex: FakeVertex, marker: str
) -> None:
    """streamGenerateContent without alt=sse: Vertex's one JSON array, passed on piece by piece as it comes."""
    # Odd spacing, key order and escapes: whatever the client wrote is what Vertex reads.
    body = (
        '{ "generationConfig":{"temperature":0.5},\n  "contents":[{"role":"user","parts":[{"text":"\\u0068i '
        + marker
        + '"}]}] }'
    ).encode()
    # 1 s between elements: an array held back until it ended would keep the first one >= 2 s, and a loaded
    # machine's hiccups stay well under the 0.9 s allowed below.
    controls = {"chunks": 3, "delay": 1.0, "stamp": True, "thoughts": True}
    fake_vertex.push(controls, path_contains=":streamGenerateContent")
    conn = http.client.HTTPConnection("127.0.0.1", native_gateway.port, timeout=30)
    conn.request("POST", "/vertex/v1/publishers/google/models/flash:streamGenerateContent", body, {"x-api-key": KEY})
    response = conn.getresponse()
    assert response.status == 200
    assert response.getheader("Content-Type", "").startswith("application/json")
    arrivals: list[tuple[float, bytes]] = []
    while piece := response.read1(65536):
        arrivals.append((time.time(), piece))
    conn.close()
    rec = only(fake_vertex.find(marker))
    assert rec.body == body and rec.path == f"/v1{GOOGLE}gemini-2.5-flash:streamGenerateContent" and not rec.query
    responses = json.loads(b"".join(p for _, p in arrivals))
    assert isinstance(responses, list) and len(responses) == 4  # a thought, then three text chunks
    # Each element was relayed as the fake sent it, not when the array ended.
    for seq in range(1, 3):  # the last element ends the array: holding the array back would not delay it
        sent_at = next(r["fake_sent_at"] for r in responses if r.get("fake_seq") == seq)
        got_at = next(at for at, seen in _prefixes(arrivals) if f'"fake_seq": {seq},'.encode() in seen)
        assert got_at - sent_at < 0.9, f"element {seq} held back {got_at - sent_at:.2f}s"
    assert b"".join(p for _, p in arrivals).endswith(b"]")
    line = native_gateway.wait_for_log(
        lambda e: e.get("alias") == "flash" and e.get("stream") and e.get("usage", {}).get("thinking_tokens")
    )
    usage = responses[-1]["usageMetadata"]
    assert line["usage"] == {
        "input_tokens": usage["promptTokenCount"],
        "output_tokens": usage["candidatesTokenCount"],
        "thinking_tokens": usage["thoughtsTokenCount"],
        "total_tokens": usage["totalTokenCount"],
    }


def _prefixes(arrivals: list[tuple[float, bytes]]) -> Iterator[tuple[float, bytes]]:
    """(arrival time, everything received so far) after each piece."""
    seen = b""
    for at, piece in arrivals:
        seen += piece
        yield at, seen


@pytest.mark.e2e
def test_googles_error_envelope_passes_as_google_shaped_it(
    native_gateway: Gateway, fake_vertex: FakeVertex, marker: str
) -> None:
    envelope = {"error": {"code": 400, "message": f"Bad thing {marker}", "status": "INVALID_ARGUMENT", "details": []}}
    body = json.dumps({"contents": [{"role": "user", "parts": [{"text": marker}]}]})
    fake_vertex.push({"status": 400, "error_body": envelope}, path_contains=":generateContent")
    status, answer = raw_post(
        native_gateway, "/vertex/v1beta1/publishers/google/models/flash:generateContent", body.encode()
    )
    assert status == 400 and json.loads(answer) == envelope
    with express(native_gateway) as client, pytest.raises(genai_errors.ClientError) as raised:
        client.models.generate_content(model="gemini-2.5-pro-nope", contents=marker)
    assert raised.value.code == 404 and raised.value.status == "NOT_FOUND"
    assert "Model Garden" in (raised.value.message or "")  # a passed-through model Vertex does not serve


@pytest.mark.e2e
def test_anthropic_vertex_create_stream_and_count_tokens(
    native_gateway: Gateway, fake_vertex: FakeVertex, marker: str
) -> None:
    with anthropic.AnthropicVertex(
        region="global",
        project_id="any",
        base_url=native_gateway.url + "/vertex/v1",
        access_token=KEY,
        max_retries=0,
    ) as claude:
        message = claude.messages.create(
            model="claude-haiku-4-5@20251001", max_tokens=64, messages=[{"role": "user", "content": f"hi {marker}"}]
        )
        with claude.messages.stream(
            model="haiku", max_tokens=64, messages=[{"role": "user", "content": f"again {marker}"}]
        ) as stream:
            streamed = "".join(stream.text_stream)
        counted = claude.messages.count_tokens(
            model="sonnet", messages=[{"role": "user", "content": f"count {marker}"}]
        )
    assert message.content[0].type == "text" and message.content[0].text == f"echo: hi {marker}"
    assert streamed == f"echo: again {marker}" and counted.input_tokens > 0
    create, stream_rec, count = sorted(fake_vertex.find(marker), key=lambda r: r.received_at)
    assert create.path == f"{CLAUDE}claude-haiku-4-5@20251001:rawPredict"
    assert stream_rec.path == f"{CLAUDE}claude-haiku-4-5@20251001:streamRawPredict"
    assert count.path == COUNT_TOKENS and count.route == "count_tokens"
    for rec in (create, stream_rec, count):
        assert_reached_as_the_gateway(rec, fake_vertex)
        assert rec.json["anthropic_version"] == "vertex-2023-10-16" and rec.status == 200
    assert "model" not in create.json and create.json["messages"] == [{"role": "user", "content": f"hi {marker}"}]
    assert stream_rec.json["stream"] is True and stream_rec.json["max_tokens"] == 64
    assert count.json["model"] == "claude-sonnet-4-6"  # the alias, as Vertex names the model
    prefix = "/vertex/v1/projects/any/locations/global/publishers/anthropic/models/"
    count_line = request_line(native_gateway, prefix + "count-tokens:rawPredict")
    assert count_line["alias"] == "sonnet" and count_line["vertex_model"] == "anthropic/claude-sonnet-4-6"
    stream_line = request_line(native_gateway, prefix + "haiku:streamRawPredict")
    assert stream_line["alias"] == "haiku" and stream_line["stream"] is True
    assert stream_line["usage"]["input_tokens"] > 0 and stream_line["usage"]["output_tokens"] > 0


@pytest.mark.e2e
def test_a_claude_body_that_needs_nothing_goes_byte_for_byte(
    native_gateway: Gateway, fake_vertex: FakeVertex, marker: str
) -> None:
    body = (
        '{"anthropic_version":"vertex-2023-10-16", "max_tokens": 16,'
        ' "messages":[{"role":"user","content":"' + marker + '"}]}'
    ).encode()
    status, answer = raw_post(native_gateway, "/vertex/v1/publishers/anthropic/models/haiku:rawPredict", body)
    assert status == 200 and json.loads(answer)["content"][0]["text"] == f"echo: {marker}"
    assert only(fake_vertex.find(marker)).body == body


@pytest.mark.e2e
def test_a_key_restricted_to_flash_reaches_nothing_else(
    native_gateway: Gateway, fake_vertex: FakeVertex, marker: str
) -> None:
    key = API_KEYS["flash_only"]
    with express(native_gateway, key=key) as client:
        assert marker in (client.models.generate_content(model="flash", contents=marker).text or "")
        for model in ("pro-preview", "gemini-3.1-pro-preview", "gemini-2.5-pro"):
            with pytest.raises(genai_errors.ClientError) as raised:
                client.models.generate_content(model=model, contents=f"{model} {marker}")
            assert raised.value.code == 403 and raised.value.status == "PERMISSION_DENIED", model
            assert "may not use model" in (raised.value.message or "")
    with anthropic.AnthropicVertex(
        region="global", project_id="any", base_url=native_gateway.url + "/vertex/v1", access_token=key, max_retries=0
    ) as claude:
        with pytest.raises(anthropic.PermissionDeniedError) as denied:
            claude.messages.create(model="haiku", max_tokens=8, messages=[{"role": "user", "content": marker}])
        assert denied.value.body["error"]["status"] == "PERMISSION_DENIED"  # type: ignore[index]
        with pytest.raises(anthropic.PermissionDeniedError):
            claude.messages.count_tokens(model="sonnet", messages=[{"role": "user", "content": marker}])
    assert len(fake_vertex.find(marker)) == 1, "only the flash call reached Vertex"


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        # A Cloud Storage file for a key without allow_resources.
        (
            "/vertex/v1/publishers/google/models/flash:generateContent",
            {"contents": [{"role": "user", "parts": [{"fileData": {"fileUri": "gs://b/o.pdf", "mimeType": "a/b"}}]}]},
            400,
            "resource_not_allowed",
        ),
        (
            "/vertex/v1/publishers/google/models/flash:generateContent",
            {"cachedContent": "x", "contents": []},
            400,
            "resource_not_allowed",
        ),
        # A second model named in the body.
        (
            "/vertex/v1/publishers/google/models/flash:computeTokens",
            {"model": "publishers/google/models/gemini-2.5-pro", "contents": []},
            400,
            "invalid_request",
        ),
        # A model of the other publisher.
        ("/vertex/v1/publishers/anthropic/models/flash:rawPredict", {"messages": []}, 400, "wrong_endpoint"),
        ("/vertex/v1/publishers/anthropic/models/count-tokens:rawPredict", {"model": "flash"}, 400, "wrong_endpoint"),
        ("/vertex/v1/publishers/google/models/no-such-model:generateContent", {}, 400, "model_not_found"),
        ("/vertex/v1/publishers/google/models/flash:generateContent", [], 400, "invalid_body"),
    ],
)
def test_refusals_before_vertex_are_in_googles_shape(
    native_gateway: Gateway, fake_vertex: FakeVertex, marker: str, path: str, body: Any, status: int, code: str
) -> None:
    payload = json.dumps({**body, "m": marker} if isinstance(body, dict) else body).encode()
    before = len(fake_vertex.requests)
    answered, answer = raw_post(native_gateway, path, payload)
    error = json.loads(answer)["error"]
    assert answered == status and error["code"] == status and error["status"] == "INVALID_ARGUMENT"
    assert error["details"][0]["reason"] == code, error
    assert len(fake_vertex.requests) == before


@pytest.mark.e2e
def test_unauthenticated_and_wrong_verbs_are_googles_shape(native_gateway: Gateway) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", native_gateway.port, timeout=10)
    conn.request("POST", "/vertex/v1/publishers/google/models/flash:generateContent", b"{}")
    missing = conn.getresponse()
    assert missing.status == 401 and json.loads(missing.read())["error"]["status"] == "UNAUTHENTICATED"
    conn.request("GET", "/vertex/v1/publishers/google/models/flash:generateContent", headers={"x-goog-api-key": KEY})
    wrong = conn.getresponse()
    assert wrong.status == 405 and wrong.getheader("Allow") == "POST"
    assert json.loads(wrong.read())["error"]["status"] == "UNIMPLEMENTED"
    conn.request("POST", "/vertex", b"{}", headers={"x-goog-api-key": KEY})
    bare = conn.getresponse()
    error = json.loads(bare.read())["error"]
    assert bare.status == 404 and error["status"] == "NOT_FOUND" and "/vertex/v1beta1/" in error["message"]
    conn.close()


@pytest.mark.e2e
def test_concurrent_streams_each_get_their_own_answer(native_gateway: Gateway, fake_vertex: FakeVertex) -> None:
    """A few clients at once on one worker: no answer crosses over."""
    markers = [f"m{secrets.token_hex(4)}" for _ in range(6)]
    results: dict[str, str] = {}

    def ask(m: str) -> None:
        with express(native_gateway) as client:
            results[m] = "".join(c.text or "" for c in client.models.generate_content_stream(model="flash", contents=m))

    threads = [threading.Thread(target=ask, args=(m,)) for m in markers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == {m: f"echo: {m}" for m in markers}


@pytest.mark.e2e
def test_google_genai_embed_content_on_either_method(native_gateway: Gateway, fake_vertex: FakeVertex) -> None:
    """google-genai picks :embedContent for Gemini embedding ids and :predict for others (its own rule)."""
    text = f"embed {secrets.token_hex(4)}"
    with express(native_gateway) as client:
        gemini = client.models.embed_content(model="gemini-embedding-001", contents=text)
        aliased = client.models.embed_content(model="embed", contents=text)
        older = client.models.embed_content(
            model="text-embed", contents=text, config=types.EmbedContentConfig(output_dimensionality=8)
        )
    assert gemini.embeddings and len(gemini.embeddings[0].values or []) == 3072
    assert aliased.embeddings and aliased.embeddings[0].values == gemini.embeddings[0].values
    assert older.embeddings and len(older.embeddings[0].values or []) == 8
    calls = sorted(fake_vertex.find(text), key=lambda r: r.received_at)
    assert [r.path for r in calls] == [
        f"/v1beta1{GOOGLE}gemini-embedding-001:embedContent",
        f"/v1beta1{GOOGLE}gemini-embedding-001:predict",
        f"/v1beta1{GOOGLE}text-embedding-005:predict",
    ]
    assert all(r.route == "embed" and r.status == 200 for r in calls)
    line = request_line(native_gateway, "/vertex/v1beta1/publishers/google/models/gemini-embedding-001:embedContent")
    assert line["usage"]["input_tokens"] == 2 and line["alias"] == "embed"  # the configured model's alias


@pytest.mark.e2e
def test_key_limits_and_the_body_limit_hold_on_vertex(native_gateway: Gateway, fake_vertex: FakeVertex) -> None:
    with express(native_gateway, key=RPM_KEY) as client:
        client.models.count_tokens(model="flash", contents="one")
        with pytest.raises(genai_errors.ClientError) as limited:
            client.models.count_tokens(model="flash", contents="two")
    assert limited.value.code == 429 and limited.value.status == "RESOURCE_EXHAUSTED"
    assert limited.value.details["error"]["details"][0]["reason"] == "rate_limit_exceeded"
    before = len(fake_vertex.requests)
    huge = json.dumps({"contents": [{"role": "user", "parts": [{"text": "x" * MAX_BODY_BYTES}]}]}).encode()
    status, answer = raw_post(native_gateway, "/vertex/v1/publishers/google/models/flash:generateContent", huge)
    error = json.loads(answer)["error"]
    assert (
        status == 413 and error["details"][0]["reason"] == "request_too_large" and "MAX_BODY_BYTES" in error["message"]
    )
    assert len(fake_vertex.requests) == before
