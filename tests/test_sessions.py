"""End to end: a conversation's session header lands on every request line and never reaches Vertex (issue 13)."""

from __future__ import annotations

import anthropic
import openai
import pytest

from tests.conftest import API_KEYS
from tests.fakes.vertex import FakeVertex
from tests.harness import Gateway

pytestmark = pytest.mark.e2e


def lines_with(gateway: Gateway, session: str) -> list[dict[str, object]]:
    gateway.wait_for_log(lambda e: e.get("session") == session)
    return [e for e in gateway.request_logs() if e.get("session") == session]


def assert_not_forwarded(fake_vertex: FakeVertex, marker: str, session: str) -> None:
    records = fake_vertex.find(marker)
    assert records
    for rec in records:
        assert all(session not in value for _, value in rec.headers)
        assert rec.header("x-proxy-chat-session") is None


def test_openai_sdk_default_headers_name_the_session(gateway: Gateway, fake_vertex: FakeVertex, marker: str) -> None:
    session = f"conv-{marker}"
    headers = {"X-Proxy-Chat-Session": session}
    with openai.OpenAI(api_key=API_KEYS["full"], base_url=gateway.base_url, default_headers=headers) as client:
        for turn in ("one", "two"):
            client.chat.completions.create(model="flash", messages=[{"role": "user", "content": f"{turn} {marker}"}])
    lines = lines_with(gateway, session)
    assert len(lines) == 2 and {e["alias"] for e in lines} == {"flash"}
    assert_not_forwarded(fake_vertex, marker, session)


def test_anthropic_sdk_default_headers_name_the_session(gateway: Gateway, fake_vertex: FakeVertex, marker: str) -> None:
    session = f"conv-{marker}"
    with anthropic.Anthropic(
        api_key=API_KEYS["full"], base_url=gateway.url, default_headers={"X-Proxy-Chat-Session": session}
    ) as client:
        client.messages.create(model="flash", max_tokens=16, messages=[{"role": "user", "content": marker}])
    (line,) = lines_with(gateway, session)
    assert line["upstream_api"] == "gemini"
    assert_not_forwarded(fake_vertex, marker, session)


def test_a_hostile_session_value_is_bounded_and_sanitised(gateway: Gateway, marker: str) -> None:
    raw = f'{marker}" {{"severity":"CRITICAL"}} ' + "x" * 500
    with openai.OpenAI(
        api_key=API_KEYS["full"], base_url=gateway.base_url, default_headers={"X-Proxy-Chat-Session": raw}
    ) as client:
        client.models.list()
    entry = gateway.wait_for_log(lambda e: str(e.get("session", "")).startswith(marker))
    assert len(entry["session"]) == 128 and '"' not in entry["session"] and " " not in entry["session"]
