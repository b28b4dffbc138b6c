"""/v1/embeddings in process: the request and answer translation, splitting into Vertex's batch limits, the fake
embedding models, and the route against them (the gateway in a TestClient, the fake Vertex in a thread).
tests/test_e2e_embeddings.py drives the same route with the real OpenAI SDK through gunicorn."""

from __future__ import annotations

import array
import base64
import math
import struct
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from app.aliases import Model, ModelTable
from app.apis import client_api_of, client_apis_of
from app.config import DEFAULT_ALIASES, DEFAULT_PASSTHROUGH, load_settings
from app.embeddings_api import (
    EMBED_CONTENT,
    MAX_INPUTS,
    PARALLEL_CALLS,
    PREDICT,
    EmbeddingsRequest,
    batches,
    encode,
    method_of,
    parse_request,
    read_vectors,
    token_bound,
    upstream_body,
)
from app.errors import GatewayError
from app.main import create_app
from tests.fakes.vertex import FakeVertex
from tests.fakes.vertex_embed import EMBED_PATH, answer, vector

TOKEN = "fake-token-embeddings"
FULL_KEY = "sk_test_embeddings_full"
FLASH_KEY = "sk_test_embeddings_flash"
KEYS = orjson.dumps(
    [{"id": "full", "key": FULL_KEY}, {"id": "flash-only", "key": FLASH_KEY, "models": ["flash"]}]
).decode()
EMBED_CONTENT_PATH = "/v1/projects/test-project/locations/global/publishers/google/models/gemini-embedding-001"


def f32(values: list[float]) -> list[float]:
    return list(struct.unpack(f"<{len(values)}f", struct.pack(f"<{len(values)}f", *values)))


def unit(values: list[float]) -> list[float]:
    norm = math.hypot(*values)
    return [x / norm for x in values]


# -- the request ------------------------------------------------------------------------------------------------


def ask(**fields: Any) -> EmbeddingsRequest:
    return parse_request({"model": "embed", **fields})


def test_request_fields_are_read() -> None:
    assert ask(input="one") == EmbeddingsRequest(["one"], None, False, None)
    assert ask(input=["a", "b"], dimensions=256, encoding_format="base64", user="u-1", task_type="RETRIEVAL_QUERY") == (
        EmbeddingsRequest(["a", "b"], 256, True, "RETRIEVAL_QUERY")
    )
    assert ask(input=["a"], encoding_format="float", dimensions=None, encoding=None).base64 is False


@pytest.mark.parametrize(
    ("fields", "param", "says"),
    [
        ({}, "input", "'input' is required"),
        ({"input": None}, "input", "'input' is required"),
        ({"input": []}, "input", "empty list"),
        ({"input": 7}, "input", "must be a string or a list of strings"),
        ({"input": {"text": "a"}}, "input", "must be a string or a list of strings"),
        ({"input": ""}, "input[0]", "empty string"),
        ({"input": ["a", ""]}, "input[1]", "empty string"),
        ({"input": ["a", None]}, "input[1]", "must be a string"),
        ({"input": ["a", 5]}, "input[1]", "must be a string"),
        ({"input": [15339, 1917]}, "input", "token ids"),
        ({"input": [[15339, 1917], [3, 4]]}, "input[0]", "check_embedding_ctx_length=False"),
        ({"input": ["x"] * (MAX_INPUTS + 1)}, "input", f"{MAX_INPUTS + 1} texts; one request takes at most 2048"),
        ({"input": "a", "dimensions": 0}, "dimensions", "at least 1"),
        ({"input": "a", "dimensions": 25.5}, "dimensions", "whole number"),
        ({"input": "a", "dimensions": True}, "dimensions", "whole number"),
        ({"input": "a", "dimensions": "256"}, "dimensions", "whole number"),
        ({"input": "a", "encoding_format": "int8"}, "encoding_format", "'float' or 'base64'"),
        ({"input": "a", "task_type": "retrieval query/../x"}, "task_type", "RETRIEVAL_QUERY"),
        ({"input": "a", "task_type": 3}, "task_type", "task types"),
    ],
)
def test_request_refusals_name_the_field_and_the_fix(fields: dict[str, Any], param: str, says: str) -> None:
    with pytest.raises(GatewayError) as refused:
        parse_request({"model": "embed", **fields})
    error = refused.value
    assert (error.status, error.code, error.param) == (400, "invalid_request", param)
    assert says in error.message


