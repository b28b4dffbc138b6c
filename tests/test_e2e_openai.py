"""End to end: the gateway as a gunicorn process, driven by the official SDKs (issue 2)."""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import socket
import subprocess
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from app.thought_signatures import split
from tests.conftest import ALIASES, API_KEYS, CHAT_UPSTREAM_PATH, KEY_IDS, PROJECT, GatewayFactory
from tests.fakes.metadata import FakeMetadata
from tests.fakes.vertex import FakeVertex, Recorded
from tests.harness import Gateway

pytestmark = pytest.mark.e2e

BOTH = pytest.mark.parametrize("alias", ["flash", "pro-preview"])
NODE_DIR = Path(__file__).parent / "node"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def only(records: list[Recorded]) -> Recorded:
    assert len(records) == 1, f"expected one upstream request, got {len(records)}"
    return records[0]


def assert_forwarded(rec: Recorded, alias: str, fake_metadata: FakeMetadata) -> None:
    assert rec.path == CHAT_UPSTREAM_PATH
    assert rec.json["model"] == ALIASES[alias]
    auth = rec.header("Authorization") or ""
    assert auth.removeprefix("Bearer ") in fake_metadata.issued, "upstream must see the service account token"


# -- the openai Python SDK ----------------------------------------------------


@BOTH
def test_sync_chat(
    alias: str, openai_client: openai.OpenAI, fake_vertex: FakeVertex, fake_metadata: FakeMetadata, marker: str
) -> None:
    reply = openai_client.chat.completions.create(model=alias, messages=[{"role": "user", "content": f"hi {marker}"}])
    assert reply.choices[0].message.content == f"echo: hi {marker}"
    assert reply.model == ALIASES[alias]
    assert (
        reply.usage is not None
        and reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    )
    assert_forwarded(only(fake_vertex.find(marker)), alias, fake_metadata)


@BOTH
def test_async_chat_and_stream(alias: str, gateway: Gateway, fake_vertex: FakeVertex, marker: str) -> None:
    async def scenario() -> tuple[str | None, list[str], Any]:
        async with openai.AsyncOpenAI(api_key=API_KEYS["full"], base_url=gateway.base_url, max_retries=0) as sdk:
            plain = await sdk.chat.completions.create(
                model=alias, messages=[{"role": "user", "content": f"a {marker}"}]
            )
            stream = await sdk.chat.completions.create(
                model=alias,
                messages=[{"role": "user", "content": f"s {marker}"}],
                stream=True,
                extra_body={"fake": {"chunks": 6}},
            )
            pieces, usage = [], None
            async for chunk in stream:
                usage = chunk.usage or usage
                if chunk.choices and chunk.choices[0].delta.content:
                    pieces.append(chunk.choices[0].delta.content)
            return plain.choices[0].message.content, pieces, usage

    text, pieces, usage = asyncio.run(scenario())
    assert text == f"echo: a {marker}"
    assert pieces == [f"echo: s {marker}", " #1", " #2", " #3", " #4", " #5"]
    assert usage is not None and usage.completion_tokens > 0
    assert [r.json.get("stream") for r in fake_vertex.find(marker)] == [None, True]


def test_sync_stream_reports_usage_and_done(openai_client: openai.OpenAI, marker: str) -> None:
    with openai_client.chat.completions.create(
        model="flash", messages=[{"role": "user", "content": marker}], stream=True
    ) as stream:
        chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0


