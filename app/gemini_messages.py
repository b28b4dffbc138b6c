"""Anthropic Messages to Gemini's native generateContent, and Gemini's answer back to Anthropic's.

The request goes one way (`gemini_request`), the answer the other: `MessagesAnswer` makes an
Anthropic message from a whole GenerateContentResponse, or the exact Anthropic event sequence from
Gemini's SSE stream as each event arrives. `count_tokens_request`/`CountTokensAnswer` do the same for
count_tokens.

Gemini 3 refuses a tool turn whose function call lost its thought signature, and the gateway keeps
no state, so the signature rides in the `tool_use` id Anthropic clients echo back (thought_signatures).
"""

from __future__ import annotations

import logging
import mimetypes
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

from app import thought_signatures
from app.errors import GatewayError
from app.gemini_schema import gemini_schema, is_empty_object

logger = logging.getLogger("app.gemini")

# finishReason -> Anthropic stop_reason. Every safety/policy stop is Anthropic's "refusal".
_STOP_REASONS = {
    "STOP": "end_turn",
    "MAX_TOKENS": "max_tokens",
    "SAFETY": "refusal",
    "RECITATION": "refusal",
    "BLOCKLIST": "refusal",
    "PROHIBITED_CONTENT": "refusal",
    "SPII": "refusal",
    "IMAGE_SAFETY": "refusal",
    "LANGUAGE": "refusal",
}
# Gemini produced a function call it could not form: nothing usable to hand on.
_BROKEN_CALLS = {"MALFORMED_FUNCTION_CALL", "UNEXPECTED_TOOL_CALL"}
TOOL_CHOICE_MODES = {"auto": "AUTO", "any": "ANY", "tool": "ANY", "none": "NONE"}
# Gemini's documented thinking-budget ceilings; Claude Code asks for up to 31999.
MAX_THINKING_BUDGET_FLASH = 24576
MAX_THINKING_BUDGET = 32768


@dataclass(slots=True)
class Translated:
    """A Gemini request body, and what the translation had to leave out or fill in (for the log line)."""

    body: dict[str, Any]
    dropped_tools: list[str] = field(default_factory=list)
    signatures: dict[str, int] = field(default_factory=dict)
    system_messages: list[str] = field(default_factory=list)  # role "system" turns, for the system instruction


def invalid(message: str, param: str | None = None) -> GatewayError:
    return GatewayError(400, message, param=param, code="invalid_request")


# -- request ---------------------------------------------------------------------------------------


def gemini_request(request: dict[str, Any], model_name: str) -> Translated:
    """The generateContent body for an Anthropic Messages request (already parsed, model resolved)."""
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid("messages: a non-empty list of {role, content} objects is required", "messages")
    out = Translated({})
    body = out.body
    body["contents"] = _contents(messages, model_name, out)
    system = [_text_of(request.get("system"), "system"), *out.system_messages]
    if any(system):
        body["systemInstruction"] = {"parts": [{"text": text} for text in system if text]}
    tools = _tools(request.get("tools"), out)
    if tools:
        body["tools"] = [{"functionDeclarations": tools}]
        config = _tool_config(request.get("tool_choice"), {t["name"] for t in tools})
        if config:
            body["toolConfig"] = {"functionCallingConfig": config}
    generation = _generation_config(request, model_name)
    if generation:
        body["generationConfig"] = generation
    return out


