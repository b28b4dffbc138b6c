"""OpenAI-compatible routes: /v1/models and /v1/chat/completions to Gemini on Vertex."""

import orjson
from starlette.types import Receive, Scope, Send

from app.aliases import Model
from app.auth import authorize
from app.endpoint import ApiEndpoint
from app.errors import JSON_HEADERS, GatewayError
from app.logs import RequestLog
from app.state import Gateway
from app.wire import send_response

# Fixed so the list is stable across deploys; OpenAI clients only display it.
MODEL_CREATED = 1735689600


def model_object(model: Model) -> dict[str, object]:
    return {
        "id": model.alias,
        "object": "model",
        "created": MODEL_CREATED,
        "owned_by": model.publisher,
        "vertex_id": model.vertex_id,
        "api": model.api,
    }


class ModelList(ApiEndpoint):
    async def handle(
        self, gateway: Gateway, scope: Scope, receive: Receive, send: Send, headers: dict[bytes, bytes], log: RequestLog
    ) -> None:
        record = await self.authenticate(gateway, headers, log)
        visible = [m for m in gateway.models.models if record.models is None or m.alias in record.models]
        body = orjson.dumps({"object": "list", "data": [model_object(m) for m in visible]})
        log.status = 200
        await send_response(send, 200, JSON_HEADERS, body)


class ModelGet(ApiEndpoint):
    async def handle(
        self, gateway: Gateway, scope: Scope, receive: Receive, send: Send, headers: dict[bytes, bytes], log: RequestLog
    ) -> None:
        record = await self.authenticate(gateway, headers, log)
        name = scope["path_params"]["model_id"]
        model = gateway.models.get(name)
        if model is None:
            raise GatewayError(
                404,
                f"Model {name[:200]!r} does not exist here. Valid models: {', '.join(gateway.models.aliases)}",
                param="model",
                code="model_not_found",
            )
        authorize(record, model)
        log.alias, log.vertex_model, log.status = model.alias, model.vertex_id, 200
        await send_response(send, 200, JSON_HEADERS, orjson.dumps(model_object(model)))


class ChatCompletions(ApiEndpoint):
    async def handle(
        self, gateway: Gateway, scope: Scope, receive: Receive, send: Send, headers: dict[bytes, bytes], log: RequestLog
    ) -> None:
        model, request = await self.model_request(gateway, scope, receive, headers, log, "google")
        # Only "model" changes: every other field (thought signatures, vendor extras) passes as sent.
        request["model"] = model.vertex_id
        stream = request.get("stream") is True
        await self.forward(gateway, gateway.urls.chat_completions, orjson.dumps(request), stream, receive, send, log)
