"""End to end: POST /v1/embeddings through the gateway as a gunicorn process, driven by the real OpenAI SDK
(client.embeddings.create), against the fake Vertex embedding models (tests/fakes/vertex_embed.py)."""

from __future__ import annotations

import asyncio
import math
import secrets
from typing import Any

import anthropic
import openai
import pytest

from app.embeddings_api import MAX_INPUTS, PARALLEL_CALLS
from tests.conftest import API_KEYS, KEY_IDS, LOCATION, PROJECT, GatewayFactory
from tests.fakes.metadata import FakeMetadata
from tests.fakes.vertex import FakeVertex, Recorded
from tests.fakes.vertex_embed import vector
from tests.harness import Gateway

pytestmark = pytest.mark.e2e

MODEL = "gemini-embedding-001"
EMBED_CONTENT = f"/v1/projects/{PROJECT}/locations/{LOCATION}/publishers/google/models/{MODEL}:embedContent"


def unit(values: list[float]) -> list[float]:
    norm = math.hypot(*values)
    return [x / norm for x in values]


def calls(fake_vertex: FakeVertex, marker: str) -> list[Recorded]:
    return [r for r in fake_vertex.find(marker) if r.route == "embed"]


def texts_of(records: list[Recorded]) -> list[str]:
    return sorted(r.json["content"]["parts"][0]["text"] for r in records)


def test_the_sdks_default_base64_decodes_to_the_vectors_in_order(
    openai_client: openai.OpenAI, fake_vertex: FakeVertex, fake_metadata: FakeMetadata, marker: str
) -> None:
    texts = [f"first {marker}", f"the second one {marker}", f"third {marker}"]
    raw = openai_client.embeddings.with_raw_response.create(model="embed", input=texts, dimensions=16)
    # Without encoding_format the SDK asks for base64 and decodes it itself.
    assert all(isinstance(item["embedding"], str) for item in raw.http_response.json()["data"])
    reply = raw.parse()
    assert reply.model == "embed" and reply.object == "list"
    assert [item.index for item in reply.data] == [0, 1, 2]
    for text, item in zip(texts, reply.data, strict=True):
        assert len(item.embedding) == 16
        assert item.embedding == pytest.approx(unit(vector(MODEL, text, 16)), rel=1e-6)
    words = sum(len(text.split()) for text in texts)
    assert (reply.usage.prompt_tokens, reply.usage.total_tokens) == (words, words)
    records = calls(fake_vertex, marker)
    assert texts_of(records) == sorted(texts)
    for record in records:
        assert record.path == EMBED_CONTENT
        assert record.json["embedContentConfig"] == {"outputDimensionality": 16}
        assert (record.header("Authorization") or "").removeprefix("Bearer ") in fake_metadata.issued
        assert record.header("x-api-key") is None


def test_float_vectors_are_vertex_s_values(openai_client: openai.OpenAI, marker: str) -> None:
    reply = openai_client.embeddings.create(model="embed", input=f"one text {marker}", encoding_format="float")
    assert [item.embedding for item in reply.data] == [vector(MODEL, f"one text {marker}")]
    assert len(reply.data[0].embedding) == 3072


def test_many_texts_are_split_and_kept_in_order_with_bounded_calls(
    gateway: Gateway, fake_vertex: FakeVertex, marker: str
) -> None:
    texts = [f"text {i} {marker}" for i in range(3 * PARALLEL_CALLS + 5)]

    async def scenario() -> Any:
        async with openai.AsyncOpenAI(api_key=API_KEYS["full"], base_url=gateway.base_url, max_retries=0) as sdk:
            return await sdk.embeddings.create(model="embed", input=texts, encoding_format="float")

    fake_vertex.clear()
    for _ in texts:  # each call waits a little before answering, so the calls overlap
        fake_vertex.push({"header_delay": 0.05}, path_contains=":embedContent")
    reply = asyncio.run(scenario())
    assert [item.embedding for item in reply.data] == [vector(MODEL, text) for text in texts]
    assert reply.usage.prompt_tokens == 3 * len(texts)
    assert texts_of(calls(fake_vertex, marker)) == sorted(texts)
    assert 1 < fake_vertex.peak_inflight <= PARALLEL_CALLS


def test_the_request_line_has_the_usage_and_every_upstream_call(
    gateway: Gateway, fake_vertex: FakeVertex, marker: str
) -> None:
    session = f"embed-{secrets.token_hex(6)}"
    with openai.OpenAI(
        api_key=API_KEYS["full"],
        base_url=gateway.base_url,
        max_retries=0,
        default_headers={"X-Proxy-Chat-Session": session},
    ) as sdk:
        sdk.embeddings.create(model="embed", input=[f"a {marker}", f"b c {marker}"])
    entry = gateway.wait_for_log(lambda e: e.get("session") == session and "httpRequest" in e)
    assert entry["httpRequest"]["status"] == 200 and entry["httpRequest"]["requestUrl"] == "/v1/embeddings"
    assert (entry["alias"], entry["vertex_model"]) == ("embed", f"google/{MODEL}")
    assert entry["usage"] == {"input_tokens": 5, "total_tokens": 5}
    assert entry["upstream_api"] == "embedContent" and entry["upstream_attempts"] == 2
    assert entry["key_id"] == KEY_IDS["full"] and entry["stream"] is False