@BOTH
def test_tool_calls_multi_turn_keep_thought_signature(
    alias: str, openai_client: openai.OpenAI, fake_vertex: FakeVertex, marker: str
) -> None:
    messages: list[dict[str, Any]] = [{"role": "user", "content": f"weather in Paris? {marker}"}]
    first = openai_client.chat.completions.create(model=alias, messages=messages, tools=[WEATHER_TOOL])
    message = first.choices[0].message
    assert first.choices[0].finish_reason == "tool_calls" and message.tool_calls
    call = message.tool_calls[0]
    assert call.id.startswith("call_") and call.function.name == "get_weather"
    issued = only(fake_vertex.find(marker)).issued_signature
    assert issued and call.model_dump()["extra_content"]["google"]["thought_signature"] == issued

    messages.append(message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": f"sunny {marker}"})
    second = openai_client.chat.completions.create(model=alias, messages=messages, tools=[WEATHER_TOOL])
    assert second.choices[0].message.content == f"tool said: sunny {marker}"

    replayed = fake_vertex.find(marker)[-1].json["messages"][1]
    # The client saw the id with the signature carried in it; Vertex gets back the id it issued.
    assert replayed["tool_calls"][0]["id"] == split(call.id)[0]
    assert replayed["tool_calls"][0]["extra_content"]["google"]["thought_signature"] == issued


def test_streamed_tool_call_carries_signature(
    openai_client: openai.OpenAI, fake_vertex: FakeVertex, marker: str
) -> None:
    with openai_client.chat.completions.create(
        model="pro-preview", messages=[{"role": "user", "content": marker}], tools=[WEATHER_TOOL], stream=True
    ) as stream:
        deltas = [c.choices[0].delta for c in stream if c.choices and c.choices[0].delta.tool_calls]
    head = deltas[0].tool_calls[0].model_dump()
    assert head["function"]["name"] == "get_weather"
    assert head["extra_content"]["google"]["thought_signature"] == only(fake_vertex.find(marker)).issued_signature
    arguments = "".join(d.tool_calls[0].function.arguments or "" for d in deltas)
    assert json.loads(arguments) == {"city": "Paris"}


# -- auth styles and keys -----------------------------------------------------


async def raw_post(url: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, Any]:
    data = json.dumps(body).encode()
    # aiohttp warns when asked to send megabytes of raw bytes in one write.
    payload = io.BytesIO(data) if len(data) > 1024 * 1024 else data
    sent = {"Content-Type": "application/json", **headers}
    async with aiohttp.ClientSession() as session, session.post(url, data=payload, headers=sent) as response:
        text = await response.text()
        try:
            return response.status, json.loads(text)
        except ValueError:
            return response.status, text


@pytest.mark.parametrize("key_name", ["full", "hashed", "flash_only"])
def test_x_api_key_header_alone(key_name: str, gateway: Gateway, fake_vertex: FakeVertex, marker: str) -> None:
    body = {"model": "flash", "messages": [{"role": "user", "content": marker}]}
    status, reply = asyncio.run(
        raw_post(gateway.base_url + "/chat/completions", body, {"x-api-key": API_KEYS[key_name]})
    )
    assert status == 200, reply
    assert reply["choices"][0]["message"]["content"] == f"echo: {marker}"
    assert only(fake_vertex.find(marker)).header("x-api-key") is None


def test_bearer_with_sha256_only_key(gateway: Gateway, marker: str) -> None:
    with openai.OpenAI(api_key=API_KEYS["hashed"], base_url=gateway.base_url, max_retries=0) as sdk:
        reply = sdk.chat.completions.create(model="pro-preview", messages=[{"role": "user", "content": marker}])
    assert reply.choices[0].message.content == f"echo: {marker}"


# -- models -------------------------------------------------------------------


def test_models_list_and_retrieve(openai_client: openai.OpenAI, gateway: Gateway) -> None:
    listed = {m.id: m for m in openai_client.models.list()}
    for alias, vertex_id in ALIASES.items():
        entry = listed[alias]
        assert entry.object == "model"
        assert entry.model_dump()["vertex_id"] == vertex_id
        assert isinstance(entry.created, int) and isinstance(entry.owned_by, str)
    one = openai_client.models.retrieve("pro-preview")
    assert one.id == "pro-preview" and one.model_dump()["vertex_id"] == ALIASES["pro-preview"]
    with pytest.raises(openai.NotFoundError):
        openai_client.models.retrieve("no-such-model")

    async def raw() -> tuple[int, Any]:
        headers = {"x-api-key": API_KEYS["full"]}
        async with aiohttp.ClientSession() as session, session.get(gateway.base_url + "/models", headers=headers) as r:
            return r.status, await r.json()

    status, body = asyncio.run(raw())
    assert status == 200 and body["object"] == "list" and isinstance(body["data"], list)


# -- the OpenAI Agents SDK ----------------------------------------------------


@BOTH
def test_agents_sdk_runs_a_function_tool(alias: str, gateway: Gateway, fake_vertex: FakeVertex, marker: str) -> None:
    from agents import Agent, OpenAIChatCompletionsModel, Runner, function_tool, set_tracing_disabled

    set_tracing_disabled(True)
    calls: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """Weather for a city."""
        calls.append(city)
        return f"sunny in {city} {marker}"

    async def scenario() -> str:
        async with openai.AsyncOpenAI(api_key=API_KEYS["full"], base_url=gateway.base_url, max_retries=0) as sdk:
            agent = Agent(
                name="weather",
                instructions="Answer with the tool.",
                model=OpenAIChatCompletionsModel(model=alias, openai_client=sdk),
                tools=[get_weather],
            )
            result = await Runner.run(agent, f"Weather in Paris? {marker}", max_turns=4)
            return str(result.final_output)

    assert asyncio.run(scenario()) == f"tool said: sunny in Paris {marker}"
    assert calls == ["Paris"]
    upstream = fake_vertex.find(marker)
    assert len(upstream) == 2 and all(r.json["model"] == ALIASES[alias] for r in upstream)


# -- the Node SDK -------------------------------------------------------------


@pytest.mark.node
@BOTH
def test_node_openai_sdk(alias: str, gateway: Gateway, fake_vertex: FakeVertex, marker: str) -> None:
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node and npm, "Node.js and npm are required (tests/node)"
    if not (NODE_DIR / "node_modules" / "openai").is_dir():
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, check=True, timeout=300, capture_output=True
        )
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "GATEWAY_BASE_URL": gateway.base_url,
        "GATEWAY_API_KEY": API_KEYS["full"],
        "MODEL": alias,
        "MARKER": marker,
    }
    done = subprocess.run(
        [node, "chat.mjs"], cwd=NODE_DIR, env=env, capture_output=True, text=True, timeout=90, check=False
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["plain"] == f"echo: hello from node {marker}"
    assert out["stream"] == [f"echo: stream from node {marker}", " #1", " #2", " #3"]
    assert out["toolName"] == "lookup" and out["toolArguments"] == {"query": "Paris"}
    assert out["afterTool"] == f"tool said: found it {marker}"
    assert {"id": alias, "vertex_id": ALIASES[alias]} in out["models"]
    issued = [r.issued_signature for r in fake_vertex.find(marker) if r.issued_signature]
    assert out["signature"] == issued[0]
    replayed = fake_vertex.find(marker)[-1].json["messages"][1]["tool_calls"][0]
    assert replayed["extra_content"]["google"]["thought_signature"] == issued[0]


# -- streaming behaviour ------------------------------------------------------


def test_stream_reaches_client_before_upstream_finishes(
    openai_client: openai.OpenAI, fake_vertex: FakeVertex, marker: str
) -> None:
    # The fake sends the role chunk and one content chunk, then holds the rest
    # until the test opens the gate: a buffering gateway delivers nothing first.
    controls = {"chunks": 5, "gate": marker, "gate_after": 2, "gate_timeout": 20, "stamp": True}
    received: list[Any] = []
    gate_open_at_first_content: bool | None = None
    with openai_client.chat.completions.create(
        model="flash", messages=[{"role": "user", "content": marker}], stream=True, extra_body={"fake": controls}
    ) as stream:
        for chunk in stream:
            received.append(chunk)
            if gate_open_at_first_content is None and chunk.choices and chunk.choices[0].delta.content:
                gate_open_at_first_content = fake_vertex.gate(marker).is_set()
                assert only(fake_vertex.find(marker)).events_sent == 2
                fake_vertex.open_gate(marker)
    assert gate_open_at_first_content is False, "the first chunk only arrived after the upstream was released"
    seqs = [c.model_dump()["fake_seq"] for c in received]
    assert seqs == sorted(seqs) == list(range(len(seqs))), "chunks reordered or dropped"
    text = "".join(c.choices[0].delta.content or "" for c in received if c.choices)
    assert text == f"echo: {marker} #1 #2 #3 #4"


def test_paced_stream_interleaves(gateway: Gateway, fake_vertex: FakeVertex, marker: str) -> None:
    # Each chunk must be readable while the upstream is still producing later ones.
    chunks = 12
    body = {
        "model": "flash",
        "stream": True,
        "messages": [{"role": "user", "content": marker}],
        "fake": {"chunks": chunks, "delay": 0.1},
    }

    async def scenario() -> list[int]:
        sent_when_received: list[int] = []
        headers = {"Authorization": f"Bearer {API_KEYS['full']}"}
        url = gateway.base_url + "/chat/completions"
        async with aiohttp.ClientSession() as session, session.post(url, json=body, headers=headers) as response:
            assert response.status == 200
            assert "content-length" not in response.headers
            async for line in response.content:
                if line.startswith(b"data: {"):
                    sent_when_received.append(only(fake_vertex.find(marker)).events_sent)
        return sent_when_received

    sent = asyncio.run(scenario())
    total = chunks + 2  # role chunk, content chunks, final chunk
    assert len(sent) == total
    assert sent[0] < total, "first chunk arrived only after the upstream sent everything"


def test_200_concurrent_streams_one_worker(gateway: Gateway, fake_vertex: FakeVertex, marker: str) -> None:
    count = 200

    async def one(session: aiohttp.ClientSession, i: int) -> str:
        body = {
            "model": "flash" if i % 2 else "pro-preview",
            "stream": True,
            "messages": [{"role": "user", "content": f"{marker} n{i}"}],
            "fake": {"chunks": 8, "delay": 0.05},
        }
        text = ""
        async with session.post(gateway.base_url + "/chat/completions", json=body) as response:
            assert response.status == 200
            async for line in response.content:
                if line.startswith(b"data: {"):
                    delta = json.loads(line[6:])["choices"][0]["delta"]
                    text += delta.get("content") or ""
                elif line.strip() == b"data: [DONE]":
                    text += "|done"
        return text

    async def scenario() -> list[str]:
        connector = aiohttp.TCPConnector(limit=0)
        headers = {"x-api-key": API_KEYS["full"]}
        async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
            return await asyncio.wait_for(asyncio.gather(*(one(session, i) for i in range(count))), 90)

    texts = asyncio.run(scenario())
    assert texts == [f"echo: {marker} n{i} #1 #2 #3 #4 #5 #6 #7|done" for i in range(count)]
    upstream = fake_vertex.find(marker)
    assert len(upstream) == count and not any(r.disconnected or r.aborted for r in upstream)


# -- passthrough and secrecy --------------------------------------------------


def test_unknown_fields_reach_upstream_unchanged(
    openai_client: openai.OpenAI, fake_vertex: FakeVertex, marker: str
) -> None:
    body: dict[str, Any] = {
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": marker}], "x_note": {"keep": [1, 2.5, None, "é"]}},
        ],
        "reasoning_effort": "low",
        "google": {"thinking_config": {"thinking_budget": 128, "include_thoughts": True}},
        "extra_content": {"google": {"thought_signature": "c2lnbmF0dXJl+/=="}},
        "temperature": 0.25,
        "max_completion_tokens": 77,
        "stream_options": None,
    }
    openai_client.chat.completions.create(
        model="flash",
        **{k: body[k] for k in ("messages", "temperature")},
        extra_body={k: v for k, v in body.items() if k not in ("messages", "temperature")},
    )
    upstream = only(fake_vertex.find(marker)).json
    assert upstream == {**body, "model": ALIASES["flash"]}


