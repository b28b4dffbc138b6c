"""The fake's Gemini: the native API (generateContent, streamGenerateContent, countTokens) and Gemini 3's
thought-signature rule on both Gemini endpoints, checked against what Vertex says (SPEC.md, platform facts)."""

from __future__ import annotations

import asyncio
import copy
import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import aiohttp
import openai
import pytest

from tests.fakes.vertex import FakeVertex
from tests.fakes.vertex_chat import INVALID_SIGNATURE, SKIP_SIGNATURE, missing_signature
from tests.fakes.vertex_gemini import (
    BAD_ROLE,
    ENDS_WITH_MODEL,
    NO_CONTENTS,
    NO_DATA,
    NO_PARTS,
)

MODELS = "/v1/projects/p/locations/global/publishers/google/models/"
FLASH = MODELS + "gemini-2.5-flash"
PRO3 = MODELS + "gemini-3.1-pro-preview"
CHAT = "/v1/projects/p/locations/global/endpoints/openapi/chat/completions"
WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city.",
    "parameters": {"type": "OBJECT", "properties": {"city": {"type": "STRING"}}, "required": ["city"]},
}
TOOLS = [{"functionDeclarations": [WEATHER]}]


@pytest.fixture
def vertex() -> Iterator[FakeVertex]:
    with FakeVertex({"good"}) as fake:
        yield fake


