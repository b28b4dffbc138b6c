"""Per-key limits in one worker: max_concurrent and rpm (issue 16, finding 12)."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

from app.errors import GatewayError
from app.key_ring import KeyRecord, parse_key_document
from app.limits import KeyLimits
from tests.fakes.vertex import FakeVertex
from tests.harness import Gateway, start_gateway


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def record(key_id: str = "k", rpm: int | None = None, max_concurrent: int | None = None) -> KeyRecord:
    return KeyRecord(key_id, True, None, None, rpm=rpm, max_concurrent=max_concurrent)


def retry_after(exc: GatewayError) -> int:
    [(name, value)] = exc.headers
    assert name == b"retry-after"
    return int(value)


def test_a_key_without_limits_holds_nothing() -> None:
    limits = KeyLimits()
    free = record()
    assert not free.limited
    for _ in range(10_000):
        assert limits.admit(free) is None
    assert limits._windows == {} and limits._inflight == {}


def test_max_concurrent_refuses_then_admits_after_a_release() -> None:
    limits = KeyLimits()
    key = record(max_concurrent=2)
    first, second = limits.admit(key), limits.admit(key)
    assert first is not None and second is not None
    with pytest.raises(GatewayError) as refused:
        limits.admit(key)
    assert refused.value.status == 429
    assert refused.value.code == "concurrency_limit_exceeded"
    assert "max_concurrent 2" in refused.value.message
    assert retry_after(refused.value) == 1
    first.release()
    first.release()  # a second release of the same lease changes nothing
    assert limits.inflight("k") == 1
    third = limits.admit(key)
    assert third is not None
    second.release()
    third.release()
    assert limits.inflight("k") == 0 and limits._inflight == {}


def test_keys_are_limited_separately() -> None:
    limits = KeyLimits()
    assert limits.admit(record("a", max_concurrent=1)) is not None
    assert limits.admit(record("b", max_concurrent=1)) is not None


def test_rpm_is_a_sliding_window_of_sixty_one_second_slots() -> None:
    clock = Clock(1000.25)
    limits = KeyLimits(clock)
    key = record(rpm=3)
    limits.admit(key)  # second 1000
    clock.now = 1020.5
    limits.admit(key)  # second 1020
    limits.admit(key)
    with pytest.raises(GatewayError) as refused:
        limits.admit(key)
    assert refused.value.code == "rate_limit_exceeded"
    assert "3 requests per minute" in refused.value.message
    # The request of second 1000 leaves the window when second 1060 begins: 39.5 s from now.
    assert retry_after(refused.value) == 40
    clock.now = 1059.99
    with pytest.raises(GatewayError):
        limits.admit(key)
    clock.now = 1060.0
    limits.admit(key)
    with pytest.raises(GatewayError) as again:
        limits.admit(key)
    # Now the two of second 1020 must leave: at 1080.
    assert retry_after(again.value) == 20


def test_refused_requests_do_not_count() -> None:
    clock = Clock(0.0)
    limits = KeyLimits(clock)
    key = record(rpm=1)
    limits.admit(key)
    for _ in range(100):
        with pytest.raises(GatewayError):
            limits.admit(key)
    clock.now = 60.0
    limits.admit(key)


def test_a_long_idle_gap_resets_the_window() -> None:
    clock = Clock(5.0)
    limits = KeyLimits(clock)
    key = record(rpm=2)
    limits.admit(key)
    limits.admit(key)
    clock.now = 5.0 + 3600
    limits.admit(key)
    limits.admit(key)


def test_retry_after_is_at_least_one_second() -> None:
    clock = Clock(10.0)
    limits = KeyLimits(clock)
    key = record(rpm=1)
    limits.admit(key)
    clock.now = 69.999
    with pytest.raises(GatewayError) as refused:
        limits.admit(key)
    assert retry_after(refused.value) == 1


def test_an_rpm_refusal_holds_no_concurrency_slot() -> None:
    clock = Clock(0.0)
    limits = KeyLimits(clock)
    key = record(rpm=1, max_concurrent=5)
    lease = limits.admit(key)
    assert lease is not None
    with pytest.raises(GatewayError):
        limits.admit(key)
    assert limits.inflight("k") == 1
    lease.release()
    assert limits.inflight("k") == 0


def test_changing_the_limit_in_a_reload_applies_to_the_same_window() -> None:
    clock = Clock(0.0)
    limits = KeyLimits(clock)
    for _ in range(3):
        limits.admit(record(rpm=3))
    with pytest.raises(GatewayError):
        limits.admit(record(rpm=3))
    limits.admit(record(rpm=4))  # the operator raised it; same id, same window


def test_limits_come_from_the_key_document() -> None:
    records, problems = parse_key_document(
        b'[{"id": "a", "key": "sk_live_aaaaaaaa", "rpm": 60, "max_concurrent": 2, "allow_resources": true},'
        b' {"id": "b", "key": "sk_live_bbbbbbbb"}]'
    )
    assert problems == []
    a, b = sorted(records.values(), key=lambda r: r.id)
    assert (a.rpm, a.max_concurrent, a.allow_resources, a.limited) == (60, 2, True, True)
    assert (b.rpm, b.max_concurrent, b.allow_resources, b.limited) == (None, None, False, False)


# -- end to end: the real gateway process, the fake Vertex, the real SDKs ---------------------------

KEYS = {name: f"gwk-{name}-{secrets.token_urlsafe(16)}" for name in ("one", "one_claude", "rpm", "rpm_claude", "free")}
E2E_KEYS = [
    {"id": "one-at-a-time", "key": KEYS["one"], "max_concurrent": 1},
    {"id": "one-at-a-time-claude", "key": KEYS["one_claude"], "max_concurrent": 1},
    {"id": "two-a-minute", "key": KEYS["rpm"], "rpm": 2},
    {"id": "two-a-minute-claude", "key": KEYS["rpm_claude"], "rpm": 2},
    {"id": "unlimited", "key": KEYS["free"]},
]
E2E_ALIASES = {"flash": "google/gemini-2.5-flash", "sonnet": "anthropic/claude-sonnet-4-6"}


@pytest.fixture(scope="module")
def limited_gateway(gateway_env: dict[str, str | None]) -> Iterator[Gateway]:
    gw = start_gateway({**gateway_env, "API_KEYS_JSON": json.dumps(E2E_KEYS), "MODEL_ALIASES": json.dumps(E2E_ALIASES)})
    yield gw
    assert gw.stop() == 0, f"gateway log: {gw.log_path}"


def held_stream_body(marker: str) -> dict[str, Any]:
    # The fake sends one event, then waits for the test to open the gate named `marker`.
    return {"fake": {"chunks": 3, "gate": marker, "gate_after": 1, "gate_timeout": 20}}


def chat(sdk: openai.OpenAI, marker: str) -> str | None:
    reply = sdk.chat.completions.create(model="flash", messages=[{"role": "user", "content": f"hi {marker}"}])
    return reply.choices[0].message.content


def eventually(check: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except (openai.RateLimitError, anthropic.RateLimitError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.mark.e2e
def test_max_concurrent_one_refuses_a_second_stream_until_the_first_ends(
    limited_gateway: Gateway, fake_vertex: FakeVertex, marker: str
) -> None:
    with openai.OpenAI(api_key=KEYS["one"], base_url=limited_gateway.base_url, max_retries=0, timeout=30) as sdk:
        stream = sdk.chat.completions.create(
            model="flash",
            messages=[{"role": "user", "content": f"long {marker}"}],
            stream=True,
            extra_body=held_stream_body(marker),
        )
        chunks = iter(stream)
        next(chunks)  # the first stream is in flight, held open by the fake
        with pytest.raises(openai.RateLimitError) as refused:
            sdk.chat.completions.create(
                model="flash", messages=[{"role": "user", "content": f"second {marker}"}], stream=True
            )
        assert refused.value.status_code == 429
        assert refused.value.response.headers["retry-after"] == "1"
        body = refused.value.body
        assert isinstance(body, dict)
        assert body["type"] == "rate_limit_error" and body["code"] == "concurrency_limit_exceeded"
        assert "max_concurrent 1" in body["message"]
        assert len(fake_vertex.find(marker)) == 1  # the refused one never reached Vertex
        # Another key is not affected.
        with openai.OpenAI(api_key=KEYS["free"], base_url=limited_gateway.base_url, max_retries=0) as other:
            assert chat(other, marker)
        fake_vertex.open_gate(marker)
        rest = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert rest
        # The slot is given back when the stream ends.
        assert chat(sdk, marker)


@pytest.mark.e2e
def test_a_client_that_hangs_up_mid_stream_gives_its_slot_back(
    limited_gateway: Gateway, fake_vertex: FakeVertex, marker: str
) -> None:
    with anthropic.Anthropic(api_key=KEYS["one_claude"], base_url=limited_gateway.url, max_retries=0) as claude:
        stream = claude.messages.create(
            model="sonnet",
            max_tokens=64,
            messages=[{"role": "user", "content": f"long {marker}"}],
            stream=True,
            extra_body=held_stream_body(marker),
        )
        next(iter(stream))
        with pytest.raises(anthropic.RateLimitError) as refused:
            claude.messages.create(model="sonnet", max_tokens=64, messages=[{"role": "user", "content": "again"}])
        body = refused.value.body
        assert isinstance(body, dict) and body["type"] == "error"
        assert body["error"]["type"] == "rate_limit_error"
        assert refused.value.response.headers["retry-after"] == "1"
        stream.close()  # hang up while the fake still holds the stream open
        reply = eventually(
            lambda: claude.messages.create(
                model="sonnet", max_tokens=64, messages=[{"role": "user", "content": f"after {marker}"}]
            )
        )
        assert reply.content[0].type == "text"
    fake_vertex.open_gate(marker)


@pytest.mark.e2e
def test_rpm_exceeded_is_a_429_with_retry_after_in_the_openai_shape(
    limited_gateway: Gateway, fake_vertex: FakeVertex, marker: str
) -> None:
    with openai.OpenAI(api_key=KEYS["rpm"], base_url=limited_gateway.base_url, max_retries=0) as sdk:
        assert chat(sdk, marker) and chat(sdk, marker)
        with pytest.raises(openai.RateLimitError) as refused:
            chat(sdk, marker)
    wait = int(refused.value.response.headers["retry-after"])
    assert 1 <= wait <= 60
    body = refused.value.body
    assert isinstance(body, dict)
    assert body["type"] == "rate_limit_error" and body["code"] == "rate_limit_exceeded"
    assert "2 requests per minute" in body["message"]
    assert len(fake_vertex.find(marker)) == 2
    line = limited_gateway.wait_for_log(
        lambda e: e.get("key_id") == "two-a-minute" and e.get("httpRequest", {}).get("status") == 429
    )
    assert line["severity"] == "WARNING"


@pytest.mark.e2e
def test_rpm_exceeded_is_a_429_with_retry_after_in_the_anthropic_shape(
    limited_gateway: Gateway, fake_vertex: FakeVertex, marker: str
) -> None:
    with anthropic.Anthropic(api_key=KEYS["rpm_claude"], base_url=limited_gateway.url, max_retries=0) as claude:

        def ask() -> Any:
            return claude.messages.create(
                model="sonnet", max_tokens=64, messages=[{"role": "user", "content": f"hi {marker}"}]
            )

        ask()
        ask()
        with pytest.raises(anthropic.RateLimitError) as refused:
            ask()
    assert 1 <= int(refused.value.response.headers["retry-after"]) <= 60
    body = refused.value.body
    assert isinstance(body, dict) and body["type"] == "error"
    assert body["error"]["type"] == "rate_limit_error"
    assert "requests per minute" in body["error"]["message"]
    assert len(fake_vertex.find(marker)) == 2
