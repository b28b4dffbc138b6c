"""The rule for request fields that make Vertex read project resources (issue 16, finding 11)."""

from __future__ import annotations

import hashlib
import http.client
import json
import secrets
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import orjson
import pytest

from app.resources import find_reference, might_reference
from tests.fakes.vertex import FakeVertex
from tests.harness import Gateway, start_gateway


def image(url: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url}}


def chat(*parts: Any, **extra: Any) -> dict[str, Any]:
    return {
        "model": "flash",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}, *parts]}],
        **extra,
    }


def claude_image(source: dict[str, Any]) -> dict[str, Any]:
    return {"model": "sonnet", "messages": [{"role": "user", "content": [{"type": "image", "source": source}]}]}


REFUSED: list[tuple[str, dict[str, Any], str]] = [
    ("gs image", chat(image("gs://bucket/cat.png")), "messages[0].content[1].image_url.url"),
    ("upper-case scheme", chat(image("GS://bucket/cat.png")), "messages[0].content[1].image_url.url"),
    ("leading space", chat(image("  gs://bucket/cat.png")), "messages[0].content[1].image_url.url"),
    ("bigquery", chat(image("bq://project.dataset.table")), "messages[0].content[1].image_url.url"),
    (
        "gcs https host",
        chat(image("https://storage.googleapis.com/bucket/cat.png")),
        "messages[0].content[1].image_url.url",
    ),
    (
        "gcs virtual host",
        chat(image("https://bucket.storage.googleapis.com/cat.png")),
        "messages[0].content[1].image_url.url",
    ),
    (
        "gcs console host",
        chat(image("https://storage.cloud.google.com/bucket/cat.png")),
        "messages[0].content[1].image_url.url",
    ),
    (
        "image_url as a bare string",
        chat({"type": "image_url", "image_url": "gs://b/o"}),
        "messages[0].content[1].image_url",
    ),
    (
        "file part",
        chat({"type": "file", "file": {"file_data": "gs://bucket/doc.pdf", "filename": "doc.pdf"}}),
        "messages[0].content[1].file.file_data",
    ),
    (
        "claude url source",
        claude_image({"type": "url", "url": "gs://bucket/cat.png"}),
        "messages[0].content[0].source.url",
    ),
    (
        "cached_content in extra_body",
        chat(extra_body={"google": {"cached_content": "projects/p/locations/l/cachedContents/123"}}),
        "extra_body.google.cached_content",
    ),
    ("cachedContent short name", chat(cachedContent="cachedContents/123"), "cachedContent"),
    ("cached_content any value", chat(cached_content="abc"), "cached_content"),
    (
        "rag corpus",
        chat(
            tools=[
                {
                    "retrieval": {
                        "vertex_rag_store": {"rag_resources": [{"rag_corpus": "projects/p/locations/l/ragCorpora/1"}]}
                    }
                }
            ]
        ),
        "tools[0].retrieval.vertex_rag_store.rag_resources[0].rag_corpus",
    ),
    (
        "search datastore",
        chat(
            tools=[
                {
                    "retrieval": {
                        "vertex_ai_search": {
                            "datastore": "projects/p/locations/global/collections/default_collection/dataStores/d"
                        }
                    }
                }
            ]
        ),
        "tools[0].retrieval.vertex_ai_search.datastore",
    ),
    ("resource name with a leading slash", chat(x="/projects/p/locations/l/cachedContents/1"), "x"),
    ("string in a list", chat(urls=["https://example.com/a.png", "gs://b/o"]), "urls[1]"),
    ("odd key", chat(**{"my key": {"u": "gs://b/o"}}), "['my key'].u"),
    (
        "tool_result list content",
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "t1",
                            "content": [{"type": "image", "source": {"type": "url", "url": "gs://b/o.png"}}],
                        }
                    ],
                }
            ]
        },
        "messages[0].content[0].content[0].source.url",
    ),
]