def post(vertex: FakeVertex, path: str, body: Any, query: str = "") -> tuple[int, str, str]:
    """(status, content type, body) of one POST, as any HTTP client sees it."""
    request = urllib.request.Request(
        vertex.url + path + query,
        data=json.dumps(body).encode(),
        headers={"Authorization": "Bearer good", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode()


def ok(vertex: FakeVertex, path: str, body: Any) -> dict[str, Any]:
    status, _, text = post(vertex, path, body)
    assert status == 200, text
    return json.loads(text)


def refusal(vertex: FakeVertex, path: str, body: Any) -> tuple[int, dict[str, Any]]:
    status, _, text = post(vertex, path, body)
    assert status != 200, text
    answer = json.loads(text)
    return status, (answer[0] if isinstance(answer, list) else answer)["error"]


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "parts": [{"text": text}]}


def sse_events(text: str) -> list[dict[str, Any]]:
    """google-genai's reading of an alt=sse stream (_api_client.HttpResponse._iter_response_stream): line by
    line, `data: ` lines gathered, a blank line ends an event."""
    events, data = [], []
    for line in text.splitlines():
        if not line:
            if data:
                events.append(json.loads("\n".join(data)))
                data = []
        elif line.startswith("data: "):
            data.append(line[len("data: ") :])
    if data:
        events.append(json.loads("\n".join(data)))
    return events


def streamed(vertex: FakeVertex, path: str, body: Any) -> list[dict[str, Any]]:
    status, _, text = post(vertex, path + ":streamGenerateContent", body, "?alt=sse")
    assert status == 200, text
    return sse_events(text)


def texts(chunks: list[dict[str, Any]]) -> str:
    return "".join(p.get("text", "") for c in chunks for p in c["candidates"][0]["content"].get("parts", []))


# -- answers --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["v1", "v1beta1"])
def test_generate_content_answers_as_gemini(vertex: FakeVertex, version: str) -> None:
    body = {"contents": [user("hello gemini")], "systemInstruction": {"parts": [{"text": "be brief"}]}}
    answer = ok(vertex, FLASH.replace("/v1/", f"/{version}/") + ":generateContent", body)
    (candidate,) = answer["candidates"]
    assert candidate["content"] == {"role": "model", "parts": [{"text": "echo: hello gemini"}]}
    assert candidate["finishReason"] == "STOP"
    usage = answer["usageMetadata"]
    assert usage["promptTokenCount"] > 0 and usage["candidatesTokenCount"] == 3
    assert usage["totalTokenCount"] == usage["promptTokenCount"] + usage["candidatesTokenCount"]
    assert "thoughtsTokenCount" not in usage
    assert answer["modelVersion"] == "gemini-2.5-flash" and answer["responseId"]
    assert vertex.requests[-1].route == "gemini" and vertex.requests[-1].status == 200


def test_stream_with_alt_sse_is_crlf_framed_sse(vertex: FakeVertex) -> None:
    vertex.push({"chunks": 4})
    status, kind, text = post(vertex, FLASH + ":streamGenerateContent", {"contents": [user("hi")]}, "?alt=sse")
    assert status == 200 and kind.startswith("text/event-stream")
    # Vertex ends each event with CRLF CRLF (googleapis/nodejs-vertexai's first parser matched `data: (.*)\r\n`).
    frames = text.split("\r\n\r\n")
    assert frames[-1] == "" and all(f.startswith("data: {") for f in frames[:-1]) and "\n" not in "".join(frames)
    # The Vertex Node SDK's pattern, and google-genai's line reader, both find the same four events.
    node = re.findall(r"^data: (.*)(?:\n\n|\r\r|\r\n\r\n)", text, flags=re.M)
    events = sse_events(text)
    assert [json.loads(n) for n in node] == events and len(events) == 4
    assert texts(events) == "echo: hi #1 #2 #3"
    assert all("finishReason" not in e["candidates"][0] and "usageMetadata" not in e for e in events[:-1])
    assert events[-1]["candidates"][0]["finishReason"] == "STOP"
    assert events[-1]["usageMetadata"]["candidatesTokenCount"] == 5
    assert len({e["responseId"] for e in events}) == 1


def test_stream_without_alt_is_one_json_array(vertex: FakeVertex) -> None:
    status, kind, text = post(vertex, FLASH + ":streamGenerateContent", {"contents": [user("one two")]})
    assert status == 200 and kind.startswith("application/json")
    chunks = json.loads(text)
    assert isinstance(chunks, list) and len(chunks) == 3 and texts(chunks) == "echo: one two"


def test_google_genai_reads_the_fake(vertex: FakeVertex) -> None:
    genai = pytest.importorskip("google.genai")  # not a dependency: the hand-written readers above stand in
    from google.oauth2.credentials import Credentials

    client = genai.Client(
        vertexai=True,
        project="p",
        location="global",
        credentials=Credentials("good"),
        http_options=genai.types.HttpOptions(base_url=vertex.url, api_version="v1"),
    )
    streamed = list(client.models.generate_content_stream(model="gemini-2.5-flash", contents="hi there"))
    assert "".join(c.text or "" for c in streamed) == "echo: hi there"
    whole = client.models.generate_content(model="gemini-2.5-flash", contents="hi")
    assert whole.text == "echo: hi"
    assert client.models.count_tokens(model="gemini-2.5-flash", contents="hi").total_tokens > 0
    # A Gemini 3 tool turn through the SDK's own chat history: it keeps the signature as bytes and sends
    # it back re-encoded, which the fake accepts only if its signatures are canonical base64.
    types = genai.types
    declaration = types.FunctionDeclaration(name="get_weather", parameters_json_schema=WEATHER["parameters"])
    config = types.GenerateContentConfig(tools=[types.Tool(function_declarations=[declaration])])
    chat = client.chats.create(model="gemini-3.1-pro-preview", config=config)
    call = chat.send_message("weather?").candidates[0].content.parts[0]
    assert call.function_call.name == "get_weather" and call.thought_signature
    answer = chat.send_message(types.Part.from_function_response(name="get_weather", response={"content": "sunny"}))
    assert answer.text == "tool said: sunny"
    (returned,) = vertex.signatures_returned
    assert returned == vertex.signatures_issued[0].replace("+", "-").replace("/", "_"), "google-genai sends URL-safe"


def test_count_tokens_agrees_with_generate(vertex: FakeVertex) -> None:
    body = {"contents": [user("count these four words")], "systemInstruction": {"parts": [{"text": "s"}]}}
    counted = ok(vertex, FLASH + ":countTokens", body)
    assert set(counted) == {"totalTokens", "totalBillableCharacters", "promptTokensDetails"}
    assert counted["totalTokens"] == ok(vertex, FLASH + ":generateContent", body)["usageMetadata"]["promptTokenCount"]
    assert vertex.requests[0].route == "gemini_count_tokens"
    # countTokens's request has no toolConfig, safetySettings or labels: protobuf refuses them.
    status, error = refusal(vertex, FLASH + ":countTokens", {**body, "toolConfig": {}})
    assert status == 400 and error["message"] == (
        'Invalid JSON payload received. Unknown name "toolConfig": Cannot find field.'
    )


def test_function_call_is_signed_and_answered(vertex: FakeVertex) -> None:
    first = ok(vertex, PRO3 + ":generateContent", {"contents": [user("weather?")], "tools": TOOLS})
    (part,) = first["candidates"][0]["content"]["parts"]
    assert part["functionCall"] == {"name": "get_weather", "args": {"city": "Paris"}}
    signature = part["thoughtSignature"]
    assert len(signature) > 300 and {"+", "/"} <= set(signature) and signature.endswith("==")
    assert vertex.signatures_issued == [signature] == [vertex.requests[-1].issued_signature]
    history = [
        user("weather?"),
        {"role": "model", "parts": [part]},
        {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"content": "sunny"}}}]},
    ]
    second = ok(vertex, PRO3 + ":generateContent", {"contents": history, "tools": TOOLS})
    (answer,) = second["candidates"][0]["content"]["parts"]
    assert answer["text"] == "tool said: sunny"
    assert answer["thoughtSignature"] not in vertex.signatures_issued, "Gemini 3 signs text answers' last part"
    assert vertex.signatures_returned == [signature]