def test_at_most_openais_own_number_of_inputs_pass() -> None:
    assert len(ask(input=["x"] * MAX_INPUTS).texts) == MAX_INPUTS == 2048


# -- what Vertex is sent ----------------------------------------------------------------------------------------


def test_gemini_embedding_models_use_embed_content_and_the_others_predict() -> None:
    assert method_of(Model("embed", "google/gemini-embedding-001")) is EMBED_CONTENT
    assert method_of(Model("gemini-embedding-2", "google/gemini-embedding-2", passthrough=True)) is EMBED_CONTENT
    assert method_of(Model("te", "google/text-embedding-005")) is PREDICT
    assert method_of(Model("tm", "google/text-multilingual-embedding-002")) is PREDICT
    assert (EMBED_CONTENT.verb, EMBED_CONTENT.max_texts) == ("embedContent", 1)
    assert (PREDICT.verb, PREDICT.max_texts, PREDICT.max_tokens) == ("predict", 250, 20_000)


@pytest.mark.parametrize(
    ("fields", "body"),
    [
        ({"input": "hi"}, {"content": {"parts": [{"text": "hi"}]}}),
        (
            {"input": "hi", "dimensions": 768, "task_type": "RETRIEVAL_DOCUMENT"},
            {
                "content": {"parts": [{"text": "hi"}]},
                "embedContentConfig": {"outputDimensionality": 768, "taskType": "RETRIEVAL_DOCUMENT"},
            },
        ),
    ],
)
def test_embed_content_bodies(fields: dict[str, Any], body: dict[str, Any]) -> None:
    request = ask(**fields)
    assert orjson.loads(upstream_body(EMBED_CONTENT, request.texts, request)) == body


def test_predict_bodies() -> None:
    request = ask(input=["a", "b"])
    assert orjson.loads(upstream_body(PREDICT, request.texts, request)) == {
        "instances": [{"content": "a"}, {"content": "b"}]
    }
    request = ask(input=["a", "b"], dimensions=64, task_type="CLUSTERING")
    assert orjson.loads(upstream_body(PREDICT, request.texts, request)) == {
        "instances": [{"content": "a", "task_type": "CLUSTERING"}, {"content": "b", "task_type": "CLUSTERING"}],
        "parameters": {"outputDimensionality": 64},
    }


def test_embed_content_takes_one_text_per_call() -> None:
    assert batches(["a", "b", "c"], EMBED_CONTENT) == [range(0, 1), range(1, 2), range(2, 3)]
    assert batches(["a"], EMBED_CONTENT) == [range(0, 1)]


def test_predict_takes_250_texts_per_call() -> None:
    assert batches(["word"] * 600, PREDICT) == [range(0, 250), range(250, 500), range(500, 600)]
    assert batches(["word"] * 250, PREDICT) == [range(0, 250)]


def test_predict_calls_stay_under_20000_tokens_however_the_text_tokenizes() -> None:
    # Never fewer tokens than Vertex counts: one or more UTF-8 bytes per token, plus the markers.
    assert token_bound("hello") == 7 and token_bound("日本") == 8
    texts = ["x" * 9_000] * 5  # 9,002 each: two fit in 20,000
    assert batches(texts, PREDICT) == [range(0, 2), range(2, 4), range(4, 5)]
    # A text over the limit goes alone (Vertex truncates it, or says it is too long), and takes no one with it.
    assert batches(["short", "y" * 30_000, "short"], PREDICT) == [range(0, 1), range(1, 2), range(2, 3)]
    for run in batches(["z" * 700, "é" * 900, "w"] * 100, PREDICT):
        assert len(run) <= 250


# -- the answer -------------------------------------------------------------------------------------------------

VALUES = [0.0123457, -0.5, 0.25, 1e-07, -0.0078125, 0.3333333]


def test_float_values_pass_as_vertex_wrote_them() -> None:
    assert orjson.loads(encode(VALUES, unit=False, as_base64=False)) == VALUES
    assert encode([0.0123457, -0.5], unit=False, as_base64=False) == b"[0.0123457,-0.5]"


def test_base64_is_the_little_endian_float32_bytes_the_openai_sdk_decodes() -> None:
    encoded = encode(VALUES, unit=False, as_base64=True)
    text = orjson.loads(encoded)
    assert isinstance(text, str)
    assert base64.b64decode(text) == struct.pack(f"<{len(VALUES)}f", *VALUES)
    # What openai-python does without numpy (lib/_parsing/_embeddings.py), on this little-endian machine.
    assert array.array("f", base64.b64decode(text)).tolist() == f32(VALUES)


