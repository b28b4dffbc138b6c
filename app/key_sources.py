"""Where the key document comes from, and the loop that keeps the KeyRing fresh.

Sources are blocking (the Secret Manager client, file reads), so every fetch runs
in a worker thread; the event loop only swaps in the parsed result.
"""

import asyncio
import logging
import os
from typing import Any, Protocol

from app.config import Settings
from app.keys import KeyDocumentError, KeyRing

log = logging.getLogger("app.keys")

# Until the first good load, retry sooner than the refresh interval so a revision
# whose secret was briefly unreadable becomes ready quickly.
FIRST_LOAD_RETRY_SECONDS = 2.0
SECRET_ACCESS_TIMEOUT_SECONDS = 10.0


class KeySource(Protocol):
    description: str
    refreshes: bool  # re-read every interval
    remote: bool  # a network call: load in the background, never hold up startup

    def fetch(self) -> tuple[bytes, str] | None:
        """The raw document and a version label, or None when unchanged."""


class InlineSource:
    refreshes = False
    remote = False

    def __init__(self, raw: str) -> None:
        self._raw = raw.encode()
        self.description = "API_KEYS_JSON"

    def fetch(self) -> tuple[bytes, str] | None:
        return self._raw, "inline"


class FileSource:
    refreshes = True  # cheap: a stat per interval, re-read only when it changed
    remote = False

    def __init__(self, path: str) -> None:
        self._path = path
        self._stamp: tuple[int, int] | None = None
        self.description = f"API_KEYS_FILE {path}"

    def fetch(self) -> tuple[bytes, str] | None:
        stat = os.stat(self._path)
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp == self._stamp:
            return None
        with open(self._path, "rb") as handle:
            raw = handle.read()
        self._stamp = stamp
        return raw, f"mtime {stat.st_mtime_ns}"


class SecretManagerSource:
    refreshes = True
    remote = True

    def __init__(self, secret: str, project: str | None, endpoint: str | None) -> None:
        if not secret.startswith("projects/"):
            if project is None:
                raise KeyDocumentError(
                    f"API_KEYS_SECRET={secret!r} has no project: "
                    "set GOOGLE_CLOUD_PROJECT or use projects/PROJECT/secrets/NAME"
                )
            secret = f"projects/{project}/secrets/{secret}"
        self._version_name = f"{secret}/versions/latest"
        self._endpoint = endpoint
        self._client: Any = None
        self.description = f"Secret Manager {secret}"

    def _make_client(self) -> Any:
        # Imported here: the client library is heavy and only this source needs it.
        from google.cloud import secretmanager

        options: dict[str, Any] = {}
        credentials = None
        if self._endpoint:
            options["api_endpoint"] = self._endpoint
            if self._endpoint.startswith("http://"):
                # A plaintext endpoint is a local fake or emulator: never send it a real token.
                from google.auth.credentials import AnonymousCredentials

                credentials = AnonymousCredentials()
        # REST, not gRPC: one request a minute does not need a channel and its threads.
        return secretmanager.SecretManagerServiceClient(
            transport="rest", client_options=options or None, credentials=credentials
        )

    def fetch(self) -> tuple[bytes, str] | None:
        if self._client is None:
            self._client = self._make_client()
        response = self._client.access_secret_version(name=self._version_name, timeout=SECRET_ACCESS_TIMEOUT_SECONDS)
        return bytes(response.payload.data), response.name


def make_source(settings: Settings, project: str | None) -> KeySource | None:
    if settings.keys_secret:
        return SecretManagerSource(settings.keys_secret, project, settings.secret_manager_endpoint)
    if settings.keys_file:
        return FileSource(settings.keys_file)
    if settings.keys_json:
        return InlineSource(settings.keys_json)
    return None


class KeyRefresher:
    def __init__(self, ring: KeyRing, source: KeySource, interval: float) -> None:
        self.ring = ring
        self.source = source
        self.interval = interval
        self.last_error: str | None = None

    async def load_once(self) -> bool:
        try:
            fetched = await asyncio.to_thread(self.source.fetch)
        except Exception as exc:  # any failure of the source keeps the last good set
            return self._failed(f"reading keys from {self.source.description} failed: {type(exc).__name__}: {exc}")
        if fetched is None:
            return True
        raw, version = fetched
        if self.ring.loaded and version == self.ring.version:
            return True
        try:
            problems = self.ring.load_document(raw, version)
        except KeyDocumentError as exc:
            return self._failed(f"{self.source.description} ({version}): {exc}")
        for problem in problems:
            log.error("%s (%s): %s", self.source.description, version, problem)
        self.last_error = None
        log.info("loaded %d keys from %s (%s)", len(self.ring), self.source.description, version)
        return True

    def _failed(self, message: str) -> bool:
        self.last_error = message
        suffix = "; keeping the last good key set" if self.ring.loaded else "; no keys loaded yet, /v1 answers 503"
        log.error("%s%s", message, suffix)
        return False

    async def run(self) -> None:
        while True:
            await self.load_once()
            if not self.source.refreshes and self.ring.loaded:
                return
            await asyncio.sleep(self.interval if self.ring.loaded else min(self.interval, FIRST_LOAD_RETRY_SECONDS))