def test_tool_config_and_thinking_shape_the_answer(vertex: FakeVertex) -> None:
    other = {"name": "lookup", "parameters": {"type": "object", "properties": {"n": {"type": "integer"}}}}
    tools = [{"functionDeclarations": [WEATHER, other]}]
    none = {"functionCallingConfig": {"mode": "NONE"}}
    answer = ok(vertex, FLASH + ":generateContent", {"contents": [user("x")], "tools": tools, "toolConfig": none})
    assert answer["candidates"][0]["content"]["parts"] == [{"text": "echo: x"}]
    only_lookup = {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["lookup"]}}
    body = {"contents": [user("x")], "tools": tools, "toolConfig": only_lookup}
    body["generationConfig"] = {"thinkingConfig": {"includeThoughts": True, "thinkingBudget": 128}}
    answer = ok(vertex, FLASH + ":generateContent", body)
    thought, call = answer["candidates"][0]["content"]["parts"]
    assert thought["thought"] is True and thought["text"]
    assert call["functionCall"] == {"name": "lookup", "args": {"n": 1}}
    assert answer["usageMetadata"]["thoughtsTokenCount"] > 0


def test_controls(vertex: FakeVertex) -> None:
    body = {"contents": [user("read it")], "tools": TOOLS}
    vertex.push({"call": {"name": "Read", "args": {"file_path": "/tmp/x"}}})
    part = ok(vertex, FLASH + ":generateContent", body)["candidates"][0]["content"]["parts"][0]
    assert part["functionCall"] == {"name": "Read", "args": {"file_path": "/tmp/x"}}
    vertex.push({"text": "scripted"})
    assert ok(vertex, FLASH + ":generateContent", {"contents": [user("x")]})["candidates"][0]["content"]["parts"] == [
        {"text": "scripted"}
    ]
    vertex.push({"finish": "SAFETY"})
    candidate = ok(vertex, FLASH + ":generateContent", body)["candidates"][0]
    assert candidate["finishReason"] == "SAFETY" and "parts" not in candidate["content"]
    assert any(r.get("blocked") for r in candidate["safetyRatings"])
    vertex.push({"finish": "MAX_TOKENS"})
    candidate = ok(vertex, FLASH + ":generateContent", {"contents": [user("a b c d e f")]})["candidates"][0]
    assert candidate["finishReason"] == "MAX_TOKENS" and candidate["content"]["parts"] == [{"text": "echo: a b"}]
    vertex.push({"empty": True})
    candidate = ok(vertex, FLASH + ":generateContent", body)["candidates"][0]
    assert candidate == {"content": {"role": "model"}, "finishReason": "STOP"}
    vertex.push({"block": "SAFETY"})
    blocked = ok(vertex, FLASH + ":generateContent", body)
    assert "candidates" not in blocked and blocked["promptFeedback"]["blockReason"] == "SAFETY"
    vertex.push({"thoughts": True, "chunks": 2})
    events = streamed(vertex, FLASH, {"contents": [user("x")]})
    assert events[0]["candidates"][0]["content"]["parts"][0]["thought"] is True
    assert [e["candidates"][0]["content"]["parts"][0]["text"] for e in events[1:]] == ["echo: x", " #1"]
    # A call streams whole, in one chunk that also ends the answer.
    (event,) = streamed(vertex, FLASH, body)
    assert event["candidates"][0]["content"]["parts"][0]["functionCall"]["name"] == "get_weather"
    assert event["candidates"][0]["finishReason"] == "STOP" and event["usageMetadata"]["candidatesTokenCount"] > 0
    assert vertex.pending_scripts() == 0


