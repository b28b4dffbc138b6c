"""The floor: a bare Starlette + aiohttp pass-through, served exactly like the gateway.

No auth, no model mapping, no logging: what a request costs in this stack before
the gateway adds anything. bench.py runs it with the gateway's gunicorn config and
worker class, so the difference between this row and the gateway row is the
gateway's own code.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

UPSTREAM = os.environ["VERTEX_BASE_URL"].rstrip("/") + (
    "/v1/projects/{p}/locations/global/endpoints/openapi/chat/completions"
).format(p=os.environ.get("GOOGLE_CLOUD_PROJECT", "bench-project"))
HEADERS = {"authorization": "Bearer mock-access-token", "content-type": "application/json"}
_session: aiohttp.ClientSession | None = None


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    global _session
    _session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    yield
    await _session.close()


async def healthz(request: Request) -> Response:
    return JSONResponse({"ok": True})


async def chat(request: Request) -> Response:
    assert _session is not None
    body = await request.body()
    upstream = await _session.post(UPSTREAM, data=body, headers=HEADERS)
    ctype = upstream.headers.get("content-type", "application/json")
    if ctype.startswith("text/event-stream"):

        async def relay() -> AsyncIterator[bytes]:
            try:
                async for chunk in upstream.content.iter_any():
                    yield chunk
            finally:
                upstream.release()

        return StreamingResponse(relay(), status_code=upstream.status, media_type=ctype)
    data = await upstream.read()
    upstream.release()
    return Response(data, status_code=upstream.status, media_type=ctype)


app = Starlette(
    routes=[Route("/healthz", healthz), Route("/v1/chat/completions", chat, methods=["POST"])],
    lifespan=lifespan,
)