def test_a_text_embedding_model_takes_250_texts_a_call(
    gateway_factory: GatewayFactory, fake_vertex: FakeVertex, marker: str
) -> None:
    aliases = '{"embed": "google/gemini-embedding-001", "text": "google/text-embedding-005"}'
    gw = gateway_factory({"MODEL_ALIASES": aliases})
    texts = [f"{marker} {i}" for i in range(260)]
    with openai.OpenAI(api_key=API_KEYS["full"], base_url=gw.base_url, max_retries=0) as sdk:
        reply = sdk.embeddings.create(model="text", input=texts, extra_body={"task_type": "RETRIEVAL_DOCUMENT"})
    expected = [vector("text-embedding-005", t, task_type="RETRIEVAL_DOCUMENT") for t in texts]
    assert len(reply.data) == len(expected)
    for item, values in zip(reply.data, expected, strict=True):
        assert item.embedding == pytest.approx(values, rel=1e-6)  # the SDK's base64, decoded: float32
    records = calls(fake_vertex, marker)
    assert sorted(len(r.json["instances"]) for r in records) == [10, 250]
    assert all(r.path.endswith("/models/text-embedding-005:predict") for r in records)


# -- refusals and errors, in OpenAI's shape -----------------------------------------------------------------------


def test_a_key_restricted_to_flash_may_not_embed(gateway: Gateway, fake_vertex: FakeVertex, marker: str) -> None:
    with (
        openai.OpenAI(api_key=API_KEYS["flash_only"], base_url=gateway.base_url, max_retries=0) as sdk,
        pytest.raises(openai.PermissionDeniedError) as refused,
    ):
        sdk.embeddings.create(model="embed", input=marker)
    assert refused.value.code == "model_not_allowed" and "may use: flash" in refused.value.message
    assert fake_vertex.find(marker) == []


def test_vertex_s_error_answers_with_its_reason_and_retry_after(
    openai_client: openai.OpenAI, fake_vertex: FakeVertex, marker: str
) -> None:
    fake_vertex.push({"status": 429, "retry_after": "30"}, path_contains=":embedContent")
    with pytest.raises(openai.RateLimitError) as limited:
        openai_client.embeddings.create(model="embed", input=[f"x {marker}", f"y {marker}", f"z {marker}"])
    error = limited.value
    assert error.code == "RESOURCE_EXHAUSTED" and error.response.headers["retry-after"] == "30"
    assert "Vertex AI returned 429 RESOURCE_EXHAUSTED: Scripted failure." in error.message
    with pytest.raises(openai.BadRequestError) as bad:
        openai_client.embeddings.create(model="embed", input=marker, dimensions=5000)
    assert bad.value.code == "INVALID_ARGUMENT" and "outputDimensionality" in bad.value.message


def test_requests_the_gateway_refuses_reach_no_upstream(
    openai_client: openai.OpenAI, fake_vertex: FakeVertex, marker: str
) -> None:
    with pytest.raises(openai.BadRequestError) as too_many:
        openai_client.embeddings.create(model="embed", input=[marker] * (MAX_INPUTS + 1))
    assert too_many.value.param == "input" and f"at most {MAX_INPUTS}" in too_many.value.message
    with pytest.raises(openai.BadRequestError) as token_ids:
        openai_client.embeddings.create(model="embed", input=[[15339, 1917]], extra_body={"note": marker})
    assert "check_embedding_ctx_length=False" in token_ids.value.message
    with pytest.raises(openai.BadRequestError) as empty:
        openai_client.embeddings.create(model="embed", input=[marker, ""])
    assert empty.value.param == "input[1]"
    assert fake_vertex.find(marker) == []


def test_each_model_is_sent_to_its_own_route(gateway: Gateway, openai_client: openai.OpenAI, marker: str) -> None:
    with pytest.raises(openai.BadRequestError) as chat_model:
        openai_client.embeddings.create(model="flash", input=marker)
    assert chat_model.value.code == "wrong_endpoint" and "POST /v1/chat/completions" in chat_model.value.message
    with pytest.raises(openai.BadRequestError) as embedding_model:
        openai_client.chat.completions.create(model="embed", messages=[{"role": "user", "content": marker}])
    assert embedding_model.value.code == "wrong_endpoint" and "POST /v1/embeddings" in embedding_model.value.message
    with (
        anthropic.Anthropic(api_key=API_KEYS["full"], base_url=gateway.url, max_retries=0) as claude,
        pytest.raises(anthropic.BadRequestError) as on_messages,
    ):
        claude.messages.create(model="embed", max_tokens=8, messages=[{"role": "user", "content": marker}])
    assert "POST /v1/embeddings" in on_messages.value.message


def test_models_lists_embed_with_its_api(openai_client: openai.OpenAI) -> None:
    listed = {m.id: m.model_dump() for m in openai_client.models.list()}
    assert listed["embed"]["vertex_id"] == f"google/{MODEL}"
    assert (listed["embed"]["api"], listed["embed"]["apis"]) == ("embeddings", ["embeddings"])
    assert openai_client.models.retrieve("embed").model_dump()["api"] == "embeddings"
