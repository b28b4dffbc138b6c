"""The pipeline every API route runs, one request at a time.

A `Call` carries one request through it (the worker's Gateway, the ASGI scope, the body stream, the
Responder, the headers, the request line). An `Endpoint` is bound to its Gateway when the app is
built; `__call__` is the one place that turns how a request ended (an answer, a refusal, a hang-up,
a bug) into at most one response and exactly one request line. `ModelRoute` is an endpoint that
calls a model: authenticate, admit under the key's limits, read and check the body, pick the
upstream API that serves the model's publisher, forward, relay.
"""

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

import orjson
from starlette.types import Receive, Scope, Send

from app.aliases import Model, passthrough_not_found
from app.apis import OPENAI_CHAT, ClientApi, client_api_of
from app.asgi import ClientGone, Responder, header_map, read_body
from app.auth import authenticate, authorize
from app.disconnect import CancelOnDisconnect
from app.errors import INTERNAL_ERROR, GatewayError, Shape, render
from app.gateway import Gateway
from app.key_ring import KeyRecord
from app.limits import Lease
from app.logs import RequestLog
from app.relay import relay
from app.resources import find_reference, might_reference
from app.upstream_call import UpstreamCall

logger = logging.getLogger("app")


@dataclass(slots=True)
class Call:
    """One request on its way through the pipeline."""

    gateway: Gateway
    scope: Scope
    receive: Receive
    out: Responder
    headers: dict[bytes, bytes]
    line: RequestLog
    lease: Lease | None = None  # the key's in-flight slot, given back when the request ends


class UpstreamApi(Protocol):
    """How one upstream API is called for a model: the URL and the body, from the caller's parsed request."""

    def prepare(self, call: Call, model: Model, request: dict[str, Any]) -> UpstreamCall: ...


class Endpoint:
    """An ASGI endpoint bound to the worker's Gateway; subclasses implement `handle` and raise GatewayError
    for refusals."""

    client_api: ClientApi = OPENAI_CHAT
    # How Vertex's answer reaches the caller (relay.py); the native passthrough relays more untouched.
    relay = staticmethod(relay)

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = header_map(scope)
        client = scope.get("client")
        line = RequestLog(scope["method"], scope["path"], headers, client[0] if client else None)
        call = Call(self.gateway, scope, receive, Responder(send), headers, line)
        crashed = False
        try:
            await self.handle(call)
        except GatewayError as exc:
            # After the first byte nothing more can be said to the caller; the line says it.
            line.error = exc.message
            if not call.out.started:
                await call.out.whole(*render(self.shape, exc))
        except ClientGone:
            line.outcome = "client_disconnected"
        except Exception:
            # A bug: logged with its stack, answered as JSON (never a traceback), one request line as always.
            logger.exception("unhandled error on %s %s", scope["method"], scope["path"])
            line.error, crashed = "internal error", True
            if not call.out.started:
                await call.out.whole(*render(self.shape, INTERNAL_ERROR))
        finally:
            # Every way out passes here (answers, errors, hang-ups, cancellation, streams run out). The line
            # records what the caller was told (nothing at all: the caller left first, nginx's 499), except that
            # a bug is a 500 even after a stream began, so it is logged at ERROR and counted as a server error.
            if call.lease is not None:
                call.lease.release()
            line.status = 500 if crashed else call.out.status or 499
            line.response_bytes = call.out.sent
            line.emit(self.gateway.project)

    @property
    def shape(self) -> Shape:
        """How this endpoint's refusals are rendered: its client API's error shape."""
        return self.client_api.shape

    async def handle(self, call: Call) -> None:
        raise NotImplementedError

    async def authenticate(self, call: Call) -> KeyRecord:
        refresher = self.gateway.refresher
        if refresher is not None and refresher.stale():
            # The refresh loop was starved (an idle Cloud Run instance has its CPU throttled):
            # a revoked key must not outlive the refresh interval by more than a read.
            await refresher.freshen()
        self.gateway.keys_ready()
        record = authenticate(self.gateway.ring, call.headers)
        call.line.key_id = record.id
        return record

    async def admit(self, call: Call) -> KeyRecord:
        """Authenticate, then take a slot under the key's limits: before the body is read, so a key over
        its limit costs no upload and no parse."""
        record = await self.authenticate(call)
        if record.limited:
            call.lease = self.gateway.limits.admit(record)
        return record

    async def read_request(self, call: Call) -> tuple[bytes, dict[str, Any]]:
        """The body, bounded by MAX_BODY_BYTES, and the JSON object it must be."""
        body = await read_body(call.receive, call.headers, self.gateway.settings.max_body_bytes)
        return body, parse_object(body)

    async def forward(self, call: Call, target: UpstreamCall) -> None:
        """POST to Vertex and relay the answer; a client hang-up cancels the upstream call at once."""
        upstream = self.gateway.upstream
        assert upstream is not None, "the lifespan starts the upstream before the first request"
        call.line.stream = target.stream
        with CancelOnDisconnect(call.receive) as watch:
            async with upstream.exchange(target.url, target.payload, target.stream, call.line) as response:
                await self.relay(response, target, self.client_api.shape, call.out, call.line)
        if watch.disconnected:
            call.line.outcome = "client_disconnected"