def _contents(messages: list[Any], model_name: str, out: Translated) -> list[dict[str, Any]]:
    names_by_id: dict[str, str] = {}
    contents: list[dict[str, Any]] = []
    needs_signature = thought_signatures.requires_signatures(model_name)
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise invalid(f"{where}: each message must be an object with 'role' and 'content'", where)
        role = message.get("role")
        if role not in ("user", "assistant", "system"):
            raise invalid(f"{where}.role: must be 'user' or 'assistant', not {role!r}", f"{where}.role")
        if role == "system":
            # Claude Code sends role "system" inside messages (its environment, agent lists). Gemini has no
            # such turn; its system instruction is where the same authority lives, so the text goes there,
            # in order, rather than into the user's mouth.
            out.system_messages.append(_text_of(message.get("content"), f"{where}.content"))
            continue
        if role == "assistant":
            parts = _assistant_parts(message.get("content"), where, names_by_id, out)
            if needs_signature:
                _sign_first_call(parts, out)
            gemini_role = "model"
        else:
            parts = _user_parts(message.get("content"), where, names_by_id)
            gemini_role = "user"
        if not parts:
            continue  # Gemini refuses a turn without parts; an empty one says nothing
        if contents and contents[-1]["role"] == gemini_role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": gemini_role, "parts": parts})
    if not contents:
        raise invalid("messages: every message is empty; send at least one with text", "messages")
    return contents


def _sign_first_call(parts: list[dict[str, Any]], out: Translated) -> None:
    """Gemini 3 wants the first function call of each model turn signed; where the client could not
    give one back (history from another model), the documented dummy stands in."""
    for part in parts:
        if "functionCall" in part:
            if "thoughtSignature" not in part:
                part["thoughtSignature"] = thought_signatures.DUMMY
                out.signatures["dummy"] = out.signatures.get("dummy", 0) + 1
            return


def _blocks(content: Any, where: str) -> list[Any]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        return content
    raise invalid(f"{where}.content: must be a string or a list of content blocks", f"{where}.content")


def _assistant_parts(content: Any, where: str, names_by_id: dict[str, str], out: Translated) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for i, block in enumerate(_blocks(content, where)):
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            if block.get("text"):
                parts.append({"text": str(block["text"])})
        elif kind == "tool_use":
            call_id, name = block.get("id"), block.get("name")
            if not isinstance(call_id, str) or not isinstance(name, str) or not name:
                raise invalid(f"{where}.content[{i}]: tool_use needs a string 'id' and 'name'", f"{where}.content")
            names_by_id[call_id] = name
            args = block.get("input")
            part: dict[str, Any] = {"functionCall": {"name": name, "args": args if isinstance(args, dict) else {}}}
            _, signature = thought_signatures.split(call_id)
            if signature:
                part["thoughtSignature"] = signature
                out.signatures["restored"] = out.signatures.get("restored", 0) + 1
            parts.append(part)
        # thinking / redacted_thinking: Gemini takes no earlier thoughts back (its signatures travel in
        # tool ids), and another model's signed thinking would only be refused. Other kinds: nothing to say.
    return parts


def _user_parts(content: Any, where: str, names_by_id: dict[str, str]) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for i, block in enumerate(_blocks(content, where)):
        at = f"{where}.content[{i}]"
        if not isinstance(block, dict):
            raise invalid(f"{at}: a content block must be an object with a 'type'", at)
        kind = block.get("type")
        if kind == "text":
            if block.get("text"):
                parts.append({"text": str(block["text"])})
        elif kind in ("image", "document"):
            parts.extend(_media(block, at))
        elif kind == "tool_result":
            parts.extend(_tool_result(block, at, names_by_id))
        elif kind in ("thinking", "redacted_thinking", "search_result", "server_tool_use"):
            continue
        else:
            raise invalid(f"{at}: content block type {kind!r} is not supported for Gemini models", at)
    return parts


def _media(block: dict[str, Any], at: str) -> list[dict[str, Any]]:
    source = block.get("source")
    if not isinstance(source, dict):
        raise invalid(f"{at}.source: an object with 'type' base64, url or text is required", f"{at}.source")
    kind = source.get("type")
    if kind == "base64":
        mime, data = source.get("media_type"), source.get("data")
        if not isinstance(mime, str) or not isinstance(data, str):
            raise invalid(f"{at}.source: base64 needs 'media_type' and 'data'", f"{at}.source")
        return [{"inlineData": {"mimeType": mime, "data": data}}]
    if kind == "url":
        url = source.get("url")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise invalid(f"{at}.source.url: an http(s) URL is required", f"{at}.source.url")
        default = "application/pdf" if block.get("type") == "document" else "image/jpeg"
        mime = mimetypes.guess_type(url.split("?", 1)[0])[0] or default
        return [{"fileData": {"mimeType": mime, "fileUri": url}}]
    if kind == "text":
        data = source.get("data")
        return [{"text": str(data)}] if data else []
    if kind == "content":
        return [{"text": text} for text in [_text_of(source.get("content"), f"{at}.source.content")] if text]
    raise invalid(f"{at}.source.type: {kind!r} is not supported for Gemini models (use base64, url or text)", at)