PASSED: list[tuple[str, dict[str, Any]]] = [
    ("public https image", chat(image("https://example.com/cat.png"))),
    ("inline data url", chat(image("data:image/png;base64,iVBORw0KGgo="))),
    ("lookalike host", chat(image("https://storage.googleapis.com.example.com/x.png"))),
    ("lookalike host 2", chat(image("https://notstorage.googleapis.community/x.png"))),
    ("gs in prose", chat({"type": "text", "text": "copy gs://bucket/x to projects/p/locations/l"})),
    ("string content", {"messages": [{"role": "user", "content": "gs://bucket/x please"}]}),
    ("string system", {"system": "projects/p/locations/l/ragCorpora/1", "messages": []}),
    (
        "tool call arguments",
        {
            "messages": [
                {
                    "role": "assistant",
                    "tool_calls": [{"type": "function", "function": {"name": "cp", "arguments": '{"src":"gs://b/o"}'}}],
                }
            ]
        },
    ),
    (
        "tool_use input",
        {
            "messages": [
                {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "id": "t", "name": "cp", "input": {"src": "gs://b/o"}}],
                }
            ]
        },
    ),
    ("thinking", {"messages": [{"role": "assistant", "content": [{"type": "thinking", "thinking": "gs://b"}]}]}),
    (
        "tool schema",
        {
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": "read",
                        "description": "reads gs:// paths",
                        "parameters": {"type": "object", "properties": {"uri": {"default": "gs://b/o"}}},
                    },
                },
                {"name": "read", "input_schema": {"properties": {"cached_content": {"enum": ["gs://b/o"]}}}},
            ]
        },
    ),
    ("metadata", {"metadata": {"user_id": "projects/p/x"}}),
    ("stop sequences", {"stop": ["gs://"], "stop_sequences": ["projects/"]}),
    (
        "response schema",
        {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"default": "gs://b/o"}}}},
    ),
    ("claude text document", claude_image({"type": "text", "media_type": "text/plain", "data": "gs://b/o"})),
    ("empty cached_content", chat(cached_content="")),
    ("null cached_content", chat(cached_content=None)),
    ("unicode lookalike", chat(image("g\u017f://bucket/x"))),  # long s: Vertex would never read it as gs
    ("word projects", chat(x="projects are fun")),
]


@pytest.mark.parametrize(("name", "body", "path"), REFUSED, ids=[c[0] for c in REFUSED])
def test_references_are_found_with_their_path(name: str, body: dict[str, Any], path: str) -> None:
    raw = orjson.dumps(body)
    assert might_reference(raw), name
    found = find_reference(orjson.loads(raw))
    assert found is not None, name
    assert found[0] == path


@pytest.mark.parametrize(("name", "body"), PASSED, ids=[c[0] for c in PASSED])
def test_prose_inline_data_and_public_urls_pass(name: str, body: dict[str, Any]) -> None:
    assert find_reference(orjson.loads(orjson.dumps(body))) is None, name


@pytest.mark.parametrize(
    "raw",
    [
        b'{"messages":[{"content":[{"type":"image_url","image_url":{"url":"gs:\\/\\/bucket\\/o"}}]}]}',
        b'{"messages":[{"content":[{"type":"image_url","image_url":{"url":"\\u0067s://bucket/o"}}]}]}',
        b'{"messages":[{"content":[{"type":"image_url","image_url":{"url":"\\u0047\\u0053://bucket/o"}}]}]}',
        b'{"cached\\u005fcontent":"x"}',
        b'{"x":"proj\\u0065cts/p/locations/l/cachedContents/1"}',
        b'{"x":"https://STORAGE.googleapis.com/b/o"}',
    ],
)
def test_json_escapes_cannot_hide_a_reference_from_the_pre_check(raw: bytes) -> None:
    assert might_reference(raw)
    assert find_reference(json.loads(raw)) is not None


