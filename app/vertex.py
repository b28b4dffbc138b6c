"""Vertex AI: endpoint URLs, the service-account token, the pooled HTTP client.

google-auth refreshes synchronously (it does HTTP itself), so every refresh runs
in a worker thread, one at a time, and requests keep using the cached token
while a refresh ahead of expiry is under way.
"""

import asyncio
import calendar
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from app.aliases import Model
from app.config import Settings
from app.errors import GatewayError
from app.upstream_client import UpstreamClient, default_ssl_context

logger = logging.getLogger("app.vertex")

SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
# Refresh this long before expiry, in the background, while the old token still works.
REFRESH_AHEAD_SECONDS = 300.0
# A token this close to expiry is not worth sending.
MIN_TOKEN_LIFE_SECONDS = 10.0
REFRESH_TIMEOUT_SECONDS = 30.0
# Idle upstream connections are kept this long: well under the Google front end's own
# idle limit, so Vertex rarely closes one first, and the sockets of a burst go away within a minute.
POOL_IDLE_SECONDS = 60.0
FAILING_REFRESH_WAIT_SECONDS = 2.0
ON_CLOUD_RUN = bool(os.environ.get("K_SERVICE"))


class TokenProvider:
    """The service account's access token. `clock` is the wall-clock time (Unix seconds) that the token's
    expiry and the spacing of failed refreshes are judged by; tests pass a fake one."""

    def __init__(self, retry_seconds: float, clock: Callable[[], float] = time.time) -> None:
        self._retry_seconds = retry_seconds
        self._clock = clock
        self._credentials: Any = None
        self._request: Any = None
        self._token: str | None = None
        self._expiry = 0.0
        self._refresh_task: asyncio.Task[None] | None = None
        self._failed_at = 0.0
        self.project: str | None = None
        self.error: str | None = None
        # No Application Default Credentials at all: not transient, so callers are told at once how to fix it.
        self.missing = False

    async def discover(self) -> None:
        """Find Application Default Credentials (and their project), off the event loop."""
        try:
            await asyncio.to_thread(self._discover)
            self.error = None
        except Exception as exc:  # no ADC at all: serve what we can, explain on use
            self._failed(exc)

    def _discover(self) -> None:
        import google.auth
        import google.auth.transport.requests

        credentials, project = google.auth.default(scopes=SCOPES)
        self._credentials = credentials
        self._request = google.auth.transport.requests.Request()
        self.project = self.project or project
        self.missing = False

    def prewarm(self) -> asyncio.Task[None]:
        """Find credentials and fetch the first token in the background."""
        return self._start_refresh()

    async def token(self) -> str:
        now = self._clock()
        if self._token is not None:
            if now < self._expiry - REFRESH_AHEAD_SECONDS:
                return self._token
            if now < self._expiry - MIN_TOKEN_LIFE_SECONDS:
                if now - self._failed_at >= self._retry_seconds:
                    self._start_refresh()
                return self._token
        if self.missing:
            # Looked for again in the background (a `gcloud auth application-default login` is picked up),
            # but no caller waits for a search that just failed.
            if now - self._failed_at >= self._retry_seconds:
                self._start_refresh()
            raise self.unavailable()
        if now - self._failed_at < self._retry_seconds and self.error:
            raise self.unavailable()
        # After a failure, don't hold callers through google-auth's own slow retries:
        # the refresh goes on in the background and they get a prompt 503.
        wait = FAILING_REFRESH_WAIT_SECONDS if self._failed_at else REFRESH_TIMEOUT_SECONDS
        try:
            await asyncio.wait_for(asyncio.shield(self._start_refresh()), wait)
        except TimeoutError:
            self.error = self.error or f"token refresh took longer than {wait:g} s"
        if self._token is None or self._clock() >= self._expiry - MIN_TOKEN_LIFE_SECONDS:
            raise self.unavailable()
        return self._token

    def invalidate(self, token: str) -> None:
        """Vertex said 401 to this token: never send it again."""
        if self._token == token:
            self._token = None

    def _start_refresh(self) -> asyncio.Task[None]:
        if self._refresh_task is None or self._refresh_task.done():
            self._refresh_task = asyncio.get_running_loop().create_task(self._refresh())
        return self._refresh_task

    async def _refresh(self) -> None:
        try:
            if self._credentials is None:
                await asyncio.to_thread(self._discover)
            token, expiry = await asyncio.to_thread(self._refresh_blocking)
        except Exception as exc:  # metadata server down, ADC revoked, ...
            self._failed(exc)
            return
        self._token, self._expiry = token, expiry
        self._failed_at = 0.0
        self.error = None

    def _failed(self, exc: Exception) -> None:
        import google.auth.exceptions

        self._failed_at = self._clock()
        # On Cloud Run (which sets K_SERVICE) credentials come from the metadata server, so failing to find
        # them is a hiccup to retry; elsewhere it means nobody ran `gcloud auth application-default login`.
        self.missing = isinstance(exc, google.auth.exceptions.DefaultCredentialsError) and not ON_CLOUD_RUN
        if self.missing:
            self.error = f"no Google credentials found ({exc})"
            logger.error("%s; locally, run 'gcloud auth application-default login'", self.error)
        else:
            self.error = f"refreshing the Google access token failed ({type(exc).__name__}: {exc})"
            logger.error("%s", self.error)

    @property
    def status(self) -> str:
        """For /health: "ok", "missing" (no credentials at all), "failing" (refresh errors) or "unknown"."""
        if self.missing:
            return "missing"
        if self.error:
            return "failing"
        return "ok" if self._token is not None else "unknown"

    def _refresh_blocking(self) -> tuple[str, float]:
        self._credentials.refresh(self._request)
        expiry = self._credentials.expiry
        # google-auth keeps expiry as a naive UTC datetime.
        seconds = calendar.timegm(expiry.utctimetuple()) if expiry is not None else self._clock() + 3000
        return self._credentials.token, float(seconds)

    def unavailable(self) -> GatewayError:
        if self.missing:
            # Not transient: no Retry-After, and `x-should-retry: false` so the OpenAI and Anthropic SDKs
            # fail at once instead of retrying a request that cannot succeed.
            return GatewayError(
                503,
                "The gateway has no Google credentials to call Vertex AI. Running locally: run "
                "'gcloud auth application-default login' (the gateway picks the credentials up within "
                f"{self._retry_seconds:g} s). On Cloud Run: the operator should check the service's service account.",
                code="upstream_credentials_missing",
                headers=[(b"x-should-retry", b"false")],
            )
        return GatewayError(
            503,
            f"The gateway cannot get a Google access token to call Vertex AI: {self.error or 'unknown error'}. "
            "Retry shortly; the operator should check the service account / metadata server.",
            code="upstream_auth_unavailable",
            headers=[(b"retry-after", str(int(self._retry_seconds) or 1).encode())],
        )


