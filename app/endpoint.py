"""The frame every authenticated API route shares: log line, errors in the route's shape, per-key limits
and the project-resource rule."""

import logging
from typing import Any

import orjson
from starlette.types import Receive, Scope, Send

from app.aliases import Model
from app.auth import authenticate, authorize
from app.errors import INTERNAL_ERROR, GatewayError, Shape, render
from app.keys import KeyRecord
from app.limits import LIMITS
from app.logs import RequestLog
from app.proxy import CancelOnDisconnect, relay
from app.resources import find_reference, might_reference
from app.state import Gateway
from app.wire import ClientGone, header_map, read_body, send_response

logger = logging.getLogger("app")

# Where a request's concurrency Lease waits for __call__'s finally (the scope is per request).
LEASE = "gateway.lease"


class ApiEndpoint:
    """An ASGI endpoint: subclasses implement `handle` and raise GatewayError for refusals."""

    shape = Shape.OPENAI

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gateway: Gateway = scope["app"].state.gateway
        headers = header_map(scope)
        client = scope.get("client")
        log = RequestLog(scope["method"], scope["path"], headers, client[0] if client else None)
        try:
            await self.handle(gateway, scope, receive, send, headers, log)
        except GatewayError as exc:
            status, error_headers, body = render(self.shape, exc)
            log.status, log.error, log.response_bytes = status, exc.message, len(body)
            await send_response(send, status, error_headers, body)
        except ClientGone:
            log.status, log.outcome = 499, "client_disconnected"
        except Exception:
            # A bug: logged with its stack, answered as JSON (never a traceback), one request line as always.
            logger.exception("unhandled error on %s %s", scope["method"], scope["path"])
            log.status, log.error = 500, "internal error"
            if not log.response_started:
                status, error_headers, body = render(self.shape, INTERNAL_ERROR)
                await send_response(send, status, error_headers, body)
        finally:
            # Every path ends here (answers, errors, disconnects, cancellation, streams run out),
            # so the key's in-flight slot is always given back.
            lease = scope.pop(LEASE, None)
            if lease is not None:
                lease.release()
            log.emit(gateway.project)

    async def handle(
        self,
        gateway: Gateway,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: dict[bytes, bytes],
        log: RequestLog,
    ) -> None:
        raise NotImplementedError

    async def model_request(
        self,
        gateway: Gateway,
        scope: Scope,
        receive: Receive,
        headers: dict[bytes, bytes],
        log: RequestLog,
        publisher: str,
    ) -> tuple[Model, dict[str, Any]]:
        """Authenticate, apply the key's limits, read and parse the body, resolve and authorise its model,
        and refuse references to project resources, for one publisher's API."""
        record = await self.authenticate(gateway, headers, log)
        if record.limited:
            # Before the body is read: a key over its limit costs no upload and no parse.
            lease = LIMITS.admit(record)
            if lease is not None:
                scope[LEASE] = lease
        body = await read_body(receive, headers, gateway.settings.max_body_bytes)
        request = parse_object(body)
        model = gateway.models.resolve(request.get("model"))
        log.alias, log.vertex_model = model.alias, model.vertex_id
        if model.publisher != publisher:
            client = "the anthropic SDK or Claude Code" if model.api == "messages" else "an OpenAI-compatible client"
            raise GatewayError(
                400,
                f"Model {model.alias!r} ({model.vertex_id}) is served at POST {model.route}, not on this route; "
                f"call it there (e.g. with {client})",
                param="model",
                code="wrong_endpoint",
            )
        authorize(record, model)
        if not record.allow_resources and might_reference(body):
            refuse_resources(record, request)
        return model, request

    @staticmethod
    async def authenticate(gateway: Gateway, headers: dict[bytes, bytes], log: RequestLog) -> KeyRecord:
        refresher = gateway.refresher
        if refresher is not None and refresher.stale():
            # The refresh loop was starved (an idle Cloud Run instance has its CPU throttled):
            # a revoked key must not outlive the refresh interval by more than a read.
            await refresher.freshen()
        record = authenticate(gateway.ring, headers, gateway.keys_problem)
        log.key_id = record.id
        return record

    async def forward(
        self, gateway: Gateway, url: str, payload: bytes, stream: bool, receive: Receive, send: Send, log: RequestLog
    ) -> None:
        """POST to Vertex and relay the answer; a client hang-up cancels the upstream call at once."""
        assert gateway.upstream is not None
        log.stream = stream
        with CancelOnDisconnect(receive) as watch:
            response = await gateway.upstream.open(url, payload, stream, log)
            try:
                await relay(response, self.shape, stream, send, log)
            finally:
                if response.content.at_eof():
                    response.release()
                else:
                    response.close()  # drops the connection, so Vertex stops generating
        if watch.disconnected:
            log.status, log.outcome = log.status or 499, "client_disconnected"


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
