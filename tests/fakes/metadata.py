"""A fake GCE metadata server, enough for google-auth's compute_engine credentials.

Point a process at it with GCE_METADATA_HOST and GCE_METADATA_IP set to
`fake.host_port` before google-auth is imported. Paths follow
google/auth/compute_engine/_metadata.py: the ping at the IP root,
`project/project-id`, `universe/universe-domain`, and per service account
(`default` or its email) `?recursive=true`, `token` and `email`.
"""

from __future__ import annotations

import itertools
import json
import secrets
import threading
from typing import Any, Literal

from aiohttp import web

from tests.fakes import BackgroundServer

DownMode = Literal["500", "reset", "refuse"]
FLAVOR = {"Metadata-Flavor": "Google"}
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"


class FakeMetadata(BackgroundServer):
    def __init__(
        self,
        valid_tokens: set[str] | None = None,
        project_id: str = "fake-project",
        email: str = "gateway@fake-project.iam.gserviceaccount.com",
        expires_in: int = 3600,
    ) -> None:
        super().__init__()
        # Shared with FakeVertex: every token issued here is accepted there.
        self.valid_tokens: set[str] = valid_tokens if valid_tokens is not None else set()
        self.project_id = project_id
        self.email = email
        self.expires_in = expires_in
        self.issued: list[str] = []
        self.token_requests = 0
        self.requests: list[tuple[str, str]] = []  # (path, query), appended by the server thread
        self._down: DownMode | None = None
        self._serial = itertools.count(1)
        self._lock = threading.Lock()

    # -- test-side API -------------------------------------------------------

    @property
    def down(self) -> DownMode | None:
        return self._down

    def set_down(self, mode: DownMode | None) -> None:
        """Fail every request ("500"), drop each connection ("reset") or stop listening ("refuse")."""
        if mode == self._down:
            return
        if self._down == "refuse":
            self.resume_listening()
        self._down = mode
        if mode == "refuse":
            self.stop_listening()

    def revoke_all(self) -> None:
        with self._lock:
            for token in self.issued:
                self.valid_tokens.discard(token)

    # -- server --------------------------------------------------------------

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.path, request.query_string))
        if self._down == "reset":
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=500)
        if self._down == "500":
            return web.Response(status=500, text="metadata server down (fake)", headers=FLAVOR)
        if request.headers.get("Metadata-Flavor") != "Google":
            return web.Response(
                status=403,
                text="Missing Metadata-Flavor:Google header.",
                headers=FLAVOR,
            )
        if request.path == "/":
            return web.Response(text="computeMetadata/\n", headers=FLAVOR)

        path = request.path.removeprefix("/computeMetadata/v1/")
        if path == "project/project-id":
            return web.Response(text=self.project_id, headers=FLAVOR)
        if path == "project/numeric-project-id":
            return web.Response(text="123456789012", headers=FLAVOR)
        if path == "universe/universe-domain":
            return web.Response(text="googleapis.com", headers=FLAVOR)
        if path == "instance/zone":
            return web.Response(text="projects/123456789012/zones/us-central1-1", headers=FLAVOR)

        prefix = "instance/service-accounts/"
        if path.startswith(prefix):
            account, _, leaf = path[len(prefix) :].partition("/")
            if account in ("default", self.email):
                return self._account(request, leaf)
        return web.Response(status=404, text="Not Found", headers=FLAVOR)

    def _account(self, request: web.Request, leaf: str) -> web.Response:
        if leaf == "" and request.query.get("recursive") == "true":
            return self._json(
                {
                    "aliases": ["default"],
                    "email": self.email,
                    "scopes": [CLOUD_PLATFORM],
                }
            )
        if leaf == "email":
            return web.Response(text=self.email, headers=FLAVOR)
        if leaf == "scopes":
            return web.Response(text=CLOUD_PLATFORM + "\n", headers=FLAVOR)
        if leaf == "token":
            token = f"ya29.fake-{next(self._serial)}-{secrets.token_urlsafe(12)}"
            with self._lock:
                self.token_requests += 1
                self.issued.append(token)
                self.valid_tokens.add(token)
            return self._json(
                {
                    "access_token": token,
                    "expires_in": self.expires_in,
                    "token_type": "Bearer",
                }
            )
        return web.Response(status=404, text="Not Found", headers=FLAVOR)

    @staticmethod
    def _json(payload: dict[str, Any]) -> web.Response:
        return web.Response(text=json.dumps(payload), content_type="application/json", headers=FLAVOR)