def test_delivery_controls_apply_to_gemini_streams(vertex: FakeVertex) -> None:
    async def scenario() -> None:
        async with aiohttp.ClientSession(headers={"Authorization": "Bearer good"}) as session:
            vertex.push({"chunks": 6, "die_after": 3})
            url = vertex.url + FLASH + ":streamGenerateContent?alt=sse"
            with pytest.raises(aiohttp.ClientPayloadError):
                async with session.post(url, json={"contents": [user("cut")]}) as response:
                    await response.read()

    asyncio.run(scenario())
    (cut,) = vertex.requests
    assert cut.aborted and cut.events_sent == 3


def test_tools_only_when_named(vertex: FakeVertex) -> None:
    vertex.tools_only_when_named = True
    plain = ok(vertex, FLASH + ":generateContent", {"contents": [user("say hi")], "tools": TOOLS})
    assert plain["candidates"][0]["content"]["parts"] == [{"text": "echo: say hi"}]
    named = ok(vertex, FLASH + ":generateContent", {"contents": [user("use get_weather")], "tools": TOOLS})
    assert "functionCall" in named["candidates"][0]["content"]["parts"][0]


# -- what Vertex refuses ----------------------------------------------------------------------------------


def unknown(name: str, at: str) -> str:
    return f"Invalid JSON payload received. Unknown name \"{name}\" at '{at}': Cannot find field."


def schema(parameters: dict[str, Any]) -> dict[str, Any]:
    return {"contents": [user("x")], "tools": [{"functionDeclarations": [{"name": "f", "parameters": parameters}]}]}


def props(**properties: Any) -> dict[str, Any]:
    return schema({"type": "OBJECT", "properties": properties})


