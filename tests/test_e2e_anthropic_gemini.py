"""End to end: the anthropic SDK on a Gemini alias (issue 12).

The gateway runs as its container does, in front of the fake's native Gemini API (generateContent,
streamGenerateContent?alt=sse, countTokens), which validates bodies as Vertex does and enforces
Gemini 3's thought-signature rule. What reached the fake is checked, since that is what Vertex judges.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

from tests.conftest import API_KEYS, LOCATION, PROJECT
from tests.fakes.vertex import FakeVertex, Recorded
from tests.harness import Gateway, start_gateway

pytestmark = pytest.mark.e2e

ALIASES = {
    "flash": "google/gemini-2.5-flash",
    "pro-preview": "google/gemini-3.1-pro-preview",
    "haiku": "anthropic/claude-haiku-4-5@20251001",
}
GEMINI_PREFIX = f"/v1/projects/{PROJECT}/locations/{LOCATION}/publishers/google/models/"
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Weather for a city.",
    "input_schema": {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "additionalProperties": False,
        "properties": {"city": {"type": "string", "description": "a city"}, "units": {"enum": ["C", "F"]}},
        "required": ["city"],
    },
}


@pytest.fixture(scope="module")
def gemini_gateway(gateway_env: dict[str, str | None]) -> Iterator[Gateway]:
    gw = start_gateway({**gateway_env, "MODEL_ALIASES": json.dumps(ALIASES)})
    yield gw
    assert gw.stop() == 0, f"gateway log: {gw.log_path}"


@pytest.fixture
def claude(gemini_gateway: Gateway) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(api_key=API_KEYS["full"], base_url=gemini_gateway.url, max_retries=0, timeout=60) as c:
        yield c


def only(records: list[Recorded]) -> Recorded:
    assert len(records) == 1, [r.path for r in records]
    return records[0]


@pytest.mark.parametrize("alias", ["flash", "pro-preview"])
def test_create(claude: anthropic.Anthropic, fake_vertex: FakeVertex, marker: str, alias: str) -> None:
    message = claude.messages.create(
        model=alias, max_tokens=64, system="be brief", messages=[{"role": "user", "content": f"hi {marker}"}]
    )
    assert message.type == "message" and message.role == "assistant" and message.model == alias
    assert message.id.startswith("msg_")
    assert message.stop_reason == "end_turn"
    assert message.content[0].type == "text" and marker in message.content[0].text
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    rec = only(fake_vertex.find(marker))
    assert rec.path == f"{GEMINI_PREFIX}{ALIASES[alias].split('/')[1]}:generateContent"
    assert rec.status == 200
    assert rec.json["systemInstruction"] == {"parts": [{"text": "be brief"}]}
    assert rec.json["generationConfig"] == {"maxOutputTokens": 64}


def test_stream_text_reassembled_by_the_sdk(claude: anthropic.Anthropic, fake_vertex: FakeVertex, marker: str) -> None:
    fake_vertex.push({"chunks": 4}, path_contains=":streamGenerateContent")
    texts = []
    with claude.messages.stream(model="flash", max_tokens=64, messages=[{"role": "user", "content": marker}]) as stream:
        for text in stream.text_stream:
            texts.append(text)
        final = stream.get_final_message()
    assert len(texts) >= 4, "each Gemini chunk is forwarded as it arrives"
    assert marker in "".join(texts) == final.content[0].text
    assert final.stop_reason == "end_turn" and final.usage.output_tokens > 0
    rec = only(fake_vertex.find(marker))
    assert rec.path.endswith(":streamGenerateContent") and rec.query == "alt=sse"


def test_stream_tool_use_reassembled_by_the_sdk(
    claude: anthropic.Anthropic, fake_vertex: FakeVertex, marker: str
) -> None:
    with claude.messages.stream(
        model="pro-preview", max_tokens=64, tools=[WEATHER_TOOL], messages=[{"role": "user", "content": marker}]
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    call = next(b for b in final.content if b.type == "tool_use")
    assert call.name == "get_weather" and isinstance(call.input, dict) and isinstance(call.input.get("city"), str)
    declared = only(fake_vertex.find(marker)).json["tools"][0]["functionDeclarations"][0]
    assert "$schema" not in json.dumps(declared) and "additionalProperties" not in json.dumps(declared)
    assert declared["parameters"]["properties"]["units"] == {"type": "STRING", "enum": ["C", "F"]}


@pytest.mark.parametrize("stream", [False, True])
def test_multi_turn_tool_conversation_on_gemini_3(
    claude: anthropic.Anthropic, fake_vertex: FakeVertex, marker: str, stream: bool
) -> None:
    """The second turn carries Gemini 3's signature back, though the client only echoed the tool_use block."""
    history: list[dict[str, Any]] = [{"role": "user", "content": f"weather? {marker}"}]
    kwargs: dict[str, Any] = {"model": "pro-preview", "max_tokens": 64, "tools": [WEATHER_TOOL]}
    if stream:
        with claude.messages.stream(messages=history, **kwargs) as s:
            first = s.get_final_message()
    else:
        first = claude.messages.create(messages=history, **kwargs)
    assert first.stop_reason == "tool_use"
    call = next(b for b in first.content if b.type == "tool_use")
    issued = only(fake_vertex.find(marker)).issued_signature
    assert issued
    history += [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny, 21C"}]},
    ]
    second = claude.messages.create(messages=history, **kwargs)
    assert second.stop_reason == "end_turn"
    assert "sunny, 21C" in second.content[0].text
    turn2 = fake_vertex.find(marker)[-1]
    assert turn2.status == 200
    model_turn = turn2.json["contents"][1]
    assert model_turn["role"] == "model"
    assert model_turn["parts"][-1]["thoughtSignature"] == issued, "the signature Gemini issued came back"
    assert turn2.json["contents"][2]["parts"][0]["functionResponse"]["name"] == "get_weather"


