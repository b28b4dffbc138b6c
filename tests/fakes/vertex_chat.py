"""Replies of Vertex's OpenAI-compatible chat endpoint, as plain data.

`FakeVertex` decides how to deliver them (paced, gated, cut short); this module
only decides what Gemini would say, and which requests Gemini 3 refuses for their
thought signatures (the rule is the same on the native API, tests/fakes/vertex_gemini.py).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import random
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Event = tuple[str | None, Any]  # (SSE event name, payload dict or literal str)

GEMINI_REFERENCE = "https://cloud.google.com/vertex-ai/generative-ai/docs/model-reference/gemini"
SIGNATURE_DOCS = "https://docs.cloud.google.com/vertex-ai/generative-ai/docs/thought-signatures"
# The dummy Vertex accepts in place of a signature the model never issued ("Using REST or manual handling"
# in SIGNATURE_DOCS). The Gemini API also takes "context_engineering_is_the_way_to_go"; Vertex does not
# (pydantic/pydantic-ai#3881), so here that one is just a signature this fake never issued.
SKIP_SIGNATURE = "skip_thought_signature_validator"
_BASE64 = re.compile(r"[A-Za-z0-9+/_-]*={0,2}")


def signature_bytes(signature: Any) -> bytes | None:
    """The bytes a signature stands for, or None if it is not base64.

    A signature is a protobuf `bytes` field, and protobuf's JSON reads standard or URL-safe base64, padded
    or not (https://protobuf.dev/programming-guides/json/): google-genai sends signatures back URL-safe
    (googleapis/python-genai#2105) and Vertex takes them. Every spelling of the same bytes is one signature.
    """
    if not isinstance(signature, str) or not _BASE64.fullmatch(signature):
        return None
    body = signature.rstrip("=").replace("-", "+").replace("_", "/")
    if len(body) % 4 == 1:
        return None
    try:
        return base64.b64decode(body + "=" * (-len(body) % 4))
    except binascii.Error:
        return None


DUMMY_BYTES = signature_bytes(SKIP_SIGNATURE)


def is_dummy(signature: Any) -> bool:
    return signature_bytes(signature) == DUMMY_BYTES


# Vertex's words for a signature that is present but not one it issued (bobrware/bobrchat#120, on Vertex;
# the Gemini API says "Corrupted thought signature."). Gemini 3 only, like the missing-signature rule.
INVALID_SIGNATURE = f"Unable to submit request because Thought signature is not valid.. Learn more: {GEMINI_REFERENCE}"


def missing_signature(function: str, block: int) -> str:
    """Vertex's refusal of a current-turn step whose first function call has no signature.

    `block` counts the request's contents from 1 (system messages are not contents). Vertex names the
    function `default_api:<name>` (openai/openai-agents-python#2137 on the OpenAI-compatible endpoint,
    pydantic/pydantic-ai#3881 natively); some native reports show the bare name.
    """
    return (
        f"Unable to submit request because function call `default_api:{function}` in the {block}. content block"
        f" is missing a `thought_signature`. Learn more: {SIGNATURE_DOCS}"
    )


def is_gemini_3(model: str) -> bool:
    """Gemini 3 models enforce the signature rule; Gemini 3 Pro Image does not (SIGNATURE_DOCS)."""
    name = model.rsplit("/", 1)[-1]
    return name.startswith("gemini-3") and "image" not in name


def new_signature() -> str:
    """An opaque base64 signature as long as real ones (hundreds of characters, e.g. "EvMJCvAJAb4+9vu/...").

    The fixed "+//+" group and the "==" padding make any re-encoding (URL-safe, unpadded) visible.
    """
    body = os.urandom(3 * random.randrange(80, 200) + 1)  # 330 to 810 characters
    return base64.b64encode(b"\x12\x34\x56\xfb\xff\xfe" + body).decode()


@dataclass
class SignatureCheck:
    """Gemini 3's verdict on the signatures a request carries back, and what it carried (for the tests)."""

    problem: str | None = None
    returned: list[str] = field(default_factory=list)  # other signatures on function calls, as spelled
    dummies: list[str] = field(default_factory=list)  # the documented dummy, wherever it stood


def judge_signature(
    signature: Any, function: str, block: int, known: Callable[[str], bool], check: SignatureCheck
) -> None:
    """Gemini 3's rule for the first function call of one current-turn step."""
    if check.problem is not None:
        return
    if not isinstance(signature, str) or not signature:
        check.problem = missing_signature(function, block)
    elif not is_dummy(signature) and not known(signature):
        check.problem = INVALID_SIGNATURE


def message_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, dict)]
        return "".join(p for p in parts if isinstance(p, str))
    return ""


def last_user_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return message_text(message.get("content"))
    return ""


def arguments_for(schema: Any) -> dict[str, Any]:
    """Plausible arguments satisfying a schema's top-level properties (JSON Schema, or Vertex's upper-case types)."""
    samples = {"string": "Paris", "integer": 1, "number": 1.5, "boolean": True}
    props = schema.get("properties", {}) if isinstance(schema, dict) else {}
    args: dict[str, Any] = {}
    for name, spec in props.items():
        kind = spec.get("type", "string") if isinstance(spec, dict) else "string"
        args[name] = samples.get(kind.lower() if isinstance(kind, str) else "string", "Paris")
    return args


def count_words(value: Any) -> int:
    return max(1, len(re.findall(r"\S+", json.dumps(value))))


@dataclass
class ChatPlan:
    """What the fake will answer to one chat request."""

    completion: dict[str, Any]
    events: list[Event] = field(default_factory=list)
    signature: str | None = None  # the thought signature issued, if any


def _call_signature(call: Any) -> Any:
    extra = call.get("extra_content") if isinstance(call, dict) else None
    google = extra.get("google") if isinstance(extra, dict) else None
    return google.get("thought_signature") if isinstance(google, dict) else None


def _user_content(content: Any) -> bool:
    """Whether a user message holds what Gemini calls standard content (text, an image...)."""
    if isinstance(content, str):
        return bool(content)
    return isinstance(content, list) and any(isinstance(p, dict | str) for p in content)


def check_chat_signatures(messages: Any, enforce: bool, known: Callable[[str], bool]) -> SignatureCheck:
    """The signatures assistant tool calls carry back, and (Gemini 3) the refusal Vertex would answer.

    The current turn starts after the last user message with standard content; the first tool call
    of each assistant message in it needs `extra_content.google.thought_signature`. Vertex numbers the
    contents it builds: system messages go to the system instruction, consecutive tool results share one.
    """
    check = SignatureCheck()
    if not isinstance(messages, list):
        return check
    blocks: list[int] = []
    number, after_tool = 0, False
    for message in messages:
        role = message.get("role") if isinstance(message, dict) else None
        if role in ("system", "developer"):
            blocks.append(0)
            continue
        tool = role in ("tool", "function")
        if not (tool and after_tool):
            number += 1
        after_tool = tool
        blocks.append(number)
    start = 0
    for i, message in enumerate(messages):
        if isinstance(message, dict) and message.get("role") == "user" and _user_content(message.get("content")):
            start = i + 1
    for i, message in enumerate(messages):
        calls = message.get("tool_calls") if isinstance(message, dict) and message.get("role") == "assistant" else None
        if not isinstance(calls, list) or not calls:
            continue
        for call in calls:
            signature = _call_signature(call)
            if is_dummy(signature):
                check.dummies.append(signature)
            elif isinstance(signature, str) and signature:
                check.returned.append(signature)
        if enforce and i >= start:
            function = calls[0].get("function") if isinstance(calls[0], dict) else None
            name = function.get("name") if isinstance(function, dict) else None
            judge_signature(_call_signature(calls[0]), str(name or ""), blocks[i], known, check)
    return check


def plan_chat(body: dict[str, Any], controls: dict[str, Any]) -> ChatPlan:
    messages = body.get("messages") or []
    model = body["model"]
    created = int(time.time())
    ident = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    tools = body.get("tools") or []
    last = messages[-1] if messages and isinstance(messages[-1], dict) else {}
    prompt_tokens = count_words(messages)

    tool_call: dict[str, Any] | None = None
    signature = None
    call = controls.get("call")
    if isinstance(call, dict) or (tools and last.get("role") != "tool"):
        if isinstance(call, dict):  # scripted: exactly this function, these arguments
            name, arguments = str(call.get("name", "tool")), call.get("args") or {}
        else:
            function = tools[0].get("function", {})
            name, arguments = function.get("name", "tool"), arguments_for(function.get("parameters"))
        signature = new_signature()
        tool_call = {
            "id": f"call_{uuid.uuid4().hex[:20]}",
            "type": "function",
            "function": {"name": name, "arguments": json.dumps(arguments)},
            "extra_content": {"google": {"thought_signature": signature}},
        }
        text = None
        pieces: list[str] = []
    else:
        tool_results = [
            message_text(m.get("content")) for m in messages if isinstance(m, dict) and m.get("role") == "tool"
        ]
        text = "tool said: " + " | ".join(tool_results) if tool_results else "echo: " + last_user_text(messages)
        chunks = controls.get("chunks")
        if isinstance(chunks, int) and chunks > 0:
            pieces = [text] + [f" #{i}" for i in range(1, chunks)]
            text = "".join(pieces)
        else:
            pieces = re.findall(r"\s*\S+", text) or [text]

    completion_tokens = count_words(text if tool_call is None else tool_call)
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    finish = "tool_calls" if tool_call else "stop"
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if tool_call:
        message["tool_calls"] = [tool_call]
    completion = {
        "id": ident,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": usage,
    }

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        }

    events: list[Event] = [(None, chunk({"role": "assistant"}))]
    if tool_call:
        args = tool_call["function"]["arguments"]
        head = dict(
            tool_call,
            index=0,
            function={"name": tool_call["function"]["name"], "arguments": ""},
        )
        events.append((None, chunk({"tool_calls": [head]})))
        half = len(args) // 2
        for frag in (args[:half], args[half:]):
            events.append(
                (
                    None,
                    chunk({"tool_calls": [{"index": 0, "function": {"arguments": frag}}]}),
                )
            )
    else:
        events.extend((None, chunk({"content": piece})) for piece in pieces)
    last_chunk = chunk({}, finish)
    last_chunk["usage"] = usage
    events.append((None, last_chunk))
    events.append((None, "[DONE]"))
    return ChatPlan(completion=completion, events=events, signature=signature)