P = "tools[0].function_declarations[0].parameters"
REFUSED: list[tuple[str, dict[str, Any], str]] = [
    ("no contents", {"contents": []}, NO_CONTENTS),
    ("contents missing", {}, NO_CONTENTS),
    ("system role", {"contents": [{"role": "system", "parts": [{"text": "x"}]}]}, BAD_ROLE),
    ("no role", {"contents": [{"parts": [{"text": "x"}]}]}, BAD_ROLE),
    ("no parts", {"contents": [{"role": "user", "parts": []}]}, NO_PARTS),
    ("empty system instruction", {"contents": [user("x")], "systemInstruction": {"parts": []}}, NO_PARTS),
    ("part without data", {"contents": [{"role": "user", "parts": [{"thought": True}]}]}, NO_DATA),
    (
        "two data fields",
        {"contents": [{"role": "user", "parts": [{"text": "x", "inlineData": {"mimeType": "a/b", "data": ""}}]}]},
        "Invalid value at 'contents[0].parts[0]' (oneof), oneof field 'data' is already set. Cannot set 'inlineData'",
    ),
    (
        "unknown generation config",
        {"contents": [user("x")], "generationConfig": {"maxTokens": 5}},
        unknown("maxTokens", "generation_config"),
    ),
    (
        "unknown thinking config",
        {"contents": [user("x")], "generationConfig": {"thinkingConfig": {"effort": "high"}}},
        unknown("effort", "generation_config.thinking_config"),
    ),
    (
        "bad thinking level",
        {"contents": [user("x")], "generationConfig": {"thinkingConfig": {"thinkingLevel": "EXTREME"}}},
        "Invalid value at 'generation_config.thinking_config.thinking_level' "
        '(type.googleapis.com/google.cloud.aiplatform.v1.GenerationConfig.ThinkingConfig.ThinkingLevel), "EXTREME"',
    ),
    ("top-level unknown", {"contents": [user("x")], "thinking": {}}, unknown("thinking", "").replace(" at ''", "")),
    ("$schema", schema({"type": "OBJECT", "$schema": "x"}), unknown("$schema", P)),
    (
        "exclusiveMinimum",
        props(n={"type": "NUMBER", "exclusiveMinimum": 0}),
        unknown("exclusiveMinimum", f"{P}.properties[0].value"),
    ),
    ("const", props(n={"type": "STRING", "const": "a"}), unknown("const", f"{P}.properties[0].value")),
    (
        "$ref deep",
        props(a={"type": "ARRAY", "items": {"$ref": "#/$defs/x"}}),
        unknown("$ref", f"{P}.properties[0].value.items"),
    ),
    ("oneOf", props(a={"oneOf": [{"type": "STRING"}]}), unknown("oneOf", f"{P}.properties[0].value")),
    (
        "type list",
        props(a={"type": ["string", "null"]}),
        'Invalid JSON payload received. Unknown name "type" '
        f"at '{P}.properties[0].value': Proto field is not repeating, cannot start list.",
    ),
    (
        "type null",
        props(a={"type": "null"}),
        f"Invalid value at '{P}.properties[0].value.type' "
        '(type.googleapis.com/google.cloud.aiplatform.v1.Type), "null"',
    ),
    (
        "enum of numbers",
        props(a={"type": "STRING", "enum": [1]}),
        f"Invalid value at '{P}.properties[0].value.enum[0]' (TYPE_STRING), 1",
    ),
    (
        "schema as a string",
        props(a="object"),
        f"Invalid value at '{P}.properties[0].value' "
        '(type.googleapis.com/google.cloud.aiplatform.v1.Schema), "object"',
    ),
    (
        "parameters not an object",
        schema({"type": "STRING"}),
        "Unable to submit request because `f` functionDeclaration `parameters` schema should be of type OBJECT."
        " Learn more: https://cloud.google.com/vertex-ai/generative-ai/docs/multimodal/function-calling",
    ),
    (
        "property without type",
        props(a={"type": "OBJECT", "properties": {"b": {"description": "?"}}}),
        "Unable to submit request because `f` functionDeclaration `parameters.a.b` schema didn't specify the schema"
        " type field. Learn more: https://cloud.google.com/vertex-ai/generative-ai/docs/multimodal/function-calling",
    ),
    (
        "anyOf with company",
        props(a={"description": "d", "anyOf": [{"type": "STRING"}, {"type": "INTEGER"}]}),
        "Unable to submit request because `f` functionDeclaration `parameters.a` schema specified other fields"
        " alongside any_of. When using any_of, it must be the only field set. Learn more:"
        " https://cloud.google.com/vertex-ai/generative-ai/docs/multimodal/function-calling",
    ),
    (
        "function name",
        {"contents": [user("x")], "tools": [{"functionDeclarations": [{"name": "9lives"}]}]},
        "The GenerateContentRequest proto is invalid:\n  * tools[0].function_declarations[0].name: [FIELD_INVALID]"
        " Invalid function name. Must start with a letter or an underscore. Must be a-z, A-Z, 0-9, or contain"
        " underscores (_), dots (.), colons (:), or dashes (-), with a maximum length of 64.",
    ),
    (
        "function call id on v1",
        {"contents": [{"role": "model", "parts": [{"functionCall": {"id": "c1", "name": "f", "args": {}}}]}]},
        unknown("id", "contents[0].parts[0].function_call"),
    ),
    (
        "response not an object",
        {"contents": [{"role": "user", "parts": [{"functionResponse": {"name": "f", "response": "sunny"}}]}]},
        "Invalid value at 'contents[0].parts[0].function_response.response' "
        '(type.googleapis.com/google.protobuf.Struct), "sunny"',
    ),
    (
        "signature not base64",
        {"contents": [{"role": "user", "parts": [{"text": "x", "thoughtSignature": "a$b"}]}]},
        "Invalid value at 'contents[0].parts[0].thought_signature' (TYPE_BYTES), Base64 decoding failed for \"a$b\"",
    ),
    (
        "bad mode",
        {"contents": [user("x")], "toolConfig": {"functionCallingConfig": {"mode": "SOMETIMES"}}},
        "Invalid value at 'tool_config.function_calling_config.mode' "
        '(type.googleapis.com/google.cloud.aiplatform.v1.FunctionCallingConfig.Mode), "SOMETIMES"',
    ),
]


@pytest.mark.parametrize(("name", "body", "message"), REFUSED, ids=[r[0] for r in REFUSED])
def test_vertex_refuses(vertex: FakeVertex, name: str, body: dict[str, Any], message: str) -> None:
    status, error = refusal(vertex, FLASH + ":generateContent", body)
    assert (status, error["status"], error["message"]) == (400, "INVALID_ARGUMENT", message)
    if message.startswith(("Invalid JSON payload", "Invalid value")):
        (violations,) = error["details"]
        assert violations["@type"] == "type.googleapis.com/google.rpc.BadRequest"
        assert [v["description"] for v in violations["fieldViolations"]] == [message]