def test_gemini_3_history_without_signatures_uses_the_dummy(
    claude: anthropic.Anthropic, gemini_gateway: Gateway, fake_vertex: FakeVertex, marker: str
) -> None:
    """A history written by another model has no signature to restore: the documented dummy stands in."""
    history = [
        {"role": "user", "content": f"weather? {marker}"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Oslo"}}],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01A", "content": "snow"}]},
    ]
    answer = claude.messages.create(model="pro-preview", max_tokens=64, tools=[WEATHER_TOOL], messages=history)
    assert "snow" in answer.content[0].text
    sent = only(fake_vertex.find(marker)).json["contents"][1]["parts"][0]
    assert sent["thoughtSignature"] == "skip_thought_signature_validator"
    entry = gemini_gateway.wait_for_log(lambda e: e.get("thought_signatures") == {"dummy": 1})
    assert entry["upstream_api"] == "gemini" and entry["httpRequest"]["status"] == 200


def test_count_tokens_is_geminis_own(claude: anthropic.Anthropic, fake_vertex: FakeVertex, marker: str) -> None:
    counted = claude.messages.count_tokens(model="flash", system="s", messages=[{"role": "user", "content": marker}])
    rec = only(fake_vertex.find(marker))
    assert rec.path == f"{GEMINI_PREFIX}gemini-2.5-flash:countTokens"
    assert rec.json == {
        "contents": [{"role": "user", "parts": [{"text": marker}]}],
        "systemInstruction": {"parts": [{"text": "s"}]},
    }
    longer = claude.messages.count_tokens(model="flash", messages=[{"role": "user", "content": f"{marker} " * 50}])
    assert 0 < counted.input_tokens < longer.input_tokens


def test_server_tools_are_dropped_and_logged(
    claude: anthropic.Anthropic, gemini_gateway: Gateway, fake_vertex: FakeVertex, marker: str
) -> None:
    claude.messages.create(
        model="flash",
        max_tokens=64,
        tools=[{"type": "web_search_20250305", "name": "web_search", "max_uses": 2}],
        messages=[{"role": "user", "content": marker}],
    )
    assert "tools" not in only(fake_vertex.find(marker)).json
    entry = gemini_gateway.wait_for_log(lambda e: e.get("dropped_tools") == ["web_search"])
    assert entry["httpRequest"]["status"] == 200


def test_vertex_error_in_anthropic_shape(claude: anthropic.Anthropic, fake_vertex: FakeVertex, marker: str) -> None:
    fake_vertex.push({"status": 429, "retry_after": "120"}, path_contains=":generateContent")
    with pytest.raises(anthropic.RateLimitError) as caught:
        claude.messages.create(model="flash", max_tokens=8, messages=[{"role": "user", "content": marker}])
    body = caught.value.body
    assert isinstance(body, dict) and body["type"] == "error"
    assert body["error"]["type"] == "rate_limit_error" and "RESOURCE_EXHAUSTED" in body["error"]["message"]


def test_stream_cut_midway_ends_with_an_error_event(
    claude: anthropic.Anthropic, fake_vertex: FakeVertex, marker: str
) -> None:
    fake_vertex.push({"chunks": 6, "die_after": 3}, path_contains=":streamGenerateContent")
    received = []
    request = {"model": "flash", "max_tokens": 64, "messages": [{"role": "user", "content": marker}]}
    # The SDK raises Anthropic's `error` event as an APIStatusError.
    with pytest.raises(anthropic.APIStatusError) as caught, claude.messages.stream(**request) as s:
        for text in s.text_stream:
            received.append(text)
    assert received, "what arrived before the cut was passed on"
    assert "broke off" in str(caught.value)


def test_safety_block_is_a_refusal(claude: anthropic.Anthropic, fake_vertex: FakeVertex, marker: str) -> None:
    fake_vertex.push({"finish": "SAFETY"}, path_contains=":generateContent")
    message = claude.messages.create(model="flash", max_tokens=8, messages=[{"role": "user", "content": marker}])
    assert message.stop_reason == "refusal"


def test_bad_block_is_refused_before_vertex(claude: anthropic.Anthropic, fake_vertex: FakeVertex, marker: str) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude.messages.create(
            model="flash",
            max_tokens=8,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": marker},
                        {"type": "tool_result", "tool_use_id": "toolu_x", "content": "r"},
                    ],
                }
            ],
        )
    assert "tool_use_id" in caught.value.body["error"]["message"]
    assert fake_vertex.find(marker) == []