class Refusal(Endpoint):
    """Starlette's own errors (no route, another method, a bug outside the endpoints) as an endpoint that only
    refuses: answered and logged like every endpoint's refusals, in the shape the path's caller expects."""

    def __init__(self, gateway: Gateway, shape: Shape, error: GatewayError) -> None:
        super().__init__(gateway)
        self._shape, self.error = shape, error

    @property
    def shape(self) -> Shape:
        return self._shape

    async def handle(self, call: Call) -> None:
        raise self.error


class ModelRoute(Endpoint):
    """A route that calls a model: the client API it speaks, and the upstream API per model publisher."""

    # Whether fields of the caller's body reach Vertex as sent, so references to project resources in them are
    # refused. A route that builds Vertex's body only from fields it has read and checked sets False.
    forwards_body = True

    def __init__(self, gateway: Gateway, client_api: ClientApi, upstreams: Mapping[str, UpstreamApi]) -> None:
        super().__init__(gateway)
        self.client_api = client_api
        self.upstreams = upstreams

    def serves(self, model: Model) -> bool:
        """Whether this route calls `model`; a caller naming another is sent to the route that does."""
        return model.publisher in self.upstreams and model.kind == "generative"

    async def handle(self, call: Call) -> None:
        model, request = await self.model_request(call)
        target = self.upstreams[model.publisher].prepare(call, model, request)
        if model.passthrough:
            # Vertex's own 404 would only say "not found": say how to enable the model or map it to an alias.
            target = replace(target, not_found=passthrough_not_found(model, self.gateway.models.aliases))
        await self.forward(call, target)

    async def model_request(self, call: Call) -> tuple[Model, dict[str, Any]]:
        """Authenticate, apply the key's limits, read and parse the body, resolve and authorise its model,
        and refuse references to project resources."""
        record = await self.admit(call)
        body, request = await self.read_request(call)
        model = self.gateway.models.resolve(request.get("model"))
        call.line.alias, call.line.vertex_model = model.alias, model.vertex_id
        if not self.serves(model):
            served = client_api_of(model)
            raise GatewayError(
                400,
                f"Model {model.alias!r} ({model.vertex_id}) is served at POST {served.path}, not on this route; "
                f"call it there (e.g. with {served.clients})",
                param="model",
                code="wrong_endpoint",
            )
        authorize(record, model)
        if self.forwards_body and not record.allow_resources and might_reference(body):
            refuse_resources(record, request)
        return model, request


def refuse_resources(record: KeyRecord, request: dict[str, Any]) -> None:
    found = find_reference(request)
    if found is None:
        return
    path, kind = found
    raise GatewayError(
        400,
        f"Field {path} is {kind}, which would make Vertex AI read this project's own data with the gateway's "
        "credentials; API keys may not do that by default. Send the content inline (base64 or a data: URL) or as a "
        f"public https:// URL, or ask the operator to allow it for key {record.id!r} "
        '("allow_resources": true in the key document)',
        param=path,
        code="resource_not_allowed",
    )


_JSON_KINDS = {
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


def parse_object(body: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise GatewayError(
            400,
            f"Request body is not valid JSON ({exc}); send a JSON object with Content-Type: application/json",
            code="invalid_json",
        ) from None
    if not isinstance(data, dict):
        raise GatewayError(
            400,
            f"Request body must be a JSON object, not {_JSON_KINDS.get(type(data), 'a value')}",
            code="invalid_body",
        )
    return data
