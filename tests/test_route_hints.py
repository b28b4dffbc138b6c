"""404s that name the base URL a client should have used, in the shape that client reads."""

import anthropic
import openai
import pytest

from app.errors import Shape
from app.route_hints import not_found, shape_for
from tests.conftest import API_KEYS
from tests.harness import Gateway

BASE = "https://gw.example.com"


@pytest.mark.parametrize(
    ("path", "shape", "says"),
    [
        ("/v1/v1/messages", Shape.ANTHROPIC, f"ANTHROPIC_BASE_URL={BASE})"),
        ("/v1/v1/messages/count_tokens", Shape.ANTHROPIC, "/v1 twice"),
        ("/v1/v1/chat/completions", Shape.OPENAI, f"base_url is {BASE}/v1, once"),
        ("/messages", Shape.ANTHROPIC, f"use {BASE}/v1/messages"),
        ("/chat/completions", Shape.OPENAI, f"base_url is {BASE}/v1"),
        ("/models", Shape.OPENAI, f"base_url is {BASE}/v1"),
        ("/embeddings", Shape.OPENAI, f"base_url is {BASE}/v1"),
        ("/v1/embeddings/", Shape.OPENAI, "no trailing slash: use /v1/embeddings"),
        ("/v1/responses", Shape.OPENAI, "OpenAIChatCompletionsModel"),
        ("/v1/messages/", Shape.ANTHROPIC, "no trailing slash: use /v1/messages"),
        ("/docs/", Shape.OPENAI, "no trailing slash: use /docs"),
        ("/v2/whatever", Shape.OPENAI, "/v1/embeddings, /v1/models"),
    ],
)
def test_not_found_names_the_fix(path: str, shape: Shape, says: str) -> None:
    assert shape_for(path) is shape
    error = not_found("POST", path, BASE)
    assert error.status == 404 and error.code == "not_found"
    assert says in error.message


def test_openai_sdk_without_v1_is_told_its_base_url(gateway: Gateway) -> None:
    sdk = openai.OpenAI(api_key=API_KEYS["full"], base_url=gateway.url, max_retries=0)
    with sdk, pytest.raises(openai.NotFoundError) as raised:
        sdk.chat.completions.create(model="flash", messages=[{"role": "user", "content": "hi"}])
    assert f"base_url is {gateway.url}/v1" in raised.value.message


def test_anthropic_sdk_with_v1_is_told_its_base_url(gateway: Gateway) -> None:
    sdk = anthropic.Anthropic(api_key=API_KEYS["full"], base_url=gateway.url + "/v1", max_retries=0)
    with pytest.raises(anthropic.NotFoundError) as raised:
        sdk.messages.create(model="sonnet", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert raised.value.body["type"] == "error"  # type: ignore[index]
    assert f"ANTHROPIC_BASE_URL={gateway.url}" in str(raised.value)