def _tool_result(block: dict[str, Any], at: str, names_by_id: dict[str, str]) -> list[dict[str, Any]]:
    call_id = block.get("tool_use_id")
    name = names_by_id.get(call_id) if isinstance(call_id, str) else None
    if name is None:
        raise invalid(
            f"{at}: tool_result refers to tool_use_id {call_id!r}, which no earlier assistant tool_use has; "
            "send the assistant turn that called the tool before its result",
            f"{at}.tool_use_id",
        )
    content = block.get("content", "")
    texts: list[str] = []
    media: list[dict[str, Any]] = []
    for i, inner in enumerate(_blocks(content, at) if content else []):
        if isinstance(inner, dict) and inner.get("type") in ("image", "document"):
            media.extend(_media(inner, f"{at}.content[{i}]"))
        elif isinstance(inner, dict) and inner.get("type") == "text":
            texts.append(str(inner.get("text", "")))
    key = "error" if block.get("is_error") else "content"
    return [{"functionResponse": {"name": name, "response": {key: "\n".join(texts)}}}, *media]


def _text_of(value: Any, where: str) -> str:
    """System prompts and text-only content: a string or a list of text blocks."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(str(b.get("text", "")) for b in value if isinstance(b, dict) and b.get("type") == "text")
    raise invalid(f"{where}: must be a string or a list of text blocks", where)


def _tools(tools: Any, out: Translated) -> list[dict[str, Any]]:
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise invalid("tools: must be a list of tool definitions", "tools")
    declarations = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
            raise invalid(f"tools[{i}]: each tool needs a 'name'", f"tools[{i}]")
        if tool.get("type") not in (None, "custom") or "input_schema" not in tool:
            # A server tool (web search, code execution, ...) Anthropic runs itself: Gemini cannot.
            out.dropped_tools.append(tool["name"])
            continue
        declaration: dict[str, Any] = {"name": tool["name"]}
        if isinstance(tool.get("description"), str):
            declaration["description"] = tool["description"]
        parameters = gemini_schema(tool["input_schema"])
        if not is_empty_object(parameters):
            declaration["parameters"] = parameters
        declarations.append(declaration)
    if out.dropped_tools:
        logger.info("tools Gemini cannot run were left out: %s", ", ".join(out.dropped_tools))
    return declarations


def _tool_config(choice: Any, names: set[str]) -> dict[str, Any] | None:
    if choice is None:
        return None
    kind = choice.get("type") if isinstance(choice, dict) else None
    mode = TOOL_CHOICE_MODES.get(kind) if isinstance(kind, str) else None
    if mode is None:
        raise invalid("tool_choice.type: must be auto, any, tool or none", "tool_choice")
    config: dict[str, Any] = {"mode": mode}
    if kind == "tool":
        name = choice.get("name")
        if name not in names:
            raise invalid(f"tool_choice.name: {name!r} is not one of the tools offered", "tool_choice.name")
        config["allowedFunctionNames"] = [name]
    return config


def _number(request: dict[str, Any], name: str) -> float | int | None:
    value = request.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise invalid(f"{name}: must be a number", name)
    return value


def _generation_config(request: dict[str, Any], model_name: str) -> dict[str, Any]:
    config: dict[str, Any] = {}
    max_tokens = request.get("max_tokens")
    if max_tokens is not None:
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise invalid("max_tokens: must be a positive integer", "max_tokens")
        config["maxOutputTokens"] = max_tokens
    for ours, theirs in (("temperature", "temperature"), ("top_p", "topP"), ("top_k", "topK")):
        value = _number(request, ours)
        if value is not None:
            config[theirs] = value
    stops = request.get("stop_sequences")
    if isinstance(stops, list) and stops:
        config["stopSequences"] = [s for s in stops if isinstance(s, str)][:5]
    thinking = request.get("thinking")
    if isinstance(thinking, dict):
        ceiling = MAX_THINKING_BUDGET_FLASH if "flash" in model_name else MAX_THINKING_BUDGET
        kind = thinking.get("type")
        budget = thinking.get("budget_tokens")
        if kind == "enabled" and isinstance(budget, int) and not isinstance(budget, bool):
            config["thinkingConfig"] = {"includeThoughts": True, "thinkingBudget": max(0, min(budget, ceiling))}
        elif kind in ("enabled", "adaptive"):
            config["thinkingConfig"] = {"includeThoughts": True}
        elif kind == "disabled" and "flash" in model_name and not model_name.startswith("gemini-3"):
            config["thinkingConfig"] = {"thinkingBudget": 0}  # only Flash below Gemini 3 may stop thinking
    return config


def count_tokens_request(request: dict[str, Any], model_name: str) -> Translated:
    """Vertex countTokens takes the same contents, system instruction and tools as generateContent."""
    translated = gemini_request(request, model_name)
    translated.body.pop("generationConfig", None)
    translated.body.pop("toolConfig", None)
    return translated


# -- answer ----------------------------------------------------------------------------------------


def _event(kind: str, data: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def _usage(metadata: Any) -> dict[str, int]:
    meta = metadata if isinstance(metadata, dict) else {}
    prompt = meta.get("promptTokenCount") or 0
    cached = meta.get("cachedContentTokenCount") or 0
    usage = {
        "input_tokens": max(0, prompt - cached),
        # Anthropic counts thinking in output_tokens; Gemini reports it apart.
        "output_tokens": (meta.get("candidatesTokenCount") or 0) + (meta.get("thoughtsTokenCount") or 0),
    }
    if cached:
        usage["cache_read_input_tokens"] = cached
    return usage


def _tool_use_id(part: dict[str, Any]) -> str:
    base = "toolu_" + uuid.uuid4().hex[:24]
    signature = part.get("thoughtSignature")
    return thought_signatures.carry(base, signature) if isinstance(signature, str) and signature else base


def _arguments(call: dict[str, Any]) -> dict[str, Any]:
    args = call.get("args")
    if isinstance(args, dict):
        return args
    if isinstance(args, str):  # not what Gemini sends, but a string of JSON is still the arguments
        try:
            parsed = orjson.loads(args)
        except orjson.JSONDecodeError:
            return {"arguments": args}
        return parsed if isinstance(parsed, dict) else {"value": parsed}
    return {}


def _candidate(response: dict[str, Any]) -> dict[str, Any]:
    candidates = response.get("candidates")
    if isinstance(candidates, list) and candidates and isinstance(candidates[0], dict):
        return candidates[0]
    return {}


def _parts(candidate: dict[str, Any]) -> list[dict[str, Any]]:
    content = candidate.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    return [p for p in parts if isinstance(p, dict)] if isinstance(parts, list) else []


def _broken_call(finish: Any) -> GatewayError:
    return GatewayError(
        502,
        f"Gemini could not form a valid tool call (finishReason {finish}); retry, or simplify the tool's schema",
        code="upstream_malformed_tool_call",
    )


class MessagesAnswer:
    """One Gemini answer, as an Anthropic message or Anthropic's stream of events."""

    def __init__(self, model: str) -> None:
        self.model = model  # as the caller named it
        self.usage: dict[str, int] | None = None
        self._id = "msg_" + uuid.uuid4().hex[:24]
        self._buffer = b""
        self._started = False
        self._open: str | None = None  # kind of the content block being streamed
        self._index = -1
        self._saw_call = False
        self._finish: Any = None
        self._blocked = False
        self._text_head = b""

    # -- whole --------------------------------------------------------------------------------

    def whole(self, body: bytes) -> bytes:
        try:
            response = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise GatewayError(
                502, "Vertex AI sent an answer that is not JSON; retry", code="upstream_invalid"
            ) from None
        if not isinstance(response, dict):
            raise GatewayError(
                502, "Vertex AI sent an answer that is not a JSON object; retry", code="upstream_invalid"
            )
        candidate = _candidate(response)
        finish = candidate.get("finishReason")
        if finish in _BROKEN_CALLS:
            raise _broken_call(finish)
        content: list[dict[str, Any]] = []
        for part in _parts(candidate):
            if "functionCall" in part and isinstance(part["functionCall"], dict):
                call = part["functionCall"]
                content.append(
                    {
                        "type": "tool_use",
                        "id": _tool_use_id(part),
                        "name": call.get("name", ""),
                        "input": _arguments(call),
                    }
                )
            elif part.get("thought") and isinstance(part.get("text"), str):
                content.append(
                    {"type": "thinking", "thinking": part["text"], "signature": part.get("thoughtSignature", "")}
                )
            elif isinstance(part.get("text"), str):
                if content and content[-1]["type"] == "text":
                    content[-1]["text"] += part["text"]
                else:
                    content.append({"type": "text", "text": part["text"]})
        self.usage = _usage(response.get("usageMetadata"))
        called = any(b["type"] == "tool_use" for b in content)
        return orjson.dumps(self._message(content, self._stop_reason(response, finish, called), self.usage))

    def _message(self, content: list[dict[str, Any]], stop_reason: str | None, usage: dict[str, int]) -> dict[str, Any]:
        return {
            "id": self._id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": usage,
        }

    @staticmethod
    def _stop_reason(response: dict[str, Any], finish: Any, called: bool) -> str:
        feedback = response.get("promptFeedback")
        if isinstance(feedback, dict) and feedback.get("blockReason"):
            return "refusal"
        if called:
            return "tool_use"
        return _STOP_REASONS.get(finish, "end_turn") if isinstance(finish, str) else "end_turn"

    # -- stream -------------------------------------------------------------------------------

    def chunk(self, data: bytes) -> bytes:
        buffer = self._buffer + data if self._buffer else data
        if b"\r" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n")
        end = buffer.rfind(b"\n\n")
        if end < 0:
            self._buffer = buffer
            return b""
        self._buffer = buffer[end + 2 :]
        out: list[bytes] = []
        for event in buffer[:end].split(b"\n\n"):
            if event.startswith(b"data:") and b"\n" not in event:
                self._on_response(event[5:], out)
                continue
            for line in event.split(b"\n"):
                if line.startswith(b"data:"):
                    self._on_response(line[5:], out)
        return b"".join(out)

    def _on_response(self, data: bytes, out: list[bytes]) -> None:
        try:
            response = orjson.loads(data)
        except orjson.JSONDecodeError:
            logger.warning("skipped a stream event from Vertex that is not JSON: %.200r", data)
            return
        if not isinstance(response, dict):
            return
        if not self._started:
            out.append(self._start(response))
        candidate = _candidate(response)
        for part in _parts(candidate):
            text = part.get("text")
            # The common case: more text for the text block already open.
            if self._open == "text" and type(text) is str and len(part) == 1:
                if text:
                    out.append(self._text_head + orjson.dumps(text) + b"}}\n\n")
                continue
            out.append(self._on_part(part))
        finish = candidate.get("finishReason")
        if finish:
            self._finish = finish
        if "promptFeedback" in response:
            feedback = response["promptFeedback"]
            if isinstance(feedback, dict) and feedback.get("blockReason"):
                self._blocked = True
        if response.get("usageMetadata"):
            self.usage = _usage(response["usageMetadata"])

    def _start(self, response: dict[str, Any]) -> bytes:
        if self._started:
            return b""
        self._started = True
        self.usage = _usage(response.get("usageMetadata"))
        message = self._message([], None, {"input_tokens": self.usage["input_tokens"], "output_tokens": 0})
        return _event("message_start", {"type": "message_start", "message": message}) + _event("ping", {"type": "ping"})

    def _open_block(self, kind: str, block: dict[str, Any]) -> bytes:
        out = self._close_block()
        self._index += 1
        self._open = kind
        self._text_head = (
            b'event: content_block_delta\ndata: {"type":"content_block_delta","index":%d,'
            b'"delta":{"type":"text_delta","text":' % self._index
        )
        return out + _event(
            "content_block_start", {"type": "content_block_start", "index": self._index, "content_block": block}
        )

    def _close_block(self) -> bytes:
        if self._open is None:
            return b""
        self._open = None
        return _event("content_block_stop", {"type": "content_block_stop", "index": self._index})

    def _delta(self, delta: dict[str, Any]) -> bytes:
        return _event("content_block_delta", {"type": "content_block_delta", "index": self._index, "delta": delta})

    def _on_part(self, part: dict[str, Any]) -> bytes:
        out = b""
        if "functionCall" in part and isinstance(part["functionCall"], dict):
            call = part["functionCall"]
            self._saw_call = True
            block = {"type": "tool_use", "id": _tool_use_id(part), "name": call.get("name", ""), "input": {}}
            out += self._open_block("tool_use", block)
            out += self._delta({"type": "input_json_delta", "partial_json": orjson.dumps(_arguments(call)).decode()})
            return out + self._close_block()
        text = part.get("text")
        if not isinstance(text, str):
            return out
        if part.get("thought"):
            if self._open != "thinking":
                out += self._open_block("thinking", {"type": "thinking", "thinking": "", "signature": ""})
            if text:
                out += self._delta({"type": "thinking_delta", "thinking": text})
            signature = part.get("thoughtSignature")
            if isinstance(signature, str) and signature:
                out += self._delta({"type": "signature_delta", "signature": signature})
            return out
        if self._open != "text":
            out += self._open_block("text", {"type": "text", "text": ""})
        if text:
            out += self._delta({"type": "text_delta", "text": text})
        return out

    def end(self) -> bytes:
        out = bytearray(self.chunk(b"\n\n") if self._buffer.strip() else b"")
        out += self._start({})
        if self._finish in _BROKEN_CALLS:
            out += self._close_block()
            return bytes(out) + self._error(_broken_call(self._finish).message)
        out += self._close_block()
        if self._blocked:
            stop = "refusal"
        elif self._saw_call:
            stop = "tool_use"
        else:
            stop = _STOP_REASONS.get(self._finish, "end_turn") if isinstance(self._finish, str) else "end_turn"
        usage = self.usage or {"input_tokens": 0, "output_tokens": 0}
        out += _event(
            "message_delta",
            {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None}, "usage": usage},
        )
        out += _event("message_stop", {"type": "message_stop"})
        return bytes(out)

    def broken(self, reason: str) -> bytes:
        return self._start({}) + self._error(reason)

    @staticmethod
    def _error(message: str) -> bytes:
        # Anthropic's own mid-stream failure event: the SDKs raise it as an APIError.
        return _event("error", {"type": "error", "error": {"type": "api_error", "message": message}})


class CountTokensAnswer:
    """Vertex countTokens' `totalTokens`, as Anthropic's `input_tokens`."""

    usage: dict[str, int] | None = None

    def whole(self, body: bytes) -> bytes:
        try:
            total = orjson.loads(body).get("totalTokens")
        except (orjson.JSONDecodeError, AttributeError):
            total = None
        if not isinstance(total, int):
            raise GatewayError(502, "Vertex AI's countTokens answer has no totalTokens; retry", code="upstream_invalid")
        return orjson.dumps({"input_tokens": total})

    def chunk(self, data: bytes) -> bytes:
        return data

    def end(self) -> bytes:
        return b""

    def broken(self, reason: str) -> bytes:
        return b""