def test_the_common_request_skips_the_walk() -> None:
    body = orjson.dumps(chat(stream=True, temperature=0.2, messages=[{"role": "user", "content": "Hi, how are you?"}]))
    assert not might_reference(body)
    multi_line = orjson.dumps({"messages": [{"role": "user", "content": 'line one\nline two \u00e9 "quoted"'}]})
    assert b"\\n" in multi_line and not might_reference(multi_line)
    # A slash anywhere (a URL, base64) means the walk runs, and finds nothing to refuse.
    with_url = chat(image("https://example.com/cat.png"))
    assert might_reference(orjson.dumps(with_url)) and find_reference(with_url) is None
    claude = orjson.dumps(
        {"model": "sonnet", "max_tokens": 100, "system": "Be brief.", "messages": [{"role": "user", "content": "Hi"}]}
    )
    assert not might_reference(claude)


def test_deep_nesting_is_walked_without_recursion() -> None:
    body: Any = "gs://bucket/o"
    for _ in range(100_000):
        body = {"a": [body]}
    found = find_reference(body)
    assert found is not None and found[0].endswith("a[0]") and found[0].startswith("…")


def test_a_large_clean_conversation_is_walked_quickly() -> None:
    # What Claude Code sends: many turns, escapes everywhere (so the pre-check walks it).
    turn = [
        {"role": "user", "content": [{"type": "text", "text": "é see https://x \u001b[0m " * 20}]},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "t", "name": "Bash", "input": {"command": "ls gs://b"}}],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "out " * 50}]},
    ]
    body = {"model": "sonnet", "messages": turn * 300}
    start = time.perf_counter()
    assert find_reference(body) is None
    assert time.perf_counter() - start < 0.25  # ~2 ms here; generous for a shared CI machine


# -- end to end: the real gateway process, the fake Vertex, the real SDKs ---------------------------

DEFAULT_KEY = f"gwk-plain-{secrets.token_urlsafe(16)}"
ALLOW_KEY = f"gwk-allow-{secrets.token_urlsafe(16)}"
E2E_KEYS = [
    {"id": "tenant-plain", "key": DEFAULT_KEY},
    # Hashed, as scripts/keys writes it, to show the field rides along with a digest.
    {"id": "tenant-allowed", "sha256": hashlib.sha256(ALLOW_KEY.encode()).hexdigest(), "allow_resources": True},
]
E2E_ALIASES = {"flash": "google/gemini-2.5-flash", "sonnet": "anthropic/claude-sonnet-4-6"}


@pytest.fixture(scope="module")
def resource_gateway(gateway_env: dict[str, str | None]) -> Iterator[Gateway]:
    gw = start_gateway({**gateway_env, "API_KEYS_JSON": json.dumps(E2E_KEYS), "MODEL_ALIASES": json.dumps(E2E_ALIASES)})
    yield gw
    assert gw.stop() == 0, f"gateway log: {gw.log_path}"


def gs_image_chat(sdk: openai.OpenAI, marker: str) -> Any:
    return sdk.chat.completions.create(
        model="flash",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": f"describe {marker}"},
                    {"type": "image_url", "image_url": {"url": f"gs://project-bucket/{marker}.png"}},
                ],
            }
        ],
    )


@pytest.mark.e2e
def test_a_gs_image_is_refused_for_a_default_key_and_reaches_vertex_with_allow_resources(
    resource_gateway: Gateway, fake_vertex: FakeVertex, marker: str
) -> None:
    with (
        openai.OpenAI(api_key=DEFAULT_KEY, base_url=resource_gateway.base_url, max_retries=0) as sdk,
        pytest.raises(openai.BadRequestError) as refused,
    ):
        gs_image_chat(sdk, marker)
    error = refused.value.body
    assert isinstance(error, dict)
    assert error["code"] == "resource_not_allowed"
    assert error["type"] == "invalid_request_error"
    assert error["param"] == "messages[0].content[1].image_url.url"
    assert "messages[0].content[1].image_url.url" in error["message"]
    assert "allow_resources" in error["message"] and "operator" in error["message"]
    assert fake_vertex.find(marker) == []
    line = resource_gateway.wait_for_log(lambda e: e.get("key_id") == "tenant-plain" and "httpRequest" in e)
    assert line["httpRequest"]["status"] == 400

    with openai.OpenAI(api_key=ALLOW_KEY, base_url=resource_gateway.base_url, max_retries=0) as sdk:
        reply = gs_image_chat(sdk, marker)
    assert reply.choices[0].message.content
    [forwarded] = fake_vertex.find(marker)
    assert forwarded.json["messages"][0]["content"][1]["image_url"]["url"] == f"gs://project-bucket/{marker}.png"


