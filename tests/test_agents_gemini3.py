"""End to end: Gemini 3 tool turns through clients that drop `extra_content` (issue 12).

The OpenAI Agents SDK rebuilds the assistant turn from its own items and writes a thought signature back
only for model names containing "gemini"; called by the gateway's alias (`pro-preview`) it sends none,
and Gemini 3 refuses the next request. The gateway carries each signature in the tool call id, which
every client echoes, and restores it before Vertex sees the history.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import openai
import pytest

from app.thought_signatures import DUMMY, split
from tests.conftest import ALIASES, API_KEYS, PROJECT
from tests.fakes.vertex import FakeVertex, Recorded
from tests.harness import Gateway
from tests.test_e2e_openai import WEATHER_TOOL

pytestmark = pytest.mark.e2e


def traced() -> tuple[str, dict[str, str]]:
    """A trace id and the header that puts it on the gateway's request lines."""
    trace = uuid.uuid4().hex
    return f"projects/{PROJECT}/traces/{trace}", {"X-Cloud-Trace-Context": f"{trace}/1;o=1"}


def lines_of(gateway: Gateway, trace: str, count: int) -> list[dict[str, Any]]:
    gateway.wait_for_log(
        lambda e: len([x for x in gateway.request_logs() if x.get("logging.googleapis.com/trace") == trace]) >= count
    )
    return [e for e in gateway.request_logs() if e.get("logging.googleapis.com/trace") == trace]


def first_call(rec: Recorded) -> dict[str, Any]:
    return next(m for m in rec.json["messages"] if m.get("role") == "assistant")["tool_calls"][0]


def signature_of(call: dict[str, Any]) -> Any:
    return ((call.get("extra_content") or {}).get("google") or {}).get("thought_signature")


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_agents_sdk_function_tool_on_gemini_3(
    stream: bool, gateway: Gateway, fake_vertex: FakeVertex, marker: str
) -> None:
    from agents import Agent, OpenAIChatCompletionsModel, Runner, function_tool, set_tracing_disabled

    set_tracing_disabled(True)
    calls: list[str] = []
    ids: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """Weather for a city."""
        calls.append(city)
        return f"sunny in {city} {marker}"

    trace, headers = traced()

    async def scenario() -> str:
        async with openai.AsyncOpenAI(
            api_key=API_KEYS["full"], base_url=gateway.base_url, max_retries=0, default_headers=headers
        ) as sdk:
            agent = Agent(
                name="weather",
                instructions="Answer with the tool.",
                model=OpenAIChatCompletionsModel(model="pro-preview", openai_client=sdk),
                tools=[get_weather],
            )
            prompt = f"Weather in Paris? {marker}"
            if stream:
                result = Runner.run_streamed(agent, prompt, max_turns=4)
                async for event in result.stream_events():
                    item = getattr(event, "item", None)
                    if getattr(item, "type", None) == "tool_call_item":
                        ids.append(item.raw_item.call_id)  # type: ignore[union-attr]
            else:
                result = await Runner.run(agent, prompt, max_turns=4)
                ids.extend(i.raw_item.call_id for i in result.new_items if i.type == "tool_call_item")  # type: ignore[union-attr]
            return str(result.final_output)

    assert asyncio.run(scenario()) == f"tool said: sunny in Paris {marker}"
    assert calls == ["Paris"]

    upstream = fake_vertex.find(marker)
    assert len(upstream) == 2 and all(r.json["model"] == ALIASES["pro-preview"] for r in upstream)
    issued = upstream[0].issued_signature
    assert issued, "the fake issues a signature with its tool call"
    # The SDK saw an id that carries the signature (it kept no extra_content for a model not named gemini)...
    assert len(ids) == 1 and split(ids[0])[1] == issued
    # ...and Vertex got back exactly its own id and signature.
    replayed = first_call(upstream[1])
    assert signature_of(replayed) == issued
    assert replayed["id"] == split(ids[0])[0] and "__t" not in replayed["id"]
    tool_message = next(m for m in upstream[1].json["messages"] if m.get("role") == "tool")
    assert tool_message["tool_call_id"] == replayed["id"]
    assert issued in fake_vertex.signatures_issued and issued in fake_vertex.signatures_returned

    first, second = lines_of(gateway, trace, 2)
    assert first["httpRequest"]["status"] == second["httpRequest"]["status"] == 200
    assert "thought_signatures" not in first
    assert second["thought_signatures"] == {"restored": 1}
    assert second["usage"]["input_tokens"] > 0


@pytest.mark.parametrize(("alias", "dummy"), [("pro-preview", True), ("flash", False)])
def test_history_without_signatures_gets_the_dummy_on_gemini_3(
    alias: str, dummy: bool, gateway: Gateway, fake_vertex: FakeVertex, marker: str
) -> None:
    """A tool turn the client wrote itself (or another model made) has no signature to carry."""
    trace, headers = traced()
    messages: list[Any] = [
        {"role": "user", "content": f"weather in Paris? {marker}"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_handmade", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_handmade", "content": f"rainy {marker}"},
    ]
    with openai.OpenAI(
        api_key=API_KEYS["full"], base_url=gateway.base_url, max_retries=0, default_headers=headers
    ) as sdk:
        reply = sdk.chat.completions.create(model=alias, messages=messages, tools=[WEATHER_TOOL])  # type: ignore[arg-type]
    assert reply.choices[0].message.content == f"tool said: rainy {marker}"

    sent = first_call(fake_vertex.find(marker)[0])
    assert sent["id"] == "call_handmade"
    assert signature_of(sent) == (DUMMY if dummy else None)
    (line,) = lines_of(gateway, trace, 1)
    assert line.get("thought_signatures") == ({"dummy": 1} if dummy else None)


def test_signed_answer_keeps_extra_content_for_clients_that_keep_it(
    gateway: Gateway, fake_vertex: FakeVertex, marker: str
) -> None:
    """A client that replays the whole message (extra_content and the carried id) works too."""
    with openai.OpenAI(api_key=API_KEYS["full"], base_url=gateway.base_url, max_retries=0) as sdk:
        messages: list[Any] = [{"role": "user", "content": f"weather? {marker}"}]
        first = sdk.chat.completions.create(model="pro-preview", messages=messages, tools=[WEATHER_TOOL])  # type: ignore[arg-type]
        call = first.choices[0].message.tool_calls[0]  # type: ignore[index]
        issued = fake_vertex.find(marker)[0].issued_signature
        assert call.model_dump()["extra_content"]["google"]["thought_signature"] == issued
        assert split(call.id)[1] == issued
        messages.append(first.choices[0].message.model_dump(exclude_none=True))
        messages.append({"role": "tool", "tool_call_id": call.id, "content": f"sunny {marker}"})
        second = sdk.chat.completions.create(model="pro-preview", messages=messages, tools=[WEATHER_TOOL])  # type: ignore[arg-type]
    assert second.choices[0].message.content == f"tool said: sunny {marker}"
    replayed = first_call(fake_vertex.find(marker)[1])
    assert replayed["id"] == split(call.id)[0] and signature_of(replayed) == issued
