"""Anthropic Messages routes: /v1/messages and /v1/messages/count_tokens to Claude on Vertex.

Vertex takes the Anthropic body nearly as is: the model moves into the URL, the
version is Vertex's own, and betas travel in the body instead of a header.
"""

import logging
from typing import Any

import orjson
from starlette.types import Receive, Scope, Send

from app.aliases import Model
from app.endpoint import ApiEndpoint
from app.errors import Shape
from app.logs import RequestLog
from app.state import Gateway

log = logging.getLogger("app.anthropic")

VERTEX_ANTHROPIC_VERSION = "vertex-2023-10-16"


def _betas(headers: dict[bytes, bytes], body: dict[str, Any], allowed: frozenset[str]) -> list[str]:
    wanted = [b.strip() for b in headers.get(b"anthropic-beta", b"").decode("latin-1").split(",") if b.strip()]
    in_body = body.get("anthropic_beta")
    if isinstance(in_body, list):
        wanted += [b for b in in_body if isinstance(b, str)]
    kept = [b for b in dict.fromkeys(wanted) if b in allowed]
    dropped = [b for b in wanted if b not in allowed]
    if dropped:
        log.debug("dropped anthropic betas Vertex is not known to accept: %s", ", ".join(dropped))
    return kept


class _ClaudeEndpoint(ApiEndpoint):
    shape = Shape.ANTHROPIC

    async def _claude_request(
        self, gateway: Gateway, scope: Scope, receive: Receive, headers: dict[bytes, bytes], log: RequestLog
    ) -> tuple[Model, dict[str, Any]]:
        model, request = await self.model_request(gateway, scope, receive, headers, log, "anthropic")
        betas = _betas(headers, request, gateway.settings.anthropic_betas)
        request.pop("anthropic_beta", None)
        if betas:
            request["anthropic_beta"] = betas
        request["anthropic_version"] = VERTEX_ANTHROPIC_VERSION
        return model, request


class Messages(_ClaudeEndpoint):
    async def handle(
        self, gateway: Gateway, scope: Scope, receive: Receive, send: Send, headers: dict[bytes, bytes], log: RequestLog
    ) -> None:
        model, request = await self._claude_request(gateway, scope, receive, headers, log)
        del request["model"]  # Vertex takes it from the URL and refuses it in the body
        stream = request.get("stream") is True
        url = gateway.urls.raw_predict(model, stream)
        await self.forward(gateway, url, orjson.dumps(request), stream, receive, send, log)


class CountTokens(_ClaudeEndpoint):
    async def handle(
        self, gateway: Gateway, scope: Scope, receive: Receive, send: Send, headers: dict[bytes, bytes], log: RequestLog
    ) -> None:
        model, request = await self._claude_request(gateway, scope, receive, headers, log)
        request["model"] = model.name  # Vertex's id, without the publisher
        request.pop("stream", None)
        await self.forward(gateway, gateway.urls.count_tokens, orjson.dumps(request), False, receive, send, log)
