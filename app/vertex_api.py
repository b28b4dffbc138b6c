"""The native Vertex AI passthrough at /vertex/…: Google's and Anthropic's own Vertex SDKs, unchanged but
for the base URL and the key.

    genai.Client(vertexai=True, api_key=KEY, http_options=HttpOptions(base_url=GATEWAY + "/vertex"))
    AnthropicVertex(region="global", project_id="any", base_url=GATEWAY + "/vertex/v1", access_token=KEY)

A request is what app/vertex_paths.py lets through (model calls only), asked with POST, by a key that may
use the model (aliases, passthrough rules and the key's `models`, as on every route), under the key's
limits, with a body that names none of the project's resources (unless the key may). Vertex is called
at the gateway's own project and location with the gateway's token; the body goes as sent, but for what
Claude on Vertex requires (as on /v1/messages); the answer comes back as Vertex sent it, streams chunk by
chunk, and the gateway's own errors are in Google's error shape.
"""

from dataclasses import dataclass
from typing import Any

import orjson

from app.aliases import Model, passthrough_not_found
from app.anthropic_api import VERTEX_ANTHROPIC_VERSION, _betas
from app.apis import ClientApi
from app.asgi import Responder
from app.auth import authorize
from app.errors import GatewayError, Shape
from app.logs import RequestLog
from app.pipeline import Call, Endpoint, refuse_resources
from app.relay import STREAM_HEADERS, pass_stream
from app.relay import relay as relay_answer
from app.resources import might_reference
from app.upstream_call import UpstreamCall
from app.upstream_client import UpstreamResponse
from app.usage import UsageMetadataSniffer
from app.vertex_paths import NativeCall, method_not_allowed, parse_native

VERTEX_NATIVE = ClientApi(
    "vertex", Shape.GOOGLE, "/vertex", "google-genai (vertexai=True) or anthropic's AnthropicVertex"
)
# Body fields that name a model or endpoint besides the URL's: on /vertex the URL alone names the model.
_MODEL_FIELDS = ("model", "endpoint")


@dataclass(frozen=True, slots=True)
class GeminiCall(UpstreamCall):
    """A call to one of Gemini's methods: its stream carries `usageMetadata`, in SSE or one JSON array."""


@dataclass(frozen=True, slots=True)
class _Asked:
    native: NativeCall
    model: Model
    body: bytes
    request: dict[str, Any]


class VertexPassthrough(Endpoint):
    """POST /vertex/…: one of Vertex's model methods, at the gateway's project and location."""

    client_api = VERTEX_NATIVE

    async def handle(self, call: Call) -> None:
        scope = call.scope
        # The raw target, since ASGI's `path` is percent-decoded; a server without it gets the strict grammar
        # over the decoded path.
        native = parse_native(scope.get("raw_path") or scope["path"].encode(), scope.get("query_string", b""))
        if scope["method"] != "POST":
            raise method_not_allowed(scope["method"])
        record = await self.admit(call)
        body, request = await self.read_request(call)
        # Claude's count-tokens names its model in the body, as Vertex's name; every other method, in the URL.
        named = native.model if native.model is not None else request.get("model")
        model = self.gateway.models.resolve(named)
        call.line.alias, call.line.vertex_model = model.alias, model.vertex_id
        if model.publisher != native.publisher:
            raise _wrong_publisher(native, model)
        authorize(record, model)
        if not record.allow_resources and might_reference(body):
            refuse_resources(record, request)
        asked = _Asked(native, model, body, request)
        target = self._claude(call, asked) if native.publisher == "anthropic" else self._gemini(call, asked)
        await self.forward(call, target)

    def _gemini(self, call: Call, asked: _Asked) -> UpstreamCall:
        """Google's methods take the body as sent."""
        for name in _MODEL_FIELDS:
            if name in asked.request:
                raise GatewayError(
                    400,
                    f"Field {name!r} names a model in the body; on /vertex the URL names the model "
                    f"(…/publishers/google/models/MODEL:{asked.native.method}): remove it",
                    param=name,
                    code="invalid_request",
                )
        native, model = asked.native, asked.model
        url = call.gateway.urls.native(native.version, model, native.method, native.sse)
        return GeminiCall(url, asked.body, native.stream, not_found=self._not_found(model))

    def _claude(self, call: Call, asked: _Asked) -> UpstreamCall:
        """What Claude on Vertex requires, as on /v1/messages: Vertex's `anthropic_version`, betas in the body
        (the `anthropic-beta` header, filtered by ANTHROPIC_BETAS_ALLOWED), and the model in the URL, or for
        count-tokens in the body as Vertex names it. A body that needs none of it goes as sent, byte for byte."""
        request, native, model = asked.request, asked.native, asked.model
        changed = False
        if native.model is None:
            if request.get("model") != model.name:
                request["model"] = model.name
                changed = True
        elif "model" in request:
            del request["model"]
            changed = True
        if request.get("anthropic_version") != VERTEX_ANTHROPIC_VERSION:
            request["anthropic_version"] = VERTEX_ANTHROPIC_VERSION
            changed = True
        if b"anthropic-beta" in call.headers:
            betas = _betas(call.headers, request, call.gateway.settings.anthropic_betas)
            request.pop("anthropic_beta", None)
            if betas:
                request["anthropic_beta"] = betas
            changed = True
        urls = call.gateway.urls
        if native.model is None:
            url = urls.native_count_tokens(native.version)
        else:
            url = urls.native(native.version, model, native.method, False)
        stream = native.stream or request.get("stream") is True
        payload = orjson.dumps(request) if changed else asked.body
        return UpstreamCall(url, payload, stream, not_found=self._not_found(model))

    def _not_found(self, model: Model) -> str | None:
        """Vertex's own 404 for a passed-through model would only say "not found": say how to enable it."""
        return passthrough_not_found(model, self.gateway.models.aliases) if model.passthrough else None

    @staticmethod
    async def relay(
        response: UpstreamResponse, target: UpstreamCall, shape: Shape, out: Responder, line: RequestLog
    ) -> None:
        """Vertex's answer as it sent it. Errors, whole answers and Claude's streams go through relay.py like
        every route's. Gemini's streams are passed on piece by piece with Vertex's content type: server-sent
        events (`alt=sse`), or one JSON array that Vertex sends in pieces, and their usage is `usageMetadata`."""
        if response.status >= 400 or not target.stream or not isinstance(target, GeminiCall):
            await relay_answer(response, target, shape, out, line)
            return
        content_type = response.headers.get("Content-Type", "").encode("latin-1") or b"application/json"
        await out.start_stream(response.status, [(b"content-type", content_type), *STREAM_HEADERS[1:]])
        await pass_stream(response, UsageMetadataSniffer(), out, line)


def _wrong_publisher(native: NativeCall, model: Model) -> GatewayError:
    if native.model is None:
        message = (
            f"Claude's count-tokens counts Claude models; {model.alias!r} is {model.vertex_id}: count its tokens "
            f"with POST /vertex/{native.version}/publishers/{model.publisher}/models/{model.alias}:countTokens"
        )
    else:
        message = (
            f"Model {model.alias!r} is {model.vertex_id}, published by {model.publisher}, not {native.publisher}: "
            f"call it at /vertex/{native.version}/publishers/{model.publisher}/models/{model.alias}:…"
        )
    return GatewayError(400, message, param="model", code="wrong_endpoint")
