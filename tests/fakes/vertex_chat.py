"""Replies of Vertex's OpenAI-compatible chat endpoint, as plain data.

`FakeVertex` decides how to deliver them (paced, gated, cut short); this module
only decides what Gemini would say.
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

Event = tuple[str | None, Any]  # (SSE event name, payload dict or literal str)


def new_signature() -> str:
    # Real signatures are opaque base64; '+', '/' and '=' make any re-encoding visible.
    return base64.b64encode(b"\xfb\xff\xfe" + os.urandom(45)).decode()


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
    """Plausible arguments satisfying a JSON schema's top-level properties."""
    samples = {"string": "Paris", "integer": 1, "number": 1.5, "boolean": True}
    props = schema.get("properties", {}) if isinstance(schema, dict) else {}
    args: dict[str, Any] = {}
    for name, spec in props.items():
        kind = spec.get("type", "string") if isinstance(spec, dict) else "string"
        args[name] = samples.get(kind if isinstance(kind, str) else "string", "Paris")
    return args


def count_words(value: Any) -> int:
    return max(1, len(re.findall(r"\S+", json.dumps(value))))


@dataclass
class ChatPlan:
    """What the fake will answer to one chat request."""

    completion: dict[str, Any]
    events: list[Event] = field(default_factory=list)
    signature: str | None = None  # the thought signature issued, if any


def returned_signatures(messages: list[Any]) -> list[str]:
    found = []
    for message in messages:
        if not isinstance(message, dict) or message.get("role") != "assistant":
            continue
        for call in message.get("tool_calls") or []:
            google = (call.get("extra_content") or {}).get("google") or {}
            sig = google.get("thought_signature")
            if isinstance(sig, str):
                found.append(sig)
    return found


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
    if tools and last.get("role") != "tool":
        function = tools[0].get("function", {})
        signature = new_signature()
        tool_call = {
            "id": f"call_{uuid.uuid4().hex[:20]}",
            "type": "function",
            "function": {
                "name": function.get("name", "tool"),
                "arguments": json.dumps(arguments_for(function.get("parameters"))),
            },
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