class VertexUrls:
    def __init__(self, settings: Settings, project: str) -> None:
        prefix = f"{settings.vertex_base_url}/v1/projects/{project}/locations/{settings.location}"
        self.chat_completions = f"{prefix}/endpoints/openapi/chat/completions"
        self._publishers = f"{prefix}/publishers"
        count_tokens_prefix = (
            f"{settings.count_tokens_base_url}/v1/projects/{project}/locations/{settings.count_tokens_location}"
        )
        self.count_tokens = f"{count_tokens_prefix}/publishers/anthropic/models/count-tokens:rawPredict"
        # The native passthrough (/vertex) keeps the caller's API version; the rest is ours.
        self._native = {
            version: (
                f"{settings.vertex_base_url}/{version}/projects/{project}/locations/{settings.location}/publishers",
                f"{settings.count_tokens_base_url}/{version}/projects/{project}/locations/"
                f"{settings.count_tokens_location}/publishers/anthropic/models/count-tokens:rawPredict",
            )
            for version in ("v1", "v1beta1")
        }

    def raw_predict(self, model: Model, stream: bool) -> str:
        verb = "streamRawPredict" if stream else "rawPredict"
        return f"{self._publishers}/{model.publisher}/models/{model.name}:{verb}"

    def generate_content(self, model: Model, stream: bool) -> str:
        """Gemini's native API; `alt=sse` makes the stream server-sent events instead of one JSON array."""
        verb = "streamGenerateContent?alt=sse" if stream else "generateContent"
        return f"{self._publishers}/{model.publisher}/models/{model.name}:{verb}"

    def count_gemini_tokens(self, model: Model) -> str:
        return f"{self._publishers}/{model.publisher}/models/{model.name}:countTokens"

    def native(self, version: str, model: Model, method: str, sse: bool) -> str:
        """A model method for the /vertex passthrough: `version` and `method` come from app/vertex_paths.py's
        fixed sets, the model from the model table; the project and location are always the gateway's."""
        query = "?alt=sse" if sse else ""
        return f"{self._native[version][0]}/{model.publisher}/models/{model.name}:{method}{query}"

    def native_count_tokens(self, version: str) -> str:
        """Claude's count-tokens for the /vertex passthrough, in a location that serves it (as count_tokens)."""
        return self._native[version][1]

    def model_method(self, model: Model, method: str) -> str:
        """A publisher model's method, such as an embedding model's `predict` or `embedContent`."""
        return f"{self._publishers}/{model.publisher}/models/{model.name}:{method}"


def make_client(settings: Settings) -> UpstreamClient:
    # Our own keep-alive HTTP/1.1 client: half aiohttp's CPU per request (SPEC.md, bench/RESULTS.md).
    # It never resends a POST behind the gateway's back; Upstream.open's own retry rules (counted,
    # logged, with backoff) cover a pooled connection found closed.
    # The CA store is loaded here, at startup, rather than on the event loop by the first request;
    # every Vertex URL has the scheme of VERTEX_BASE_URL, so an http one needs no TLS context.
    tls = default_ssl_context() if settings.vertex_base_url.startswith("https://") else None
    return UpstreamClient(
        connect_timeout=settings.connect_timeout,
        idle_timeout=settings.idle_timeout,
        pool_idle_seconds=POOL_IDLE_SECONDS,
        ssl_context=tls,
    )