def test_every_parse_problem_is_reported_at_once(vertex: FakeVertex) -> None:
    body = props(a={"type": "STRING", "const": "a"}, b={"type": "NUMBER", "exclusiveMinimum": 1})
    body["generationConfig"] = {"max_tokens": 1}
    error = refusal(vertex, FLASH + ":generateContent", body)[1]
    assert error["message"].split("\n") == [
        unknown("const", f"{P}.properties[0].value"),
        unknown("exclusiveMinimum", f"{P}.properties[1].value"),
        unknown("max_tokens", "generation_config"),
    ]
    fields = [v["field"] for v in error["details"][0]["fieldViolations"]]
    assert fields == [f"{P}.properties[0].value", f"{P}.properties[1].value", "generation_config"]


ACCEPTED: list[tuple[str, dict[str, Any]]] = [
    ("lower-case types", schema({"type": "object", "properties": {"a": {"type": "string"}}})),
    (
        "the documented schema fields",
        props(
            a={
                "type": "STRING",
                "format": "date-time",
                "title": "A",
                "description": "d",
                "nullable": True,
                "default": "x",
                "enum": ["x", "y"],
                "minLength": 1,
                "max_length": 9,
                "pattern": "^x",
                "example": "x",
            },
            b={"type": "ARRAY", "items": {"type": "INTEGER", "minimum": 0, "maximum": 9}, "minItems": 0, "maxItems": 3},
            c={"anyOf": [{"type": "STRING"}, {"type": "OBJECT", "properties": {}, "propertyOrdering": []}]},
            d={"type": "OBJECT", "additionalProperties": False, "minProperties": 0, "maxProperties": 1},
            e={"ref": "#/defs/x"},
        ),
    ),
    (
        "parametersJsonSchema takes JSON Schema",
        {
            "contents": [user("x")],
            "tools": [
                {
                    "functionDeclarations": [
                        {"name": "f", "parametersJsonSchema": {"$schema": "x", "type": "object", "const": 1}}
                    ]
                }
            ],
        },
    ),
    (
        "generation config",
        {
            "contents": [user("x")],
            "generationConfig": {
                "maxOutputTokens": 5,
                "temperature": 0.2,
                "topP": 0.9,
                "topK": 40,
                "stopSequences": ["x"],
                "candidateCount": 1,
                "responseMimeType": "text/plain",
                "seed": "7",
                "thinkingConfig": {"thinkingBudget": -1, "includeThoughts": False, "thinkingLevel": "high"},
            },
            "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
            "toolConfig": {"functionCallingConfig": {"mode": "VALIDATED", "allowedFunctionNames": []}},
            "labels": {"team": "x"},
        },
    ),
    (
        "snake_case names, as protobuf reads them",
        {"contents": [user("x")], "system_instruction": {"parts": [{"text": "s"}]}, "generation_config": {}},
    ),
    (
        "media and history parts",
        {
            "contents": [
                {
                    "role": "user",
                    "parts": [
                        {"text": "look"},
                        {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
                        {"fileData": {"mimeType": "image/png", "fileUri": "https://example.com/x.png"}},
                    ],
                },
                {"role": "model", "parts": [{"text": "thinking", "thought": True}, {"functionCall": {"name": "f"}}]},
                {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {"r": [1]}}}]},
            ]
        },
    ),
]


@pytest.mark.parametrize(("name", "body"), ACCEPTED, ids=[a[0] for a in ACCEPTED])
def test_vertex_takes(vertex: FakeVertex, name: str, body: dict[str, Any]) -> None:
    ok(vertex, FLASH + ":generateContent", body)


def test_function_call_ids_are_v1beta1_only(vertex: FakeVertex) -> None:
    body = {
        "contents": [
            user("x"),
            {"role": "model", "parts": [{"functionCall": {"id": "c1", "name": "f", "args": {}}}]},
            {"role": "user", "parts": [{"functionResponse": {"id": "c1", "name": "f", "response": {}}}]},
        ]
    }
    ok(vertex, FLASH.replace("/v1/", "/v1beta1/") + ":generateContent", body)
    assert refusal(vertex, FLASH + ":generateContent", body)[0] == 400


def test_gemini_3_refuses_a_last_model_turn(vertex: FakeVertex) -> None:
    body = {"contents": [user("x"), {"role": "model", "parts": [{"text": "prefill"}]}]}
    assert refusal(vertex, PRO3 + ":generateContent", body)[1]["message"] == ENDS_WITH_MODEL
    ok(vertex, FLASH + ":generateContent", body)