def test_client_credentials_and_cookies_never_forwarded(gateway: Gateway, fake_vertex: FakeVertex, marker: str) -> None:
    body = {"model": "flash", "messages": [{"role": "user", "content": marker}]}
    headers = {
        "Authorization": f"Bearer {API_KEYS['full']}",
        "x-api-key": API_KEYS["full"],
        "Cookie": f"session={marker}-cookie",
        "Proxy-Authorization": "Basic Zm9vOmJhcg==",
        "x-goog-api-key": "client-google-key",
    }
    status, _ = asyncio.run(raw_post(gateway.base_url + "/chat/completions", body, headers))
    assert status == 200
    rec = only(fake_vertex.find(marker))
    names = {k.lower() for k, _ in rec.headers}
    assert not names & {"cookie", "x-api-key", "proxy-authorization", "x-goog-api-key"}
    assert (rec.header("Authorization") or "").removeprefix("Bearer ") not in API_KEYS.values()


def test_project_from_metadata_when_unset(
    gateway_factory: GatewayFactory, fake_vertex: FakeVertex, marker: str
) -> None:
    gw = gateway_factory({"GOOGLE_CLOUD_PROJECT": None})
    with openai.OpenAI(api_key=API_KEYS["full"], base_url=gw.base_url, max_retries=0) as sdk:
        sdk.chat.completions.create(model="flash", messages=[{"role": "user", "content": marker}])
    assert only(fake_vertex.find(marker)).path == CHAT_UPSTREAM_PATH.replace(PROJECT, "fake-project")