def test_dimensions_scale_the_cut_vector_back_to_unit_length() -> None:
    cut = [0.3, -0.4, 0.0]  # length 0.5, as a truncated unit vector would be
    assert orjson.loads(encode(cut, unit=True, as_base64=False)) == pytest.approx([0.6, -0.8, 0.0])
    decoded = array.array("f", base64.b64decode(orjson.loads(encode(cut, unit=True, as_base64=True)))).tolist()
    assert decoded == pytest.approx([0.6, -0.8, 0.0], abs=1e-7)
    assert orjson.loads(encode([0.0, 0.0], unit=True, as_base64=False)) == [0.0, 0.0]


@pytest.mark.parametrize("values", [["a", 0.1], [1e39], [None]])
def test_values_that_are_not_float32_numbers_are_vertex_s_fault(values: list[Any]) -> None:
    with pytest.raises(GatewayError) as refused:
        encode(values, unit=False, as_base64=True)
    assert (refused.value.status, refused.value.code) == (502, "upstream_invalid")


def test_vectors_and_tokens_are_read_from_both_answers() -> None:
    content = {"embedding": {"values": [0.1, 0.2]}, "usageMetadata": {"promptTokenCount": 4, "totalTokenCount": 4}}
    assert read_vectors(EMBED_CONTENT, orjson.dumps(content), 1) == ([[0.1, 0.2]], 4)
    assert read_vectors(EMBED_CONTENT, orjson.dumps({"embedding": {"values": [1]}}), 1) == ([[1]], 0)
    predicted = {
        "predictions": [
            {"embeddings": {"values": [0.1], "statistics": {"token_count": 3, "truncated": False}}},
            {"embeddings": {"values": [0.2], "statistics": {"token_count": 5.0, "truncated": False}}},
        ],
        "metadata": {"billableCharacterCount": 20},
    }
    assert read_vectors(PREDICT, orjson.dumps(predicted), 2) == ([[0.1], [0.2]], 8)


@pytest.mark.parametrize(
    ("method", "body", "count"),
    [
        (EMBED_CONTENT, b"not json", 1),
        (EMBED_CONTENT, b"[]", 1),
        (EMBED_CONTENT, b'{"embedding": {}}', 1),
        (EMBED_CONTENT, b'{"embedding": {"values": []}}', 1),
        (PREDICT, b'{"predictions": {}}', 1),
        (PREDICT, b'{"predictions": [{"embeddings": {"values": [0.1]}}]}', 2),
        (PREDICT, b'{"predictions": [{"embeddings": "x"}]}', 1),
    ],
)
def test_an_answer_the_gateway_cannot_read_is_a_502(method: Any, body: bytes, count: int) -> None:
    with pytest.raises(GatewayError) as refused:
        read_vectors(method, body, count)
    assert (refused.value.status, refused.value.code) == (502, "upstream_invalid")


# -- which route serves which model -----------------------------------------------------------------------------


def test_embedding_models_are_their_own_kind_served_on_v1_embeddings_only() -> None:
    table = ModelTable(DEFAULT_ALIASES, DEFAULT_PASSTHROUGH)
    embed = table.resolve("embed")
    assert embed.vertex_id == "google/gemini-embedding-001" and embed.kind == "embedding"
    assert table.resolve("gemini-embedding-001") is embed
    assert client_api_of(embed).path == "/v1/embeddings"
    assert [api.name for api in client_apis_of(embed)] == ["embeddings"]
    passed = table.resolve("gemini-embedding-2")
    assert passed.passthrough and passed.kind == "embedding" and client_api_of(passed).name == "embeddings"
    for alias in ("flash", "pro-preview", "sonnet", "haiku"):
        model = table.resolve(alias)
        assert model.kind == "generative" and "embeddings" not in [a.name for a in client_apis_of(model)]
    assert Model("te", "google/text-embedding-005").kind == "embedding"
    assert Model("x", "anthropic/claude-embedding-like").kind == "generative"


# -- the fake embedding models ----------------------------------------------------------------------------------


