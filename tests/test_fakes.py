"""The fakes themselves: real google-auth, aiohttp and openai clients against them."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator

import aiohttp
import openai
import pytest

from tests.fakes.metadata import FakeMetadata
from tests.fakes.vertex import FakeVertex

CHAT = "/v1/projects/p/locations/global/endpoints/openapi/chat/completions"
CLAUDE = "/v1/projects/p/locations/global/publishers/anthropic/models/claude-sonnet-4-6"

# google-auth reads GCE_METADATA_HOST at import: run it in a fresh interpreter.
ADC_SCRIPT = """
import json, google.auth, google.auth.transport.requests as tr
creds, project = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
creds.refresh(tr.Request())
first = creds.token
creds.refresh(tr.Request())
print(json.dumps({"project": project, "kind": type(creds).__module__, "tokens": [first, creds.token],
                  "email": creds.service_account_email}))
"""


@pytest.fixture
def tokens() -> set[str]:
    return set()


@pytest.fixture
def vertex(tokens: set[str]) -> Iterator[FakeVertex]:
    with FakeVertex(tokens) as fake:
        tokens.add("good")
        yield fake


@pytest.fixture
def metadata(tokens: set[str]) -> Iterator[FakeMetadata]:
    with FakeMetadata(tokens) as fake:
        yield fake


def run_adc(metadata: FakeMetadata) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory() as home:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": home,
            "CLOUDSDK_CONFIG": home,
            "GCE_METADATA_HOST": metadata.host_port,
            "GCE_METADATA_IP": metadata.host_port,
        }
        return subprocess.run(
            [sys.executable, "-c", ADC_SCRIPT],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


def test_google_auth_default_gets_tokens_from_fake_metadata(metadata: FakeMetadata, tokens: set[str]) -> None:
    done = run_adc(metadata)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["project"] == "fake-project"
    assert out["kind"] == "google.auth.compute_engine.credentials"
    assert out["email"] == metadata.email
    first, second = out["tokens"]
    assert first != second
    assert {first, second} <= tokens
    assert metadata.token_requests == 2


def test_fake_metadata_requires_flavor_header_and_can_go_down(
    metadata: FakeMetadata,
) -> None:
    async def get(headers: dict[str, str]) -> tuple[int, str | None]:
        async with aiohttp.ClientSession() as session:
            url = metadata.url + "/computeMetadata/v1/project/project-id"
            async with session.get(url, headers=headers) as response:
                return response.status, response.headers.get("Metadata-Flavor")

    assert asyncio.run(get({})) == (403, "Google")
    assert asyncio.run(get({"Metadata-Flavor": "Google"})) == (200, "Google")
    metadata.set_down("500")
    assert asyncio.run(get({"Metadata-Flavor": "Google"}))[0] == 500
    metadata.set_down("refuse")
    with pytest.raises(aiohttp.ClientConnectionError):
        asyncio.run(get({"Metadata-Flavor": "Google"}))
    metadata.set_down(None)
    assert asyncio.run(get({"Metadata-Flavor": "Google"})) == (200, "Google")


@pytest.fixture
def client(vertex: FakeVertex) -> Iterator[Callable[..., openai.OpenAI]]:
    made: list[openai.OpenAI] = []

    def make(token: str = "good") -> openai.OpenAI:
        # The fake speaks the OpenAI wire format under Vertex's path.
        base = vertex.url + CHAT.removesuffix("/chat/completions")
        made.append(openai.OpenAI(api_key=token, base_url=base, max_retries=0))
        return made[-1]

    yield make
    for sdk in made:
        sdk.close()


def test_openai_sdk_against_fake_vertex(vertex: FakeVertex, client: Callable[..., openai.OpenAI]) -> None:
    reply = client().chat.completions.create(
        model="google/gemini-2.5-flash",
        messages=[{"role": "user", "content": "hello fake"}],
    )
    assert reply.choices[0].message.content == "echo: hello fake"
    assert reply.usage is not None and reply.usage.total_tokens > 0
    assert vertex.requests[-1].header("Authorization") == "Bearer good"

    stream = client().chat.completions.create(
        model="google/gemini-2.5-flash",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        extra_body={"fake": {"chunks": 5}},
    )
    pieces = [c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content]
    assert "".join(pieces) == "echo: hi #1 #2 #3 #4"


def test_fake_vertex_rejects_bad_token_model_and_scripts_errors(
    vertex: FakeVertex, client: Callable[..., openai.OpenAI]
) -> None:
    with pytest.raises(openai.AuthenticationError) as auth:
        client("stolen").chat.completions.create(model="google/x", messages=[])
    assert auth.value.body is not None
    with pytest.raises(openai.BadRequestError):
        client().chat.completions.create(model="gemini-2.5-flash", messages=[])
    vertex.push({"status": 429, "retry_after": "7", "error_list": True})
    with pytest.raises(openai.RateLimitError) as limited:
        client().chat.completions.create(model="google/x", messages=[])
    assert limited.value.response.headers["retry-after"] == "7"
    assert limited.value.response.json()[0]["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert vertex.pending_scripts() == 0


def test_fake_vertex_tool_call_round_trip_records_signature(
    vertex: FakeVertex, client: Callable[..., openai.OpenAI]
) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "weather",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                },
            },
        }
    ]
    messages: list[dict] = [{"role": "user", "content": "weather?"}]
    first = client().chat.completions.create(model="google/x", messages=messages, tools=tools)
    call = first.choices[0].message.tool_calls[0]
    assert call.function.name == "weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    messages.append(first.choices[0].message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": "sunny"})
    second = client().chat.completions.create(model="google/x", messages=messages, tools=tools)
    assert second.choices[0].message.content == "tool said: sunny"
    assert vertex.signatures_returned == vertex.signatures_issued


def test_fake_vertex_detects_client_disconnect_and_dies_on_request(
    vertex: FakeVertex,
) -> None:
    async def scenario() -> None:
        async with aiohttp.ClientSession(headers={"Authorization": "Bearer good"}) as session:
            body = {
                "model": "google/x",
                "messages": [],
                "stream": True,
                "fake": {"chunks": 500, "delay": 0.02, "tag": "a"},
            }
            async with session.post(vertex.url + CHAT, json=body) as response:
                await response.content.readline()
            body["fake"] = {"die_after": 2, "tag": "b"}
            with pytest.raises(aiohttp.ClientPayloadError):
                async with session.post(vertex.url + CHAT, json=body) as response:
                    await response.read()

    asyncio.run(scenario())
    hung_up, died = vertex.find('"a"')[0], vertex.find('"b"')[0]
    assert hung_up.finished.wait(5) and hung_up.disconnected and hung_up.events_sent < 500
    assert died.aborted and died.events_sent == 2


def test_fake_vertex_claude_routes(vertex: FakeVertex) -> None:
    async def post(path: str, body: dict) -> tuple[int, str]:
        async with (
            aiohttp.ClientSession(headers={"Authorization": "Bearer good"}) as session,
            session.post(vertex.url + path, json=body) as response,
        ):
            return response.status, await response.text()

    good = {
        "anthropic_version": "vertex-2023-10-16",
        "max_tokens": 10,
        "messages": [{"role": "user", "content": "yo"}],
    }
    status, text = asyncio.run(post(CLAUDE + ":rawPredict", good))
    assert status == 200 and json.loads(text)["content"][0]["text"] == "echo: yo"
    assert asyncio.run(post(CLAUDE + ":rawPredict", {**good, "model": "claude"}))[0] == 400
    assert (
        asyncio.run(
            post(
                CLAUDE + ":rawPredict",
                {k: v for k, v in good.items() if k != "anthropic_version"},
            )
        )[0]
        == 400
    )
    status, text = asyncio.run(post(CLAUDE + ":streamRawPredict", {**good, "stream": True}))
    events = [line.removeprefix("event: ") for line in text.splitlines() if line.startswith("event: ")]
    assert events[0] == "message_start" and events[-2:] == ["message_delta", "message_stop"] and "ping" in events
    count_tokens = CLAUDE.rsplit("/", 1)[0] + "/count-tokens:rawPredict"
    counted = asyncio.run(post(count_tokens.replace("/global/", "/us-east5/"), {**good, "model": "claude-sonnet-4-6"}))
    assert counted[0] == 200 and json.loads(counted[1])["input_tokens"] > 0
    # Not served at `global`, as on Vertex.
    at_global = asyncio.run(post(count_tokens, {**good, "model": "claude-sonnet-4-6"}))
    assert at_global[0] == 404 and "NOT_FOUND" in at_global[1]
