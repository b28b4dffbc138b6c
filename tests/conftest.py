"""Shared fixtures: the fakes (one per session) and gateway processes in front of them."""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable, Iterator

import openai
import pytest

from tests.fakes.metadata import FakeMetadata
from tests.fakes.vertex import FakeVertex
from tests.harness import Gateway, start_gateway

PROJECT = "test-project"
LOCATION = "global"


def _key(name: str) -> str:
    # Random per session, so a key found in a log or upstream can only have come from a test.
    return f"gwk-{name}-{secrets.token_urlsafe(24)}"


API_KEYS = {
    "full": _key("full"),
    "flash_only": _key("flash-only"),
    "disabled": _key("disabled"),
    "expired": _key("expired"),
    "hashed": _key("hashed"),
}
KEY_IDS = {
    "full": "team-full",
    "flash_only": "team-flash",
    "disabled": "team-disabled",
    "expired": "team-expired",
    "hashed": "team-hashed",
}
KEY_DOCUMENT = [
    {"id": KEY_IDS["full"], "key": API_KEYS["full"], "enabled": True, "created": "2026-01-01T00:00:00Z"},
    {"id": KEY_IDS["flash_only"], "key": API_KEYS["flash_only"], "enabled": True, "models": ["flash"]},
    {"id": KEY_IDS["disabled"], "key": API_KEYS["disabled"], "enabled": False},
    {"id": KEY_IDS["expired"], "key": API_KEYS["expired"], "enabled": True, "expires": "2020-01-01T00:00:00Z"},
    {
        "id": KEY_IDS["hashed"],
        "sha256": hashlib.sha256(API_KEYS["hashed"].encode()).hexdigest(),
        "enabled": True,
        "expires": "2999-01-01T00:00:00Z",
    },
]
ALIASES = {"flash": "google/gemini-2.5-flash", "pro-preview": "google/gemini-3.1-pro-preview"}
CHAT_UPSTREAM_PATH = f"/v1/projects/{PROJECT}/locations/{LOCATION}/endpoints/openapi/chat/completions"


@pytest.fixture(scope="session")
def valid_tokens() -> set[str]:
    return set()


@pytest.fixture(scope="session")
def fake_metadata(valid_tokens: set[str]) -> Iterator[FakeMetadata]:
    with FakeMetadata(valid_tokens) as fake:
        yield fake


@pytest.fixture(scope="session")
def fake_vertex(valid_tokens: set[str]) -> Iterator[FakeVertex]:
    with FakeVertex(valid_tokens) as fake:
        yield fake


@pytest.fixture(scope="session")
def gateway_env(fake_vertex: FakeVertex, fake_metadata: FakeMetadata) -> dict[str, str | None]:
    """The environment of a gateway wired to the fakes (tests copy and extend it)."""
    return {
        "GOOGLE_CLOUD_PROJECT": PROJECT,
        "VERTEX_LOCATION": LOCATION,
        "VERTEX_BASE_URL": fake_vertex.url,
        "GCE_METADATA_HOST": fake_metadata.host_port,
        "GCE_METADATA_IP": fake_metadata.host_port,
        "API_KEYS_JSON": json.dumps(KEY_DOCUMENT),
        "LOG_LEVEL": "INFO",
    }


@pytest.fixture(scope="session")
def gateway(gateway_env: dict[str, str | None]) -> Iterator[Gateway]:
    """One gateway process (one worker) with default settings, shared by the session."""
    gw = start_gateway(gateway_env)
    yield gw
    code = gw.stop()
    assert code == 0, f"gateway exited {code} on SIGTERM; log: {gw.log_path}"


GatewayFactory = Callable[..., Gateway]


@pytest.fixture
def gateway_factory(gateway_env: dict[str, str | None]) -> Iterator[GatewayFactory]:
    """Start extra gateways with env overrides; all are stopped after the test."""
    started: list[Gateway] = []

    def make(env: dict[str, str | None] | None = None, **kwargs: object) -> Gateway:
        gw = start_gateway({**gateway_env, **(env or {})}, **kwargs)  # type: ignore[arg-type]
        started.append(gw)
        return gw

    yield make
    for gw in started:
        gw.stop()


@pytest.fixture
def api_keys() -> dict[str, str]:
    return dict(API_KEYS)


@pytest.fixture
def openai_client(gateway: Gateway) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(api_key=API_KEYS["full"], base_url=gateway.base_url, max_retries=0, timeout=60) as sdk:
        yield sdk


@pytest.fixture
def marker() -> str:
    """A unique string to tag one test's requests, found again with fake_vertex.find()."""
    return f"mark-{secrets.token_hex(8)}"