def test_models_the_project_cannot_see_are_not_found() -> None:
    with FakeVertex({"good"}, gemini_models={"gemini-x"}) as vertex:
        status, error = refusal(vertex, FLASH + ":generateContent", {"contents": [user("x")]})
        assert (status, error["status"]) == (404, "NOT_FOUND")
        assert error["message"] == (
            "Publisher Model `projects/p/locations/global/publishers/google/models/gemini-2.5-flash` was not found or"
            " your project does not have access to it. Please ensure you are using a valid model version. For more"
            " information, see: https://cloud.google.com/vertex-ai/generative-ai/docs/learn/model-versions"
        )
        ok(vertex, MODELS + "gemini-x:generateContent", {"contents": [user("x")]})
        claude = "/v1/projects/p/locations/global/publishers/anthropic/models/claude-9:rawPredict"
        body = {
            "anthropic_version": "vertex-2023-10-16",
            "max_tokens": 5,
            "messages": [{"role": "user", "content": "x"}],
        }
        status, error = refusal(vertex, claude, body)
        assert status == 404 and "publishers/anthropic/models/claude-9` was not found" in error["message"]
        vertex.claude_models.add("claude-9")
        ok(vertex, claude, body)


# -- Gemini 3's thought signatures ---------------------------------------------------------------------


def call_history(vertex: FakeVertex, path: str) -> list[dict[str, Any]]:
    """user, model (a signed call the fake issued), user (its result), model (a second signed call), user."""
    contents = [user("weather?")]
    for answer in ("sunny", "windy"):
        part = ok(vertex, path, {"contents": contents, "tools": TOOLS})["candidates"][0]["content"]["parts"][0]
        assert "functionCall" in part
        response = {"functionResponse": {"name": "get_weather", "response": {"content": answer}}}
        contents = [*contents, {"role": "model", "parts": [part]}, {"role": "user", "parts": [response]}]
        vertex.push({"call": {"name": "get_weather", "args": {"city": "Oslo"}}})
    vertex.clear()
    return contents