@pytest.mark.e2e
def test_cached_content_is_refused(resource_gateway: Gateway, fake_vertex: FakeVertex, marker: str) -> None:
    with (
        openai.OpenAI(api_key=DEFAULT_KEY, base_url=resource_gateway.base_url, max_retries=0) as sdk,
        pytest.raises(openai.BadRequestError) as refused,
    ):
        sdk.chat.completions.create(
            model="flash",
            messages=[{"role": "user", "content": f"hi {marker}"}],
            # How Vertex's OpenAI-compatible API takes a context cache.
            extra_body={"extra_body": {"google": {"cached_content": "projects/p/locations/l/cachedContents/7"}}},
        )
    assert isinstance(refused.value.body, dict)
    assert refused.value.body["code"] == "resource_not_allowed"
    assert refused.value.body["param"] == "extra_body.google.cached_content"
    assert fake_vertex.find(marker) == []


@pytest.mark.e2e
def test_anthropic_route_refuses_in_its_own_shape(
    resource_gateway: Gateway, fake_vertex: FakeVertex, marker: str
) -> None:
    with anthropic.Anthropic(api_key=DEFAULT_KEY, base_url=resource_gateway.url, max_retries=0) as claude:
        with pytest.raises(anthropic.BadRequestError) as refused:
            claude.messages.create(
                model="sonnet",
                max_tokens=64,
                messages=[
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": f"gs:// in prose is fine {marker}"},
                            {"type": "image", "source": {"type": "url", "url": "gs://project-bucket/x.png"}},
                        ],
                    }
                ],
            )
        body = refused.value.body
        assert isinstance(body, dict) and body["type"] == "error"
        assert body["error"]["type"] == "invalid_request_error"
        assert "messages[0].content[1].source.url" in body["error"]["message"]
        assert fake_vertex.find(marker) == []
        # Prose that mentions gs:// passes.
        reply = claude.messages.create(
            model="sonnet", max_tokens=64, messages=[{"role": "user", "content": f"copy gs://b/o {marker}"}]
        )
    assert reply.content[0].type == "text"
    assert len(fake_vertex.find(marker)) == 1


@pytest.mark.e2e
def test_json_escapes_do_not_smuggle_a_reference(
    resource_gateway: Gateway, fake_vertex: FakeVertex, marker: str
) -> None:
    url = rb"\u0067s:\/\/project-bucket\/o.png"  # gs://project-bucket/o.png, escaped
    body = (
        b'{"model":"flash","messages":[{"role":"user","content":[{"type":"text","text":"%s"},'
        b'{"type":"image_url","image_url":{"url":"%s"}}]}]}'
    ) % (marker.encode(), url)
    assert b"gs:" not in body
    conn = http.client.HTTPConnection("127.0.0.1", resource_gateway.port, timeout=30)
    try:
        conn.request(
            "POST",
            "/v1/chat/completions",
            body,
            {"Authorization": f"Bearer {DEFAULT_KEY}", "Content-Type": "application/json"},
        )
        response = conn.getresponse()
        answer = json.loads(response.read())
    finally:
        conn.close()
    assert response.status == 400, answer
    assert answer["error"]["code"] == "resource_not_allowed"
    assert fake_vertex.find(marker) == []
