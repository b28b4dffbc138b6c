"""OpenAI-compatible routes: /v1/models and /v1/chat/completions to Gemini on Vertex."""

import orjson
from starlette.types import Receive, Scope, Send

from app.aliases import Model
from app.auth import authenticate, authorize
from app.endpoint import ApiEndpoint, parse_object
from app.errors import JSON_HEADERS, GatewayError
from app.logs import RequestLog
from app.state import Gateway
from app.wire import read_body, send_response

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
        record = authenticate(gateway.ring, headers, gateway.key_error)
        log.key_id = record.id
        visible = [m for m in gateway.models.models if record.models is None or m.alias in record.models]
        body = orjson.dumps({"object": "list", "data": [model_object(m) for m in visible]})
        log.status = 200
        await send_response(send, 200, JSON_HEADERS, body)


class ModelGet(ApiEndpoint):
    async def handle(
        self, gateway: Gateway, scope: Scope, receive: Receive, send: Send, headers: dict[bytes, bytes], log: RequestLog
    ) -> None:
        record = authenticate(gateway.ring, headers, gateway.key_error)
        log.key_id = record.id
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
        record = authenticate(gateway.ring, headers, gateway.key_error)
        log.key_id = record.id
        request = parse_object(await read_body(receive, headers, gateway.settings.max_body_bytes))
        model = gateway.models.resolve(request.get("model"))
        log.alias, log.vertex_model = model.alias, model.vertex_id
        if model.publisher != "google":
            raise GatewayError(
                400,
                f"Model {model.alias!r} is a Claude model ({model.vertex_id}); call it through the Anthropic "
                "Messages API at POST /v1/messages (e.g. with the anthropic SDK or Claude Code)",
                param="model",
                code="wrong_endpoint",
            )
        authorize(record, model)
        # Only "model" changes: every other field (thought signatures, vendor extras) passes as sent.
        request["model"] = model.vertex_id
        stream = request.get("stream") is True
        await self.forward(gateway, gateway.urls.chat_completions, orjson.dumps(request), stream, receive, send, log)
