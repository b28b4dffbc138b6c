"""The gateway's ASGI app: routes, lifespan, and the errors Starlette raises itself."""

import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from app import pages
from app.anthropic_api import ClaudeCountTokens, ClaudeMessages, GeminiCountTokens, GeminiMessages
from app.apis import ANTHROPIC_MESSAGES, OPENAI_CHAT
from app.config import ConfigError, Settings, load_settings
from app.embeddings_api import Embeddings
from app.errors import INTERNAL_ERROR, GatewayError
from app.gateway import Gateway
from app.logs import setup_logging
from app.openai_api import ModelGet, ModelList, VertexChat
from app.pipeline import ModelRoute, Refusal
from app.route_hints import not_found, shape_for
from app.vertex_api import VertexPassthrough
from app.vertex_paths import PREFIX as VERTEX_PREFIX

logger = logging.getLogger("app")


async def http_error(gateway: Gateway, request: Request, exc: Exception) -> ASGIApp:
    """Starlette's own 404 (no route) and 405 (a route, another method), refused as every endpoint refuses."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        error = GatewayError(
            405,
            f"Method {request.method} is not allowed on {request.url.path}; use {allowed or 'another method'}",
            code="method_not_allowed",
            headers=[(b"allow", allowed.encode())] if allowed else None,
        )
    elif exc.status_code == 404:
        error = not_found(request.method, request.url.path, pages.base_url(request))
    else:
        error = GatewayError(exc.status_code, str(exc.detail))
    return Refusal(gateway, shape_for(request.url.path), error)


async def server_error(gateway: Gateway, request: Request, exc: Exception) -> ASGIApp:
    """A bug outside the endpoints (the pages, /health): logged with its stack, answered as JSON."""
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return Refusal(gateway, shape_for(request.url.path), INTERNAL_ERROR)


async def health(gateway: Gateway, request: Request) -> Response:
    # Readiness is the keys alone: a metadata-server hiccup must not take a Cloud Run revision out of
    # service, so the credentials' state is reported but never fails the check.
    credentials = gateway.tokens.status
    body: dict[str, object]
    if gateway.ring.loaded:
        body = {"ok": True, "models": gateway.models.aliases, "keys": len(gateway.ring)}
    else:
        body = {"ok": False, "error": f"API keys are not loaded: {gateway.keys_problem}"}
    body["upstream_credentials"] = credentials
    if credentials == "missing":
        body["hint"] = "no Google credentials: locally, run 'gcloud auth application-default login'"
    return Response(orjson.dumps(body), 200 if gateway.ring.loaded else 503, media_type="application/json")


class FastRoutes:
    """Hands the hot API routes straight to their endpoints; everything else goes through Starlette.

    The endpoints handle their own errors and logging, so skipping Starlette's router and its two
    exception middlewares (which wrap every streamed chunk's send) loses nothing and saves ~10% of a
    request's CPU (bench/RESULTS.md). Starlette still owns the lifespan, the pages and 404/405.
    A prefix endpoint (the /vertex passthrough) takes every path under its prefix, any method: it answers
    its own 404s and 405s, so none of them comes from Starlette in another shape. Exact routes are looked
    up first, on the same path as before: a prefix costs only the requests no exact route takes.
    """

    def __init__(self, app: Starlette, routes: list[Route], prefixes: dict[str, ASGIApp] | None = None) -> None:
        self.app = app
        self.routes: dict[tuple[str, str], ASGIApp] = {
            (method, route.path): route.endpoint for route in routes for method in route.methods or ()
        }
        self.prefixes = tuple((prefixes or {}).items())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            endpoint = self.routes.get((scope["method"], scope["path"]))
            if endpoint is not None:
                await endpoint(scope, receive, send)
                return
            path = scope["path"]
            for prefix, handler in self.prefixes:
                if path.startswith(prefix):
                    await handler(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def create_app(settings: Settings | None = None) -> FastRoutes:
    settings = settings or load_settings()
    setup_logging(settings.log_level)

    # One Gateway per worker (each imports the app), bound to the endpoints here and started by the lifespan.
    gateway = Gateway(settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gateway.start()
        try:
            yield
        finally:
            await gateway.stop()

    hot = [
        Route("/v1/chat/completions", ModelRoute(gateway, OPENAI_CHAT, {"google": VertexChat()}), methods=["POST"]),
        Route(
            "/v1/messages",
            ModelRoute(gateway, ANTHROPIC_MESSAGES, {"anthropic": ClaudeMessages(), "google": GeminiMessages()}),
            methods=["POST"],
        ),
        Route(
            "/v1/messages/count_tokens",
            ModelRoute(gateway, ANTHROPIC_MESSAGES, {"anthropic": ClaudeCountTokens(), "google": GeminiCountTokens()}),
            methods=["POST"],
        ),
        Route("/v1/embeddings", Embeddings(gateway), methods=["POST"]),
    ]
    routes = [
        Route("/", partial(pages.splash, gateway), methods=["GET"]),
        Route("/docs", partial(pages.runbook, gateway), methods=["GET"]),
        # /health, because Cloud Run's front end answers paths ending in "z" itself (SPEC, platform facts);
        # /healthz stays for local use and for probes written before.
        Route("/health", partial(health, gateway), methods=["GET"]),
        Route("/healthz", partial(health, gateway), methods=["GET"]),
        Route("/v1/models", ModelList(gateway), methods=["GET"]),
        Route("/v1/models/{model_id:path}", ModelGet(gateway), methods=["GET"]),
        *hot,
    ]
    starlette = Starlette(
        routes=routes,
        lifespan=lifespan,
        # Each returns a Refusal: Endpoint.__call__ answers and logs it (Starlette runs whatever ASGI app a
        # handler returns).
        exception_handlers={HTTPException: partial(http_error, gateway), Exception: partial(server_error, gateway)},
    )
    # Starlette would answer `/v1/messages/` with a 307 to a Location built from the client's Host (and
    # `http`), unauthenticated and unlogged; SDKs follow it and re-send the key. A 404 says what to fix.
    starlette.router.redirect_slashes = False
    # The native Vertex passthrough: every /vertex/… path, whatever the method (app/vertex_paths.py says what
    # it serves; the rest is refused in Google's error shape).
    return FastRoutes(starlette, hot, {VERTEX_PREFIX: VertexPassthrough(gateway)})


# gunicorn's "worker failed to boot" exit code: the master stops instead of restarting the worker forever.
WORKER_BOOT_ERROR = 3

try:
    app = create_app()
except ConfigError as exc:
    # A bad setting must never become a running revision: say why, then stop the whole server.
    print(f"config error: {exc}", file=sys.stderr, flush=True)
    raise SystemExit(WORKER_BOOT_ERROR) from None
