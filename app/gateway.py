"""The per-worker Gateway: everything a request needs. Built with the app (so endpoints are bound to
it), started and stopped by the lifespan (the upstream client, the first key load, background tasks)."""

import asyncio
import logging

from app.aliases import ModelTable
from app.config import Settings
from app.errors import GatewayError
from app.key_ring import KeyDocumentError, KeyRing
from app.key_sources import KeyRefresher, make_source
from app.limits import KeyLimits
from app.logs import request_lines
from app.upstream import Upstream
from app.upstream_client import UpstreamClient
from app.vertex import TokenProvider, VertexUrls, make_client

logger = logging.getLogger("app")


class Gateway:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.models = ModelTable(settings.aliases, settings.model_passthrough)
        self.ring = KeyRing()
        self.tokens = TokenProvider(settings.token_retry_seconds)
        self.limits = KeyLimits()  # per worker: each gunicorn worker is its own process
        self.refresher: KeyRefresher | None = None
        self.client: UpstreamClient | None = None
        self.upstream: Upstream | None = None
        self._urls: VertexUrls | None = None
        self._key_setup_error: str | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def project(self) -> str | None:
        return self.settings.project or self.tokens.project

    def keys_ready(self) -> None:
        """Refuse with 503 while no key set is loaded (every key would look unknown): says why, and to retry."""
        if not self.ring.loaded:
            raise GatewayError(
                503,
                f"The gateway has not loaded its API keys yet ({self.keys_problem}); retry shortly, and if this "
                "persists the operator should check the key source (API_KEYS_SECRET / API_KEYS_FILE / API_KEYS_JSON)",
                code="keys_unavailable",
            )

    @property
    def keys_problem(self) -> str:
        """Why no keys are loaded, in words fit for an unauthenticated caller: the details
        (secret names, key ids, bad values) go to the log only."""
        if self.refresher is None:
            return self._key_setup_error or "the key source is not set up"
        if self.refresher.last_error:
            return f"{self.refresher.source.kind} could not be read; the operator should check the gateway's log"
        return "they are still loading"

    @property
    def urls(self) -> VertexUrls:
        if self._urls is None:
            project = self.project
            if project is None and self.tokens.missing:
                raise self.tokens.unavailable()  # the credentials would have named the project
            if project is None:
                raise GatewayError(
                    503,
                    "The gateway does not know its Google Cloud project: the operator should set "
                    "GOOGLE_CLOUD_PROJECT (or use credentials that carry a project)",
                    code="project_unknown",
                )
            self._urls = VertexUrls(self.settings, project)
        return self._urls

    async def start(self) -> None:
        self.client = make_client(self.settings)
        self.upstream = Upstream(self.client, self.tokens, self.settings)
        if self.settings.project:
            # Startup need not wait for Google: the first token arrives in the background.
            self._tasks.append(self.tokens.prewarm())
        else:
            await self.tokens.discover()  # the project comes from the credentials
        try:
            source = make_source(self.settings, self.project)
        except KeyDocumentError as exc:
            logger.error("%s; every /v1 request will be refused with 503", exc)
            self._key_setup_error = "the key source is misconfigured; the operator should check the gateway's log"
            return
        if source is None:
            self._key_setup_error = "no key source is configured (API_KEYS_SECRET, API_KEYS_FILE or API_KEYS_JSON)"
            logger.error("%s; every /v1 request will be refused with 503", self._key_setup_error)
            return
        self.refresher = KeyRefresher(self.ring, source, self.settings.keys_refresh_seconds)
        # The lifespan holds this worker's first accept until its keys are in (SPEC: key loading).
        await self.refresher.first_load(self.settings.keys_first_load_wait)
        self._tasks.append(asyncio.get_running_loop().create_task(self.refresher.run()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.client is not None:
            await self.client.close()
        request_lines.flush()
