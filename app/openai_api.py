"""The OpenAI client API: /v1/models and /v1/models/{id} from the alias table, and the upstream of
/v1/chat/completions, Vertex's OpenAI-compatible chat endpoint for Gemini."""

import logging
from typing import Any

import orjson

from app.aliases import Model
from app.apis import client_api_of, client_apis_of
from app.auth import authorize
from app.errors import JSON_HEADERS, GatewayError
from app.pipeline import Call, Endpoint
from app.thought_signatures import ChatAnswer, restore_chat
from app.upstream_call import UpstreamCall

logger = logging.getLogger("app")

# Fixed so the list is stable across deploys; OpenAI clients only display it.
MODEL_CREATED = 1735689600


def model_object(model: Model) -> dict[str, object]:
    return {
        "id": model.alias,
        "object": "model",
        "created": MODEL_CREATED,
        "owned_by": model.publisher,
        "vertex_id": model.vertex_id,
        "api": client_api_of(model).name,  # the API the model is native to
        "apis": [api.name for api in client_apis_of(model)],  # every API it is served on
    }


class ModelList(Endpoint):
    async def handle(self, call: Call) -> None:
        record = await self.authenticate(call)
        visible = [m for m in self.gateway.models.models if record.may_use(m)]
        await call.out.whole(
            200, JSON_HEADERS, orjson.dumps({"object": "list", "data": [model_object(m) for m in visible]})
        )


class ModelGet(Endpoint):
    async def handle(self, call: Call) -> None:
        record = await self.authenticate(call)
        name = call.scope["path_params"]["model_id"]
        model = self.gateway.models.get(name) or self.gateway.models.passthrough(name)
        if model is None:
            raise GatewayError(
                404,
                f"Model {name[:200]!r} does not exist here. Valid models: {', '.join(self.gateway.models.aliases)}",
                param="model",
                code="model_not_found",
            )
        authorize(record, model)
        call.line.alias, call.line.vertex_model = model.alias, model.vertex_id
        await call.out.whole(200, JSON_HEADERS, orjson.dumps(model_object(model)))


class VertexChat:
    """Vertex's OpenAI-compatible chat completions, for Gemini."""

    def prepare(self, call: Call, model: Model, request: dict[str, Any]) -> UpstreamCall:
        # "model" changes, and thought signatures ride in tool call ids (app/thought_signatures.py): the
        # history gets back the ids and signatures Vertex issued, and where tools are offered the answer's
        # signed calls get ids that carry their signatures. Every other field passes as sent.
        request["model"] = model.vertex_id
        messages = request.get("messages")
        if isinstance(messages, list):
            counts = restore_chat(messages, model.vertex_id)
            if counts:
                call.line.thought_signatures = counts
                logger.debug("thought signatures for %s: %s", model.vertex_id, counts)
        # No tools, no tool calls: the answer passes through untouched.
        answer = ChatAnswer() if request.get("tools") else None
        return UpstreamCall(
            call.gateway.urls.chat_completions, orjson.dumps(request), request.get("stream") is True, answer=answer
        )