def fake(path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    match = EMBED_PATH.match(path)
    assert match is not None, path
    return answer(match, body)


def test_fake_vectors_are_unit_float32_derived_from_the_text() -> None:
    one = vector("gemini-embedding-001", "hello")
    assert len(one) == 3072 and math.hypot(*one) == pytest.approx(1.0, abs=1e-6)
    assert one == vector("gemini-embedding-001", "hello") != vector("gemini-embedding-001", "hello!")
    assert vector("gemini-embedding-001", "hello", 8) == one[:8]
    assert vector("gemini-embedding-001", "hello", task_type="RETRIEVAL_QUERY") != one
    assert len(vector("text-embedding-005", "hello")) == 768


def test_fake_embed_content_answers_as_the_proto_says() -> None:
    status, body = fake(
        f"{EMBED_CONTENT_PATH}:embedContent",
        {"content": {"parts": [{"text": "two words"}]}, "embedContentConfig": {"outputDimensionality": 4}},
    )
    assert status == 200
    assert body == {
        "embedding": {"values": vector("gemini-embedding-001", "two words", 4)},
        "usageMetadata": {"promptTokenCount": 2, "totalTokenCount": 2},
        "truncated": False,
    }
    status, body = fake(f"{EMBED_CONTENT_PATH}:embedContent", {"content": {"parts": [{"text": "a"}]}, "dims": 4})
    assert status == 400 and body["error"]["message"].startswith('Invalid JSON payload received. Unknown name "dims"')
    status, body = fake(
        f"{EMBED_CONTENT_PATH}:embedContent",
        {"content": {"parts": [{"text": "a"}]}, "embedContentConfig": {"taskType": "NOT_A_TASK"}},
    )
    assert status == 400 and "Invalid value at 'embed_content_config.task_type'" in body["error"]["message"]
    status, body = fake(
        f"{EMBED_CONTENT_PATH}:embedContent",
        {"content": {"parts": [{"text": "a"}]}, "embedContentConfig": {"outputDimensionality": 3073}},
    )
    assert status == 400 and "between 1 and 3072" in body["error"]["message"]


def test_fake_predict_keeps_each_models_batch_limit_in_vertex_s_words() -> None:
    status, body = fake(f"{EMBED_CONTENT_PATH}:predict", {"instances": [{"content": "a"}, {"content": "b"}]})
    assert (status, body["error"]["status"]) == (400, "INVALID_ARGUMENT")
    assert body["error"]["message"].startswith("Unable to submit request because it included too many instances.")
    assert "batchSize must be 1 but the entered value was 2" in body["error"]["message"]
    status, body = fake(f"{EMBED_CONTENT_PATH}:predict", {"instances": [{"content": "a b c"}]})
    assert status == 200
    assert body["predictions"][0]["embeddings"]["statistics"] == {"truncated": False, "token_count": 3}
    text_model = "/v1/projects/p/locations/us-central1/publishers/google/models/text-embedding-005:predict"
    status, body = fake(text_model, {"instances": [{"content": "a"}] * 251})
    assert status == 400 and "batchSize" in body["error"]["message"]
    status, body = fake(text_model, {"instances": [{"content": "w " * 2000}] * 11})
    assert status == 400 and "20000 tokens per request" in body["error"]["message"]
    status, body = fake(text_model, {"instances": [{"content": "a"}] * 250, "parameters": {"outputDimensionality": 16}})
    assert status == 200 and len(body["predictions"]) == 250
    assert body["predictions"][3]["embeddings"]["values"] == vector("text-embedding-005", "a", 16)


def test_fake_refuses_what_vertex_refuses_for_each_method() -> None:
    two = "/v1/projects/p/locations/global/publishers/google/models/gemini-embedding-2:predict"
    status, body = fake(two, {"instances": [{"content": "a"}]})
    assert (status, body["error"]) == (
        400,
        {"code": 400, "message": "Precondition check failed.", "status": "FAILED_PRECONDITION"},
    )
    missing = "/v1/projects/p/locations/global/publishers/google/models/gemini-embedding-9:embedContent"
    status, body = fake(missing, {"content": {"parts": [{"text": "a"}]}})
    assert status == 404
    assert body["error"]["message"].startswith(
        "Publisher Model `projects/p/locations/global/publishers/google/models/gemini-embedding-9` was not found"
    )


# -- the route, in process against the fake ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def vertex() -> Iterator[FakeVertex]:
    with FakeVertex({TOKEN}) as fake_vertex:
        yield fake_vertex


@pytest.fixture
def gateway(vertex: FakeVertex, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    async def token(self: object) -> str:
        return TOKEN

    async def discover(self: object) -> None:
        return None

    monkeypatch.setattr("app.vertex.TokenProvider.token", token)
    monkeypatch.setattr("app.vertex.TokenProvider.discover", discover)
    vertex.clear()

    def start(**env: str) -> TestClient:
        settings = load_settings(
            {
                "GOOGLE_CLOUD_PROJECT": "test-project",
                "VERTEX_BASE_URL": vertex.url,
                "API_KEYS_JSON": KEYS,
                "UPSTREAM_RETRIES": "0",
                **env,
            }
        )
        return TestClient(create_app(settings))

    yield start


def post(http: TestClient, body: dict[str, Any], key: str = FULL_KEY, path: str = "/v1/embeddings") -> Any:
    return http.post(path, json=body, headers={"authorization": f"Bearer {key}"})


def test_order_is_kept_across_split_calls_and_usage_summed(gateway: Any, vertex: FakeVertex) -> None:
    texts = [f"text number {i} " + "word " * (i % 4) for i in range(PARALLEL_CALLS * 2 + 1)]
    for _ in texts:  # each call waits a little before answering, so the calls overlap
        vertex.push({"header_delay": 0.02}, path_contains=":embedContent")
    with gateway() as http:
        reply = post(http, {"model": "embed", "input": texts})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["object"] == "list" and body["model"] == "embed"
    assert [item["index"] for item in body["data"]] == list(range(len(texts)))
    for text, item in zip(texts, body["data"], strict=True):
        assert item["object"] == "embedding" and item["embedding"] == vector("gemini-embedding-001", text)
    expected_tokens = sum(len(text.split()) for text in texts)
    assert body["usage"] == {"prompt_tokens": expected_tokens, "total_tokens": expected_tokens}
    calls = [r for r in vertex.requests if r.route == "embed"]
    assert len(calls) == len(texts) and {r.path for r in calls} == {f"{EMBED_CONTENT_PATH}:embedContent"}
    assert sorted(r.json["content"]["parts"][0]["text"] for r in calls) == sorted(texts)
    assert 1 < vertex.peak_inflight <= PARALLEL_CALLS
    assert all(r.header("Authorization") == f"Bearer {TOKEN}" for r in calls)


def test_base64_with_dimensions_is_the_shortened_vector_at_unit_length(gateway: Any) -> None:
    with gateway() as http:
        reply = post(
            http, {"model": "gemini-embedding-001", "input": ["a", "b"], "dimensions": 8, "encoding_format": "base64"}
        )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["model"] == "gemini-embedding-001"
    for text, item in zip(["a", "b"], body["data"], strict=True):
        decoded = array.array("f", base64.b64decode(item["embedding"])).tolist()
        assert decoded == pytest.approx(unit(vector("gemini-embedding-001", text, 8)), rel=1e-6)
        assert math.hypot(*decoded) == pytest.approx(1.0, abs=1e-6)


def test_a_text_embedding_model_goes_250_texts_a_call(gateway: Any, vertex: FakeVertex) -> None:
    texts = [f"t{i}" for i in range(260)]
    with gateway(MODEL_ALIASES='{"flash": "google/gemini-2.5-flash", "te": "google/text-embedding-005"}') as http:
        reply = post(http, {"model": "te", "input": texts, "task_type": "RETRIEVAL_DOCUMENT"})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert [item["embedding"] for item in body["data"]] == [
        vector("text-embedding-005", t, task_type="RETRIEVAL_DOCUMENT") for t in texts
    ]
    calls = [r for r in vertex.requests if r.route == "embed"]
    assert sorted(len(r.json["instances"]) for r in calls) == [10, 250]
    assert all(r.path.endswith("/models/text-embedding-005:predict") for r in calls)
    assert body["usage"]["prompt_tokens"] == 260


def test_the_first_failed_call_answers_in_openais_shape(gateway: Any, vertex: FakeVertex) -> None:
    # The first call hangs before its answer, the second fails: the failure answers at once, the others end.
    vertex.push({"header_delay": 3}, path_contains=":embedContent")
    vertex.push({"status": 429, "retry_after": "30"}, path_contains=":embedContent")
    with gateway() as http:
        started = time.monotonic()
        reply = post(http, {"model": "embed", "input": [f"x{i}" for i in range(20)]})
        assert time.monotonic() - started < 2.5
    assert reply.status_code == 429 and reply.headers["retry-after"] == "30"
    error = reply.json()["error"]
    assert error["type"] == "rate_limit_error" and error["code"] == "RESOURCE_EXHAUSTED"
    assert error["message"].startswith("Vertex AI returned 429 RESOURCE_EXHAUSTED: Scripted failure.")
    assert vertex.pending_scripts() == 0


def test_vertex_s_own_400_keeps_its_reason(gateway: Any) -> None:
    with gateway() as http:
        reply = post(http, {"model": "embed", "input": "a", "dimensions": 4096})
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["code"] == "INVALID_ARGUMENT" and "outputDimensionality must be between 1 and 3072" in error["message"]


def test_a_passed_through_embedding_model_vertex_lacks_says_how_to_enable_it(gateway: Any) -> None:
    with gateway() as http:
        reply = post(http, {"model": "gemini-embedding-9", "input": "a"})
    assert reply.status_code == 404
    error = reply.json()["error"]
    assert error["code"] == "model_not_found" and "Model Garden" in error["message"]


def test_text_that_mentions_a_bucket_is_just_text(gateway: Any) -> None:
    with gateway() as http:
        reply = post(http, {"model": "embed", "input": ["gs://bucket/object.txt", "projects/p/locations/l"]})
    assert reply.status_code == 200, reply.text


@pytest.mark.parametrize(
    ("path", "model", "served_at"),
    [
        ("/v1/embeddings", "flash", "/v1/chat/completions"),
        ("/v1/embeddings", "sonnet", "/v1/messages"),
        ("/v1/chat/completions", "embed", "/v1/embeddings"),
        ("/v1/messages", "embed", "/v1/embeddings"),
        ("/v1/messages/count_tokens", "embed", "/v1/embeddings"),
    ],
)
def test_a_model_on_the_wrong_route_is_sent_to_its_own(
    gateway: Any, vertex: FakeVertex, path: str, model: str, served_at: str
) -> None:
    body = {"model": model, "input": "a", "messages": [{"role": "user", "content": "a"}], "max_tokens": 5}
    with gateway() as http:
        reply = post(http, body, path=path)
    assert reply.status_code == 400
    answer_body = reply.json()
    message = answer_body["error"]["message"]
    assert f"is served at POST {served_at}, not on this route" in message
    if path.startswith("/v1/messages"):
        assert answer_body["type"] == "error" and answer_body["error"]["type"] == "invalid_request_error"
    else:
        assert answer_body["error"]["code"] == "wrong_endpoint"
    assert vertex.requests == []


def test_refusals_reach_no_upstream(gateway: Any, vertex: FakeVertex) -> None:
    with gateway() as http:
        restricted = post(http, {"model": "embed", "input": "a"}, key=FLASH_KEY)
        too_many = post(http, {"model": "embed", "input": ["a"] * (MAX_INPUTS + 1)})
        tokens = post(http, {"model": "embed", "input": [[1, 2, 3]]})
        listed = http.get("/v1/models", headers={"x-api-key": FULL_KEY}).json()["data"]
    assert restricted.status_code == 403 and restricted.json()["error"]["code"] == "model_not_allowed"
    assert too_many.status_code == 400 and too_many.json()["error"]["param"] == "input"
    assert tokens.status_code == 400 and "token ids" in tokens.json()["error"]["message"]
    assert vertex.requests == []
    entry = next(m for m in listed if m["id"] == "embed")
    assert (entry["api"], entry["apis"], entry["vertex_id"]) == ("embeddings", ["embeddings"], DEFAULT_ALIASES["embed"])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
embeddings_like = st.fixed_dictionaries(
    {"model": st.sampled_from(["embed", "gemini-embedding-001", "flash", "gemini-embedding-9", ""]) | json_values},
    optional={
        "input": st.text(max_size=20) | st.lists(st.text(max_size=20), max_size=3) | json_values,
        "dimensions": st.integers(-2, 4000) | json_values,
        "encoding_format": st.sampled_from(["float", "base64"]) | json_values,
        "task_type": st.sampled_from(["RETRIEVAL_QUERY", "NOPE"]) | json_values,
        "user": json_values,
    },
)


def test_any_embeddings_body_is_answered_and_never_a_gateway_failure(gateway: Any) -> None:
    with gateway() as http:

        @settings(max_examples=60, deadline=None, database=None)
        @given(body=embeddings_like)
        def check(body: dict[str, Any]) -> None:
            reply = post(http, body)
            assert reply.status_code in (200, 400, 403, 404), (body, reply.text)
            answered = reply.json()
            assert "data" in answered if reply.status_code == 200 else "error" in answered

        check()
