"""Anthropic Messages <-> Gemini generateContent: a table of request cases and a table of answer cases."""

from typing import Any

import orjson
import pytest

from app import thought_signatures
from app.errors import GatewayError
from app.gemini_messages import CountTokensAnswer, MessagesAnswer, count_tokens_request, gemini_request
from app.gemini_schema import gemini_schema

SIG = "Cq8BAY89a1+/xyz=="  # signatures are standard base64: '+', '/', '=' must survive

FLASH = "gemini-2.5-flash"
GEMINI3 = "gemini-3.1-pro-preview"


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def assistant(content: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": content}


def call_id(signature: str | None = None) -> str:
    return thought_signatures.carry("toolu_abc", signature) if signature else "toolu_abc"


TOOL_TURN = [
    user("read it"),
    assistant([{"type": "tool_use", "id": call_id(SIG), "name": "Read", "input": {"file_path": "/x"}}]),
]

REQUESTS: list[tuple[str, dict[str, Any], str, dict[str, Any]]] = [
    (
        "string content",
        {"messages": [user("hi")]},
        FLASH,
        {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]},
    ),
    (
        "system string",
        {"system": "be brief", "messages": [user("hi")]},
        FLASH,
        {"systemInstruction": {"parts": [{"text": "be brief"}]}},
    ),
    (
        "system blocks, cache_control ignored",
        {
            "system": [
                {"type": "text", "text": "a", "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "b"},
            ],
            "messages": [user("hi")],
        },
        FLASH,
        {"systemInstruction": {"parts": [{"text": "a\nb"}]}},
    ),
    (
        "role system inside messages joins the system instruction, in order",
        {"system": "be brief", "messages": [user("hi"), {"role": "system", "content": "agents: x"}, user("go")]},
        FLASH,
        {
            "contents": [{"role": "user", "parts": [{"text": "hi"}, {"text": "go"}]}],
            "systemInstruction": {"parts": [{"text": "be brief"}, {"text": "agents: x"}]},
        },
    ),
    (
        "image base64",
        {
            "messages": [
                user([{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAA="}}])
            ]
        },
        FLASH,
        {"contents": [{"role": "user", "parts": [{"inlineData": {"mimeType": "image/png", "data": "AAA="}}]}]},
    ),
    (
        "image url",
        {"messages": [user([{"type": "image", "source": {"type": "url", "url": "https://e.x/cat.png?s=1"}}])]},
        FLASH,
        {
            "contents": [
                {
                    "role": "user",
                    "parts": [{"fileData": {"mimeType": "image/png", "fileUri": "https://e.x/cat.png?s=1"}}],
                }
            ]
        },
    ),
    (
        "document base64 pdf",
        {
            "messages": [
                user(
                    [
                        {
                            "type": "document",
                            "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"},
                        }
                    ]
                )
            ]
        },
        FLASH,
        {"contents": [{"role": "user", "parts": [{"inlineData": {"mimeType": "application/pdf", "data": "JVBE"}}]}]},
    ),
    (
        "document plain text",
        {
            "messages": [
                user([{"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "abc"}}])
            ]
        },
        FLASH,
        {"contents": [{"role": "user", "parts": [{"text": "abc"}]}]},
    ),
    (
        "tool_use restores the signature carried in its id",
        {"messages": TOOL_TURN},
        GEMINI3,
        {
            "contents": [
                {"role": "user", "parts": [{"text": "read it"}]},
                {
                    "role": "model",
                    "parts": [{"functionCall": {"name": "Read", "args": {"file_path": "/x"}}, "thoughtSignature": SIG}],
                },
            ]
        },
    ),
    (
        "Gemini 3: a call that never had a signature gets the documented dummy",
        {"messages": [user("x"), assistant([{"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {}}])]},
        GEMINI3,
        {
            "contents": [
                {"role": "user", "parts": [{"text": "x"}]},
                {
                    "role": "model",
                    "parts": [
                        {"functionCall": {"name": "Read", "args": {}}, "thoughtSignature": thought_signatures.DUMMY}
                    ],
                },
            ]
        },
    ),
    (
        "Gemini 2.5: no dummy",
        {"messages": [user("x"), assistant([{"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {}}])]},
        FLASH,
        {
            "contents": [
                {"role": "user", "parts": [{"text": "x"}]},
                {"role": "model", "parts": [{"functionCall": {"name": "Read", "args": {}}}]},
            ]
        },
    ),
    (
        "tool_result string, then text in the same turn",
        {
            "messages": [
                *TOOL_TURN,
                user(
                    [
                        {"type": "tool_result", "tool_use_id": call_id(SIG), "content": "hello"},
                        {"type": "text", "text": "go"},
                    ]
                ),
            ]
        },
        FLASH,
        {
            "contents[2]": {
                "role": "user",
                "parts": [{"functionResponse": {"name": "Read", "response": {"content": "hello"}}}, {"text": "go"}],
            }
        },
    ),
    (
        "tool_result blocks with an image, is_error",
        {
            "messages": [
                *TOOL_TURN,
                user(
                    [
                        {
                            "type": "tool_result",
                            "tool_use_id": call_id(SIG),
                            "is_error": True,
                            "content": [
                                {"type": "text", "text": "no such file"},
                                {
                                    "type": "image",
                                    "source": {"type": "base64", "media_type": "image/gif", "data": "R0"},
                                },
                            ],
                        }
                    ]
                ),
            ]
        },
        FLASH,
        {
            "contents[2]": {
                "role": "user",
                "parts": [
                    {"functionResponse": {"name": "Read", "response": {"error": "no such file"}}},
                    {"inlineData": {"mimeType": "image/gif", "data": "R0"}},
                ],
            }
        },
    ),
    (
        "thinking and redacted_thinking are not sent back",
        {
            "messages": [
                user("x"),
                assistant(
                    [
                        {"type": "thinking", "thinking": "hm", "signature": "s"},
                        {"type": "redacted_thinking", "data": "d"},
                        {"type": "text", "text": "ok"},
                    ]
                ),
                user("y"),
            ]
        },
        FLASH,
        {"contents[1]": {"role": "model", "parts": [{"text": "ok"}]}},
    ),
    (
        "empty text and empty turns are left out",
        {"messages": [user(""), user([{"type": "text", "text": "hi"}]), assistant("")]},
        FLASH,
        {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]},
    ),
    (
        "generation settings, unknown fields and metadata ignored",
        {
            "messages": [user("x")],
            "max_tokens": 100,
            "temperature": 0.5,
            "top_p": 0.9,
            "top_k": 40,
            "stop_sequences": ["END"],
            "metadata": {"user_id": "u"},
            "service_tier": "auto",
            "stream": False,
        },
        FLASH,
        {
            "generationConfig": {
                "maxOutputTokens": 100,
                "temperature": 0.5,
                "topP": 0.9,
                "topK": 40,
                "stopSequences": ["END"],
            }
        },
    ),
    (
        "thinking budget, clamped to Flash's ceiling",
        {"messages": [user("x")], "max_tokens": 32000, "thinking": {"type": "enabled", "budget_tokens": 31999}},
        FLASH,
        {
            "generationConfig": {
                "maxOutputTokens": 32000,
                "thinkingConfig": {"includeThoughts": True, "thinkingBudget": 24576},
            }
        },
    ),
    (
        "thinking disabled on Flash",
        {"messages": [user("x")], "thinking": {"type": "disabled"}},
        FLASH,
        {"generationConfig": {"thinkingConfig": {"thinkingBudget": 0}}},
    ),
    (
        "tools, tool_choice tool",
        {
            "messages": [user("x")],
            "tools": [
                {
                    "name": "Read",
                    "description": "reads",
                    "input_schema": {"type": "object", "properties": {"p": {"type": "string"}}},
                },
                {"name": "Noop", "input_schema": {"type": "object", "properties": {}}},
            ],
            "tool_choice": {"type": "tool", "name": "Read"},
        },
        FLASH,
        {
            "tools": [
                {
                    "functionDeclarations": [
                        {
                            "name": "Read",
                            "description": "reads",
                            "parameters": {"type": "OBJECT", "properties": {"p": {"type": "STRING"}}},
                        },
                        {"name": "Noop"},
                    ]
                }
            ],
            "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["Read"]}},
        },
    ),
    (
        "tool_choice auto / none",
        {"messages": [user("x")], "tools": [{"name": "a", "input_schema": {}}], "tool_choice": {"type": "none"}},
        FLASH,
        {"toolConfig": {"functionCallingConfig": {"mode": "NONE"}}},
    ),
    (
        "server tools are dropped (and reported), custom kept",
        {
            "messages": [user("x")],
            "tools": [
                {"type": "web_search_20250305", "name": "web_search", "max_uses": 3},
                {
                    "type": "custom",
                    "name": "a",
                    "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}},
                },
            ],
        },
        FLASH,
        {
            "tools": [
                {
                    "functionDeclarations": [
                        {"name": "a", "parameters": {"type": "OBJECT", "properties": {"q": {"type": "STRING"}}}}
                    ]
                }
            ]
        },
    ),
    (
        "only server tools: no tools at all",
        {
            "messages": [user("x")],
            "tools": [{"type": "web_search_20250305", "name": "web_search"}],
            "tool_choice": {"type": "auto"},
        },
        FLASH,
        {"tools": None, "toolConfig": None},
    ),
]


def _pick(body: dict[str, Any], key: str) -> Any:
    if key.endswith("]"):
        name, index = key[:-1].split("[")
        return body[name][int(index)]
    return body.get(key)


@pytest.mark.parametrize(("request_body", "model", "expected"), [c[1:] for c in REQUESTS], ids=[c[0] for c in REQUESTS])
def test_request(request_body: dict[str, Any], model: str, expected: dict[str, Any]) -> None:
    body = gemini_request(orjson.loads(orjson.dumps(request_body)), model).body
    for key, value in expected.items():
        assert _pick(body, key) == value, key


def test_request_notes_what_it_filled_in_and_left_out() -> None:
    translated = gemini_request(
        {
            "messages": [*TOOL_TURN, user([{"type": "tool_result", "tool_use_id": call_id(SIG), "content": "r"}])],
            "tools": [{"type": "web_search_20250305", "name": "web_search"}],
        },
        GEMINI3,
    )
    assert translated.dropped_tools == ["web_search"]
    assert translated.signatures == {"restored": 1}


REFUSED = [
    ("no messages", {"messages": []}, "messages"),
    ("bad role", {"messages": [{"role": "tool", "content": "x"}]}, "messages[0].role"),
    ("content not a list", {"messages": [user(5)]}, "messages[0].content"),
    ("unknown block", {"messages": [user([{"type": "audio"}])]}, "messages[0].content[0]"),
    (
        "tool_result without its tool_use",
        {"messages": [user([{"type": "tool_result", "tool_use_id": "toolu_zz", "content": "r"}])]},
        "messages[0].content[0].tool_use_id",
    ),
    (
        "tool_choice to an unknown tool",
        {
            "messages": [user("x")],
            "tools": [{"name": "a", "input_schema": {}}],
            "tool_choice": {"type": "tool", "name": "b"},
        },
        "tool_choice.name",
    ),
    ("max_tokens not a number", {"messages": [user("x")], "max_tokens": "9"}, "max_tokens"),
    ("temperature not a number", {"messages": [user("x")], "temperature": "hot"}, "temperature"),
    (
        "image url not http",
        {"messages": [user([{"type": "image", "source": {"type": "url", "url": "gs://b/o"}}])]},
        "messages[0].content[0].source.url",
    ),
]


@pytest.mark.parametrize(("request_body", "param"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_refused_with_the_field_named(request_body: dict[str, Any], param: str) -> None:
    with pytest.raises(GatewayError) as caught:
        gemini_request(request_body, FLASH)
    assert caught.value.status == 400
    assert caught.value.param == param
    assert param.split("[")[0] in caught.value.message


def test_count_tokens_request_keeps_contents_system_and_tools_only() -> None:
    body = count_tokens_request(
        {
            "messages": [user("x")],
            "system": "s",
            "max_tokens": 5,
            "tools": [{"name": "a", "input_schema": {}}],
            "tool_choice": {"type": "any"},
        },
        FLASH,
    ).body
    assert set(body) == {"contents", "systemInstruction", "tools"}


# -- tool schemas ------------------------------------------------------------------------------------

CLAUDE_CODE_READ = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "file_path": {"type": "string", "description": "absolute path"},
        "offset": {"type": "number", "exclusiveMinimum": 0},
        "limit": {"type": ["integer", "null"]},
        "url": {"type": "string", "format": "uri"},
        "mode": {"const": "fast"},
        "when": {"type": "string", "format": "date-time"},
        "tags": {"type": "array", "items": {"$ref": "#/$defs/tag"}},
        "either": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "many": {"anyOf": [{"type": "string"}, {"type": "number"}]},
    },
    "required": ["file_path", "ghost"],
    "$defs": {"tag": {"type": "string", "enum": ["a", "b"]}},
}


def test_claude_code_schema_becomes_gemini_schema() -> None:
    assert gemini_schema(CLAUDE_CODE_READ) == {
        "type": "OBJECT",
        "properties": {
            "file_path": {"type": "STRING", "description": "absolute path"},
            "offset": {"type": "NUMBER", "minimum": 0},
            "limit": {"type": "INTEGER", "nullable": True},
            "url": {"type": "STRING", "description": "(format: uri)"},
            "mode": {"type": "STRING", "enum": ["fast"]},
            "when": {"type": "STRING", "format": "date-time"},
            "tags": {"type": "ARRAY", "items": {"type": "STRING", "enum": ["a", "b"]}},
            "either": {"type": "STRING", "nullable": True},
            "many": {"anyOf": [{"type": "STRING"}, {"type": "NUMBER"}]},
        },
        "required": ["file_path"],
    }


def test_recursive_schema_ends() -> None:
    schema = {"$defs": {"n": {"type": "object", "properties": {"next": {"$ref": "#/$defs/n"}}}}, "$ref": "#/$defs/n"}
    converted = gemini_schema(schema)
    depth = 0
    while "properties" in converted:
        converted, depth = converted["properties"]["next"], depth + 1
    assert 5 < depth < 20


# -- answers -----------------------------------------------------------------------------------------


def gemini(parts: list[dict[str, Any]] | None, finish: str | None = "STOP", **extra: Any) -> dict[str, Any]:
    candidate: dict[str, Any] = {}
    if parts is not None:
        candidate["content"] = {"role": "model", "parts": parts}
    if finish:
        candidate["finishReason"] = finish
    return {
        "candidates": [candidate],
        "usageMetadata": {
            "promptTokenCount": 10,
            "candidatesTokenCount": 4,
            "thoughtsTokenCount": 3,
            "totalTokenCount": 17,
        },
        **extra,
    }


CALL = {"functionCall": {"name": "Read", "args": {"file_path": "/x"}}, "thoughtSignature": SIG}

ANSWERS: list[tuple[str, dict[str, Any], str, list[dict[str, Any]]]] = [
    ("text", gemini([{"text": "he"}, {"text": "llo"}]), "end_turn", [{"type": "text", "text": "hello"}]),
    (
        "thought then text",
        gemini([{"text": "hmm", "thought": True}, {"text": "hi"}]),
        "end_turn",
        [{"type": "thinking", "thinking": "hmm", "signature": ""}, {"type": "text", "text": "hi"}],
    ),
    ("max tokens", gemini([{"text": "cut"}], "MAX_TOKENS"), "max_tokens", [{"type": "text", "text": "cut"}]),
    ("safety", gemini(None, "SAFETY"), "refusal", []),
    ("recitation", gemini([], "RECITATION"), "refusal", []),
    ("prohibited content", gemini(None, "PROHIBITED_CONTENT"), "refusal", []),
    (
        "prompt blocked",
        {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 3}},
        "refusal",
        [],
    ),
    ("empty answer", gemini([], "STOP"), "end_turn", []),
    ("no candidates", {"usageMetadata": {"promptTokenCount": 3}}, "end_turn", []),
    (
        "function call",
        gemini([{"text": "let me look"}, CALL]),
        "tool_use",
        [{"type": "text", "text": "let me look"}, {"type": "tool_use", "name": "Read", "input": {"file_path": "/x"}}],
    ),
    (
        "arguments as a malformed string",
        gemini([{"functionCall": {"name": "Read", "args": "{oops"}}]),
        "tool_use",
        [{"type": "tool_use", "name": "Read", "input": {"arguments": "{oops"}}],
    ),
]


def _without_ids(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in b.items() if k != "id"} for b in blocks]


@pytest.mark.parametrize(("answer", "stop", "content"), [c[1:] for c in ANSWERS], ids=[c[0] for c in ANSWERS])
def test_whole_answer(answer: dict[str, Any], stop: str, content: list[dict[str, Any]]) -> None:
    translator = MessagesAnswer("flash")
    message = orjson.loads(translator.whole(orjson.dumps(answer)))
    assert message["type"] == "message" and message["role"] == "assistant" and message["model"] == "flash"
    assert message["id"].startswith("msg_")
    assert message["stop_reason"] == stop
    assert _without_ids(message["content"]) == content
    assert translator.usage == message["usage"]


@pytest.mark.parametrize(("answer", "stop", "content"), [c[1:] for c in ANSWERS], ids=[c[0] for c in ANSWERS])
def test_streamed_answer_matches_whole(answer: dict[str, Any], stop: str, content: list[dict[str, Any]]) -> None:
    events = replay(stream_of(answer))
    assert [e["type"] for e in events[:2]] == ["message_start", "ping"]
    assert [e["type"] for e in events[-2:]] == ["message_delta", "message_stop"]
    assert events[-2]["delta"]["stop_reason"] == stop
    assert _without_ids(assemble(events)) == content


def test_usage_counts_thinking_as_output() -> None:
    translator = MessagesAnswer("flash")
    translator.whole(orjson.dumps(gemini([{"text": "x"}])))
    assert translator.usage == {"input_tokens": 10, "output_tokens": 7}


def test_signature_rides_in_the_tool_use_id() -> None:
    message = orjson.loads(MessagesAnswer("flash").whole(orjson.dumps(gemini([CALL]))))
    block = message["content"][0]
    assert block["id"].startswith("toolu_")
    assert thought_signatures.split(block["id"])[1] == SIG
    # and the next request puts it back
    back = gemini_request({"messages": [user("x"), assistant([block])]}, GEMINI3)
    assert back.body["contents"][1]["parts"][0]["thoughtSignature"] == SIG


def test_malformed_function_call_is_a_clear_error() -> None:
    with pytest.raises(GatewayError) as caught:
        MessagesAnswer("flash").whole(orjson.dumps(gemini([], "MALFORMED_FUNCTION_CALL")))
    assert caught.value.status == 502 and "MALFORMED_FUNCTION_CALL" in caught.value.message
    events = replay(stream_of(gemini([], "MALFORMED_FUNCTION_CALL")))
    assert events[-1]["type"] == "error" and "MALFORMED_FUNCTION_CALL" in events[-1]["error"]["message"]


def test_not_json_is_a_clear_error() -> None:
    with pytest.raises(GatewayError) as caught:
        MessagesAnswer("flash").whole(b"<html>")
    assert caught.value.status == 502


def test_broken_stream_ends_with_an_anthropic_error_event() -> None:
    translator = MessagesAnswer("flash")
    head = translator.chunk(b"data: " + orjson.dumps(gemini([{"text": "a"}], None)) + b"\r\n\r\n")
    tail = translator.broken("Vertex AI broke off its answer; retry")
    events = parse_events(head + tail)
    assert events[0]["type"] == "message_start" and events[-1]["type"] == "error"
    assert events[-1]["error"] == {"type": "api_error", "message": "Vertex AI broke off its answer; retry"}


def test_stream_split_anywhere_gives_the_same_events() -> None:
    data = stream_of(gemini([{"text": "think", "thought": True, "thoughtSignature": "c2ln"}, {"text": "a b"}, CALL]))
    whole = MessagesAnswer("flash")
    expected = _strip_ids(parse_events(whole.chunk(data) + whole.end()))
    for cut in range(1, len(data), 7):
        translator = MessagesAnswer("flash")
        out = translator.chunk(data[:cut]) + translator.chunk(data[cut:]) + translator.end()
        assert _strip_ids(parse_events(out)) == expected, cut


def test_count_tokens_answer() -> None:
    assert orjson.loads(CountTokensAnswer().whole(b'{"totalTokens": 42}')) == {"input_tokens": 42}
    with pytest.raises(GatewayError):
        CountTokensAnswer().whole(b"{}")


# -- helpers -----------------------------------------------------------------------------------------


def stream_of(answer: dict[str, Any]) -> bytes:
    """Gemini's SSE: the parts spread over events (one part each), finish and usage on the last."""
    candidate = answer.get("candidates", [{}])[0]
    parts = candidate.get("content", {}).get("parts", [])
    events = [{"candidates": [{"content": {"role": "model", "parts": [part]}}]} for part in parts]
    last: dict[str, Any] = {k: v for k, v in answer.items() if k != "candidates"}
    last["candidates"] = [{k: v for k, v in candidate.items() if k != "content"}]
    events.append(last)
    return b"".join(b"data: " + orjson.dumps(e) + b"\r\n\r\n" for e in events)


def replay(data: bytes) -> list[dict[str, Any]]:
    translator = MessagesAnswer("flash")
    return parse_events(translator.chunk(data) + translator.end())


def parse_events(data: bytes) -> list[dict[str, Any]]:
    events = []
    for block in data.decode().split("\n\n"):
        if not block:
            continue
        name, payload = block.split("\n")
        event = orjson.loads(payload.removeprefix("data: "))
        assert name == "event: " + event["type"]
        events.append(event)
    return events


def _strip_ids(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    text = orjson.dumps(events).decode()
    import re

    return orjson.loads(re.sub(r'"(msg|toolu)_[A-Za-z0-9_-]+"', '"ID"', text))


def assemble(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Content blocks rebuilt from the events, as Anthropic's SDKs do."""
    blocks: list[dict[str, Any]] = []
    json_parts: dict[int, str] = {}
    for event in events:
        if event["type"] == "content_block_start":
            blocks.append(dict(event["content_block"]))
        elif event["type"] == "content_block_delta":
            delta, block = event["delta"], blocks[event["index"]]
            if delta["type"] == "text_delta":
                block["text"] += delta["text"]
            elif delta["type"] == "thinking_delta":
                block["thinking"] += delta["thinking"]
            elif delta["type"] == "signature_delta":
                block["signature"] = delta["signature"]
            elif delta["type"] == "input_json_delta":
                json_parts[event["index"]] = json_parts.get(event["index"], "") + delta["partial_json"]
    for index, text in json_parts.items():
        blocks[index]["input"] = orjson.loads(text)
    return blocks


def test_text_fast_path_writes_the_bytes_the_general_path_writes() -> None:
    """Text deltas for an open text block skip the dict-and-dumps path; the bytes must not differ."""
    from app.gemini_messages import _event

    parts = [
        {"text": "a"},
        {"text": 'quote " and \\ and \u00e9 and \U0001f600'},
        {"text": ""},
        {"text": "t", "thought": True, "thoughtSignature": "c2ln"},
        {"text": "b"},
        CALL,
        {"text": "c", "thoughtSignature": "c2ln"},
        {"text": "d"},
    ]
    translator = MessagesAnswer("flash")
    out = translator.chunk(stream_of(gemini(parts))) + translator.end()
    deltas = [e for e in out.split(b"\n\n") if e.startswith(b"event: content_block_delta")]
    for event in deltas:
        data = orjson.loads(event.split(b"\ndata: ", 1)[1])
        assert event + b"\n\n" == _event("content_block_delta", data)
    texts = [orjson.loads(e.split(b"\ndata: ", 1)[1])["delta"].get("text") for e in deltas]
    assert [t for t in texts if t is not None] == ["a", parts[1]["text"], "b", "c", "d"]