def test_native_signature_rule(vertex: FakeVertex) -> None:
    path = PRO3 + ":generateContent"
    history = call_history(vertex, path)
    ok(vertex, path, {"contents": history, "tools": TOOLS})
    assert len(vertex.signatures_returned) == 2, "issued signatures stay valid after clear()"

    missing = copy.deepcopy(history)
    del missing[3]["parts"][0]["thoughtSignature"]
    status, error = refusal(vertex, path, {"contents": missing, "tools": TOOLS})
    assert (status, error["status"]) == (400, "INVALID_ARGUMENT")
    assert error["message"] == (
        "Unable to submit request because function call `default_api:get_weather` in the 4. content block is missing"
        " a `thought_signature`. Learn more: https://docs.cloud.google.com/vertex-ai/generative-ai/docs/thought-signatures"
    )
    assert error["message"] == missing_signature("get_weather", 4)

    forged = copy.deepcopy(history)
    forged[1]["parts"][0]["thoughtSignature"] = "c2lnbmF0dXJl"
    assert refusal(vertex, path, {"contents": forged, "tools": TOOLS})[1]["message"] == INVALID_SIGNATURE
    assert INVALID_SIGNATURE.startswith("Unable to submit request because Thought signature is not valid.")
    gemini_api_dummy = copy.deepcopy(history)
    gemini_api_dummy[1]["parts"][0]["thoughtSignature"] = "context_engineering_is_the_way_to_go"
    assert refusal(vertex, path, {"contents": gemini_api_dummy, "tools": TOOLS})[1]["message"] == INVALID_SIGNATURE

    dummy = copy.deepcopy(history)
    for content in (dummy[1], dummy[3]):
        content["parts"][0]["thoughtSignature"] = SKIP_SIGNATURE
    vertex.clear()
    ok(vertex, path, {"contents": dummy, "tools": TOOLS})
    assert vertex.signatures_dummy == [SKIP_SIGNATURE] * 2 and vertex.signatures_returned == []

    # Only the current turn counts: a new user text closes the turn before it.
    earlier = [*missing, {"role": "model", "parts": [{"text": "done"}]}, user("thanks")]
    ok(vertex, path, {"contents": earlier, "tools": TOOLS})
    # Parallel calls: only the first of a step carries the signature.
    parallel = copy.deepcopy(history)
    parallel[3]["parts"].append({"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}})
    parallel[4]["parts"].append({"functionResponse": {"name": "get_weather", "response": {"content": "hot"}}})
    ok(vertex, path, {"contents": parallel, "tools": TOOLS})
    # Gemini 2.5 does not enforce, on either endpoint.
    ok(vertex, FLASH + ":generateContent", {"contents": missing, "tools": TOOLS})
    ok(vertex, FLASH + ":streamGenerateContent", {"contents": forged, "tools": TOOLS})


def test_streamed_native_calls_are_signed_too(vertex: FakeVertex) -> None:
    (event,) = streamed(vertex, PRO3, {"contents": [user("w")], "tools": TOOLS})
    part = event["candidates"][0]["content"]["parts"][0]
    assert part["thoughtSignature"] == vertex.requests[-1].issued_signature
    body = {"contents": [user("w"), {"role": "model", "parts": [part]}, {"role": "user", "parts": [{"text": "go on"}]}]}
    ok(vertex, PRO3 + ":generateContent", body)


@pytest.fixture
def chat(vertex: FakeVertex) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        api_key="good", base_url=vertex.url + CHAT.removesuffix("/chat/completions"), max_retries=0
    ) as c:
        yield c


CHAT_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


def chat_history(chat: openai.OpenAI, model: str) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [{"role": "system", "content": "s"}, {"role": "user", "content": "weather?"}]
    first = chat.chat.completions.create(model=model, messages=messages, tools=CHAT_TOOLS)
    call = first.choices[0].message.tool_calls[0]
    messages.append(first.choices[0].message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": "sunny"})
    return messages


def test_chat_signature_rule(vertex: FakeVertex, chat: openai.OpenAI) -> None:
    model = "google/gemini-3.1-pro-preview"
    messages = chat_history(chat, model)
    answer = chat.chat.completions.create(model=model, messages=messages, tools=CHAT_TOOLS)
    assert answer.choices[0].message.content == "tool said: sunny"
    assert vertex.signatures_returned == vertex.signatures_issued

    missing = copy.deepcopy(messages)
    del missing[2]["tool_calls"][0]["extra_content"]
    with pytest.raises(openai.BadRequestError) as refused:
        chat.chat.completions.create(model=model, messages=missing, tools=CHAT_TOOLS)
    body = refused.value.response.json()
    assert isinstance(body, list), "the OpenAI-compatible endpoint wraps this error in a list"
    # The system message is not a content: the assistant message is the 2nd content block.
    assert body[0]["error"] == {
        "code": 400,
        "message": missing_signature("get_weather", 2),
        "status": "INVALID_ARGUMENT",
    }

    forged = copy.deepcopy(messages)
    forged[2]["tool_calls"][0]["extra_content"]["google"]["thought_signature"] = "c2lnbmF0dXJl+/=="
    with pytest.raises(openai.BadRequestError) as refused:
        chat.chat.completions.create(model=model, messages=forged, tools=CHAT_TOOLS)
    assert refused.value.response.json()[0]["error"]["message"] == INVALID_SIGNATURE

    dummy = copy.deepcopy(messages)
    dummy[2]["tool_calls"][0]["extra_content"]["google"]["thought_signature"] = SKIP_SIGNATURE
    chat.chat.completions.create(model=model, messages=dummy, tools=CHAT_TOOLS)
    assert vertex.signatures_dummy == [SKIP_SIGNATURE]

    # Gemini 2.5 does not enforce.
    chat.chat.completions.create(model="google/gemini-2.5-flash", messages=missing, tools=CHAT_TOOLS)
    chat.chat.completions.create(model="google/gemini-2.5-flash", messages=forged, tools=CHAT_TOOLS)
    # A new user message starts a new turn: the old one is not checked.
    closed = [*missing, {"role": "assistant", "content": "ok"}, {"role": "user", "content": "thanks"}]
    chat.chat.completions.create(model=model, messages=closed, tools=CHAT_TOOLS)


def test_chat_call_control(vertex: FakeVertex, chat: openai.OpenAI) -> None:
    vertex.push({"call": {"name": "read", "args": {"path": "/etc/hostname"}}})
    reply = chat.chat.completions.create(model="google/gemini-2.5-flash", messages=[{"role": "user", "content": "x"}])
    call = reply.choices[0].message.tool_calls[0]
    assert call.function.name == "read" and json.loads(call.function.arguments) == {"path": "/etc/hostname"}
    assert reply.choices[0].finish_reason == "tool_calls"
    assert call.model_dump()["extra_content"]["google"]["thought_signature"] == vertex.signatures_issued[-1]