# -- logs ---------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_one_structured_log_line_per_request(
    stream: bool, gateway: Gateway, fake_vertex: FakeVertex, marker: str
) -> None:
    trace = uuid.uuid4().hex
    headers = {"X-Cloud-Trace-Context": f"{trace}/1234;o=1"}
    with openai.OpenAI(
        api_key=API_KEYS["flash_only"], base_url=gateway.base_url, max_retries=0, default_headers=headers
    ) as sdk:
        if stream:
            with sdk.chat.completions.create(
                model="flash", messages=[{"role": "user", "content": marker}], stream=True
            ) as s:
                list(s)
        else:
            sdk.chat.completions.create(model="flash", messages=[{"role": "user", "content": marker}])
    want = f"projects/{PROJECT}/traces/{trace}"
    entry = gateway.wait_for_log(lambda e: e.get("logging.googleapis.com/trace") == want)
    assert len([e for e in gateway.json_logs() if e.get("logging.googleapis.com/trace") == want]) == 1
    assert entry["severity"] == "INFO"
    http = entry["httpRequest"]
    assert http["requestMethod"] == "POST" and http["status"] == 200
    assert http["requestUrl"].endswith("/v1/chat/completions")
    assert entry["key_id"] == KEY_IDS["flash_only"]
    assert entry["alias"] == "flash" and entry["vertex_model"] == ALIASES["flash"]
    assert entry["stream"] is stream
    assert entry["latency_ms"] >= entry["ttfb_ms"] > 0
    expected = only(fake_vertex.find(marker))
    assert expected.status == 200
    usage = entry["usage"]
    assert usage.get("input_tokens", usage.get("prompt_tokens")) > 0
    assert usage.get("output_tokens", usage.get("completion_tokens")) > 0


