"""The Anthropic Messages client API's upstreams, for /v1/messages and /v1/messages/count_tokens:
Claude on Vertex, and Gemini through a translator.

Vertex takes the Anthropic body for Claude nearly as is: the model moves into the URL (count-tokens
keeps it in the body, as the Vertex name), the version is Vertex's own, and betas travel in the body
instead of a header. For Gemini, gemini_messages translates to native generateContent and back.
"""

import logging
from typing import Any

import orjson

from app.aliases import Model
from app.gemini_messages import CountTokensAnswer, MessagesAnswer, Translated, count_tokens_request, gemini_request
from app.pipeline import Call
from app.upstream_call import UpstreamCall

logger = logging.getLogger("app.anthropic")

VERTEX_ANTHROPIC_VERSION = "vertex-2023-10-16"


def _betas(headers: dict[bytes, bytes], body: dict[str, Any], allowed: frozenset[str]) -> list[str]:
    wanted = [b.strip() for b in headers.get(b"anthropic-beta", b"").decode("latin-1").split(",") if b.strip()]
    in_body = body.get("anthropic_beta")
    if isinstance(in_body, list):
        wanted += [b for b in in_body if isinstance(b, str)]
    kept = [b for b in dict.fromkeys(wanted) if b in allowed]
    dropped = [b for b in wanted if b not in allowed]
    if dropped:
        logger.debug("dropped anthropic betas Vertex is not known to accept: %s", ", ".join(dropped))
    return kept


def _for_vertex(call: Call, request: dict[str, Any]) -> dict[str, Any]:
    betas = _betas(call.headers, request, call.gateway.settings.anthropic_betas)
    request.pop("anthropic_beta", None)
    if betas:
        request["anthropic_beta"] = betas
    request["anthropic_version"] = VERTEX_ANTHROPIC_VERSION
    return request


class ClaudeMessages:
    """`:rawPredict` / `:streamRawPredict` of the model."""

    def prepare(self, call: Call, model: Model, request: dict[str, Any]) -> UpstreamCall:
        request = _for_vertex(call, request)
        del request["model"]  # Vertex takes it from the URL and refuses it in the body
        stream = request.get("stream") is True
        return UpstreamCall(call.gateway.urls.raw_predict(model, stream), orjson.dumps(request), stream)


class ClaudeCountTokens:
    """`count-tokens:rawPredict`, in a region that serves it."""

    def prepare(self, call: Call, model: Model, request: dict[str, Any]) -> UpstreamCall:
        request = _for_vertex(call, request)
        request["model"] = model.name  # Vertex's id, without the publisher
        request.pop("stream", None)
        return UpstreamCall(call.gateway.urls.count_tokens, orjson.dumps(request), False)


def _note(call: Call, translated: Translated) -> bytes:
    call.line.upstream_api = "gemini"
    call.line.dropped_tools = translated.dropped_tools or None
    call.line.thought_signatures = translated.signatures or None
    return orjson.dumps(translated.body)


class GeminiMessages:
    """Gemini's native `:generateContent` / `:streamGenerateContent`, translated from and to Messages."""

    def prepare(self, call: Call, model: Model, request: dict[str, Any]) -> UpstreamCall:
        stream = request.get("stream") is True
        payload = _note(call, gemini_request(request, model.name))
        answer = MessagesAnswer(str(request["model"]))
        return UpstreamCall(call.gateway.urls.generate_content(model, stream), payload, stream, answer)


class GeminiCountTokens:
    """Gemini's own `:countTokens`, so the count is the model's, not an estimate."""

    def prepare(self, call: Call, model: Model, request: dict[str, Any]) -> UpstreamCall:
        payload = _note(call, count_tokens_request(request, model.name))
        return UpstreamCall(call.gateway.urls.count_gemini_tokens(model), payload, False, CountTokensAnswer())
