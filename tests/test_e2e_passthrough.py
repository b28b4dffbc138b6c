"""End to end: unlisted claude-/gemini- ids pass through to Vertex as asked (issue 12).

The shared gateway runs the defaults (MODEL_PASSTHROUGH unset: claude-*,gemini-*); other gateways here
set MODEL_PASSTHROUGH or a key document with glob patterns. What reached the Vertex fake is what real
Vertex would judge; the request line is what the operator sees.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

from app.aliases import CLAUDE_CODE_HINT
from tests.conftest import API_KEYS, KEY_DOCUMENT, KEY_IDS, LOCATION, PROJECT, GatewayFactory
from tests.fakes.vertex import FakeVertex
from tests.harness import Gateway

pytestmark = pytest.mark.e2e

CLAUDE_PREFIX = f"/v1/projects/{PROJECT}/locations/{LOCATION}/publishers/anthropic/models/"


def ask_claude(gateway: Gateway, model: str, marker: str, key: str = API_KEYS["full"]) -> anthropic.types.Message:
    with anthropic.Anthropic(api_key=key, base_url=gateway.url, max_retries=0, timeout=60) as client:
        return client.messages.create(model=model, max_tokens=16, messages=[{"role": "user", "content": marker}])


def message_line(gateway: Gateway, since: int) -> dict[str, Any]:
    """The one /v1/messages request line after the first `since` (written just after the answer: wait for it)."""
    deadline = time.monotonic() + 10
    while True:
        lines = [e for e in gateway.request_logs()[since:] if e["httpRequest"]["requestUrl"] == "/v1/messages"]
        if lines or time.monotonic() > deadline:
            (line,) = lines
            return line
        time.sleep(0.02)


@pytest.mark.parametrize(
    ("model", "vertex_name"),
    [
        # Ids the Vertex fake's project has enabled (tests/fakes/vertex.py DEFAULT_CLAUDE_MODELS).
        ("claude-opus-4-1-20250805", "claude-opus-4-1@20250805"),
        ("claude-sonnet-5-5", "claude-sonnet-5-5"),
        ("anthropic/claude-opus-4-5@20251101", "claude-opus-4-5@20251101"),
    ],
)
def test_an_unlisted_claude_id_reaches_vertex(
    gateway: Gateway, fake_vertex: FakeVertex, marker: str, model: str, vertex_name: str
) -> None:
    logged = len(gateway.request_logs())
    answer = ask_claude(gateway, model, marker)
    assert answer.content
    (rec,) = fake_vertex.find(marker)
    assert rec.path == f"{CLAUDE_PREFIX}{vertex_name}:rawPredict"
    assert "model" not in rec.json
    # The caller's id is what the log calls the model; the Vertex id beside it.
    line = message_line(gateway, logged)
    assert line["alias"] == model and line["vertex_model"] == f"anthropic/{vertex_name}"
    assert line["httpRequest"]["status"] == 200


def test_an_unlisted_gemini_id_reaches_vertex(gateway: Gateway, fake_vertex: FakeVertex, marker: str) -> None:
    with openai.OpenAI(api_key=API_KEYS["full"], base_url=gateway.base_url, max_retries=0, timeout=60) as sdk:
        sdk.chat.completions.create(model="gemini-3-pro-preview", messages=[{"role": "user", "content": marker}])
    (rec,) = fake_vertex.find(marker)
    assert rec.json["model"] == "google/gemini-3-pro-preview"


def test_a_key_limited_to_aliases_does_not_reach_passed_through_ids(
    gateway: Gateway, fake_vertex: FakeVertex, marker: str
) -> None:
    sdk = openai.OpenAI(api_key=API_KEYS["flash_only"], base_url=gateway.base_url, max_retries=0)
    with sdk, pytest.raises(openai.PermissionDeniedError) as caught:
        sdk.chat.completions.create(model="gemini-3-pro-preview", messages=[{"role": "user", "content": marker}])
    assert "passed through" in str(caught.value) and "may use: flash" in str(caught.value)
    assert fake_vertex.find(marker) == []


@pytest.fixture
def narrowed(gateway_factory: GatewayFactory) -> Iterator[Gateway]:
    """Passthrough of Opus ids only, and a key reaching `sonnet` and dated Claude ids by glob."""
    document = [
        *KEY_DOCUMENT,
        {"id": "globbed", "key": "gwk-globbed-key-0123456789", "models": ["sonnet", "claude-*@2025*"]},
    ]
    yield gateway_factory(
        {"MODEL_PASSTHROUGH": "claude-opus-*,claude-sonnet-4-5-*", "API_KEYS_JSON": json.dumps(document)}
    )


def test_model_passthrough_and_key_globs(narrowed: Gateway, fake_vertex: FakeVertex, marker: str) -> None:
    # Not in MODEL_PASSTHROUGH: today's unknown-model answer, which names the setting.
    with pytest.raises(anthropic.BadRequestError) as caught:
        ask_claude(narrowed, "claude-sonnet-5-5", marker)
    message = caught.value.message
    assert "Unknown model 'claude-sonnet-5-5'" in message
    assert "match the operator's MODEL_PASSTHROUGH (claude-opus-*,claude-sonnet-4-5-*)" in message
    assert CLAUDE_CODE_HINT.removeprefix(". ") in message
    # In it, for a key without a list.
    ask_claude(narrowed, "claude-opus-5-5", marker)
    # A key's glob reaches a passed-through id by its Vertex name (claude-opus-4-1@20250805)...
    ask_claude(narrowed, "claude-opus-4-1-20250805", marker, key="gwk-globbed-key-0123456789")
    # ...and an alias by name, but no other id.
    ask_claude(narrowed, "sonnet", marker, key="gwk-globbed-key-0123456789")
    with pytest.raises(anthropic.PermissionDeniedError):
        ask_claude(narrowed, "claude-opus-5-5", marker, key="gwk-globbed-key-0123456789")
    paths = [r.path.removeprefix(CLAUDE_PREFIX) for r in fake_vertex.find(marker)]
    assert paths == [
        "claude-opus-5-5:rawPredict",
        "claude-opus-4-1@20250805:rawPredict",
        "claude-sonnet-4-6:rawPredict",
    ]
    assert {e["key_id"] for e in narrowed.request_logs()} >= {KEY_IDS["full"], "globbed"}


def test_model_passthrough_off(gateway_factory: GatewayFactory, fake_vertex: FakeVertex, marker: str) -> None:
    off = gateway_factory({"MODEL_PASSTHROUGH": ""})
    for model in ("claude-sonnet-5-5", "claude-opus-4-1-20250805"):
        with pytest.raises(anthropic.BadRequestError) as caught:
            ask_claude(off, model, marker)
        message = caught.value.message
        assert f"Unknown model {model!r}" in message and "MODEL_PASSTHROUGH is empty" in message
        assert "ANTHROPIC_DEFAULT_SONNET_MODEL" in message
    # Configured models still answer to every name.
    ask_claude(off, "claude-haiku-4-5-20251001", marker)
    assert [r.path.removeprefix(CLAUDE_PREFIX) for r in fake_vertex.find(marker)] == [
        "claude-haiku-4-5@20251001:rawPredict"
    ]


def test_a_passed_through_model_vertex_does_not_serve_says_how_to_enable_or_map_it(
    gateway: Gateway, fake_vertex: FakeVertex, marker: str
) -> None:
    # The fake's project has not enabled these (Vertex answers 404): the caller learns what to do.
    with pytest.raises(anthropic.NotFoundError) as caught:
        ask_claude(gateway, "claude-opus-9-9", marker)
    message = caught.value.message
    assert "Model 'claude-opus-9-9' (Vertex AI model anthropic/claude-opus-9-9) is not enabled" in message
    assert "https://console.cloud.google.com/vertex-ai/model-garden" in message
    assert "ANTHROPIC_DEFAULT_OPUS_MODEL=opus" in message
    # Gemini on /v1/messages goes to Vertex's native generateContent, which checks the model too.
    with pytest.raises(anthropic.NotFoundError) as not_found:
        ask_claude(gateway, "gemini-9-ultra", marker)
    assert "Model 'gemini-9-ultra' (Vertex AI model google/gemini-9-ultra) is not enabled" in not_found.value.message
    assert "GET /v1/models" in not_found.value.message
    assert len(fake_vertex.find(marker)) == 2  # both asked Vertex, which alone knows what the project may use