def test_no_client_key_upstream_or_in_logs(
    gateway: Gateway, fake_vertex: FakeVertex, openai_client: openai.OpenAI, marker: str
) -> None:
    # Runs after the tests above in this module, so it covers their traffic too.
    openai_client.chat.completions.create(model="flash", messages=[{"role": "user", "content": marker}])
    for name in ("disabled", "expired", "hashed", "flash_only"):
        asyncio.run(
            raw_post(gateway.base_url + "/chat/completions", {"model": "pro-preview"}, {"x-api-key": API_KEYS[name]})
        )
    gateway.wait_for_log(
        lambda e: "httpRequest" in e and e.get("key_id") == KEY_IDS["flash_only"] and e["httpRequest"]["status"] == 403
    )
    secrets = [k.encode() for k in API_KEYS.values()]
    for rec in fake_vertex.requests:
        raw = rec.body + "\n".join(f"{k}: {v}" for k, v in rec.headers).encode()
        assert not any(s in raw for s in secrets), f"client key reached upstream: {rec.path}"
    text = "\n".join(gateway.lines()).encode()
    assert not any(s in text for s in secrets), "a client key appears in the gateway's output"


@pytest.mark.parametrize("size", [1_000, 70_000, 300_000, 5_000_000])
def test_large_prompts_pass(size: int, gateway: Gateway, fake_vertex: FakeVertex, marker: str) -> None:
    # Long conversations are normal; only the body limit (32 MiB) may refuse them.
    body = {"model": "flash", "messages": [{"role": "user", "content": marker + " " + "w" * size}]}
    status, reply = asyncio.run(raw_post(gateway.base_url + "/chat/completions", body, {"x-api-key": API_KEYS["full"]}))
    assert status == 200, reply
    assert len(only(fake_vertex.find(marker)).body) > size


def test_request_arriving_in_one_write_passes(gateway: Gateway, marker: str) -> None:
    # Headers and a 70 kB body in a single send, as a client with a big socket buffer does.
    body = json.dumps({"model": "flash", "messages": [{"role": "user", "content": marker + " " + "q" * 70_000}]})
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nConnection: close\r\nContent-Type: application/json\r\n"
        f"x-api-key: {API_KEYS['full']}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=30) as sock:
        sock.sendall(head.encode() + body.encode())
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
