"""Replies of Claude on Vertex (Anthropic Messages API via rawPredict), as plain data."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from tests.fakes.vertex_chat import Event, arguments_for, count_words

VERTEX_ANTHROPIC_VERSION = "vertex-2023-10-16"


def body_problem(body: dict[str, Any]) -> str | None:
    """Why Vertex would refuse this rawPredict body, or None."""
    if "model" in body:
        return 'Invalid request: "model" must not be in the body; it is part of the URL.'
    if body.get("anthropic_version") != VERTEX_ANTHROPIC_VERSION:
        return f'Invalid request: "anthropic_version" must be "{VERTEX_ANTHROPIC_VERSION}".'
    if not isinstance(body.get("messages"), list) or not body["messages"]:
        return 'Invalid request: "messages" must be a non-empty list.'
    if not isinstance(body.get("max_tokens"), int):
        return 'Invalid request: "max_tokens" is required.'
    return None


def block_text(block: Any) -> str:
    if isinstance(block, str):
        return block
    if isinstance(block, dict):
        if block.get("type") == "text":
            return str(block.get("text", ""))
        if block.get("type") == "tool_result":
            return block_text(block.get("content", ""))
    if isinstance(block, list):
        return "".join(block_text(b) for b in block)
    return ""


def _tool_results(messages: list[Any]) -> list[str]:
    results = []
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            results += [block_text(b) for b in content if isinstance(b, dict) and b.get("type") == "tool_result"]
    return results


def _last_user_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return "".join(block_text(b) for b in content if isinstance(b, dict) and b.get("type") == "text")
            return block_text(content)
    return ""


def plan_message(model: str, body: dict[str, Any]) -> tuple[dict[str, Any], list[Event]]:
    messages = body["messages"]
    tools = body.get("tools") or []
    results = _tool_results(messages)
    input_tokens = count_words(messages)
    ident = f"msg_vrtx_{uuid.uuid4().hex[:24]}"
    if tools and not results:
        tool = tools[0]
        block: dict[str, Any] = {
            "type": "tool_use",
            "id": f"toolu_vrtx_{uuid.uuid4().hex[:20]}",
            "name": tool.get("name", "tool"),
            "input": arguments_for(tool.get("input_schema")),
        }
        stop_reason = "tool_use"
    else:
        text = "tool said: " + " | ".join(results) if results else "echo: " + _last_user_text(messages)
        block = {"type": "text", "text": text}
        stop_reason = "end_turn"
    output_tokens = count_words(block)
    message = {
        "id": ident,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [block],
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
    }
    start = dict(message, content=[], stop_reason=None)
    start["usage"] = {"input_tokens": input_tokens, "output_tokens": 1}
    events: list[Event] = [
        ("message_start", {"type": "message_start", "message": start}),
        ("ping", {"type": "ping"}),
    ]
    if block["type"] == "tool_use":
        opening = dict(block, input={})
        args = json.dumps(block["input"])
        deltas = [
            {"type": "input_json_delta", "partial_json": part}
            for part in (args[: len(args) // 2], args[len(args) // 2 :])
        ]
    else:
        opening = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": piece} for piece in re.findall(r"\s*\S+", block["text"])]
    events.append(
        (
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": opening},
        )
    )
    events += [("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": d}) for d in deltas]
    events.append(("content_block_stop", {"type": "content_block_stop", "index": 0}))
    events.append(
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": output_tokens},
            },
        )
    )
    events.append(("message_stop", {"type": "message_stop"}))
    return message, events


def count_tokens(body: dict[str, Any]) -> dict[str, Any]:
    return {"input_tokens": count_words(body.get("messages", [])) + count_words(body.get("system", ""))}
