"""Where the key document comes from, and the loop that keeps the KeyRing fresh.

Sources are blocking (the Secret Manager client, file reads), so every fetch runs
in a worker thread; the event loop only swaps in the parsed result.

Two rules bound how stale the ring may be. A worker starts serving only after its first
load (or a failure that retrying will not fix, or KEYS_FIRST_LOAD_WAIT_SECONDS), so no
request meets a worker that has no keys while its sibling has them. And a request that
finds the ring older than the refresh interval (Cloud Run throttles the CPU of an idle
instance, so the loop may not have run) waits, briefly, for a fresh read first.
"""

import asyncio
import logging
import os
from collections.abc import Callable
from typing import Any, Protocol

from app.config import Settings
from app.key_ring import KeyDocumentError, KeyRing

logger = logging.getLogger("app.keys")

# Until the first good load, retry sooner than the refresh interval so a revision
# whose secret was briefly unreadable becomes ready quickly.
FIRST_LOAD_RETRY_SECONDS = 2.0
# While a worker holds back its first accept, retry transient failures this often.
STARTUP_RETRY_SECONDS = 0.5
SECRET_ACCESS_TIMEOUT_SECONDS = 10.0
# Room for the loop's own read to finish before requests call the ring stale.
STALE_GRACE_SECONDS = 1.0
# A request that finds the ring stale waits at most this long for a fresh read; past it,
# or after a failed read, the last good set stands.
FRESHEN_WAIT_SECONDS = 3.0
# After a failed read, requests do not start another for this long (the loop keeps trying).
FRESHEN_RETRY_SECONDS = 2.0
# Failures of the key source that retrying will not fix: the operator has to act.
_PERMANENT_ERRORS = frozenset(
    ("NotFound", "PermissionDenied", "Unauthenticated", "InvalidArgument", "FailedPrecondition",
     "DefaultCredentialsError", "FileNotFoundError", "PermissionError", "IsADirectoryError", "KeyDocumentError")
)  # fmt: skip


class KeySource(Protocol):
    description: str  # for the operator's log: names the secret or file
    kind: str  # for callers: which kind of source, never its name
    refreshes: bool  # re-read every interval
    remote: bool  # a network call: load in the background, never hold up startup

    def fetch(self) -> tuple[bytes, str] | None:
        """The raw document and a version label, or None when unchanged."""


class InlineSource:
    refreshes = False
    remote = False

    def __init__(self, raw: str) -> None:
        self._raw = raw.encode()
        self.description = self.kind = "API_KEYS_JSON"

    def fetch(self) -> tuple[bytes, str] | None:
        return self._raw, "inline"


class FileSource:
    refreshes = True  # cheap: a stat per interval, re-read only when it changed
    remote = False

    def __init__(self, path: str) -> None:
        self._path = path
        self._stamp: tuple[int, int] | None = None
        self.description = f"API_KEYS_FILE {path}"
        self.kind = "API_KEYS_FILE"

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
        self.kind = "Secret Manager (API_KEYS_SECRET)"

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


def _loop_time() -> float:
    return asyncio.get_running_loop().time()


class KeyRefresher:
    """Keeps the ring fresh: reads the source every `interval` seconds, and on demand when a request finds
    the ring stale. `clock` is the monotonic time staleness is judged by (the event loop's); tests pass a
    fake one."""

    def __init__(
        self, ring: KeyRing, source: KeySource, interval: float, clock: Callable[[], float] = _loop_time
    ) -> None:
        self.ring = ring
        self.source = source
        self.interval = interval
        self._clock = clock
        self.last_error: str | None = None
        self.failed_for_good = False  # the last failure needs the operator, not a retry
        # Clock times: when the last good read started, and when the last read of any outcome did.
        self._fresh_at: float | None = None
        self._attempted_at = float("-inf")
        self._reading: asyncio.Task[bool] | None = None

    def load_once(self) -> asyncio.Task[bool]:
        """Read the source now, or join the read already under way."""
        if self._reading is None or self._reading.done():
            self._reading = asyncio.get_running_loop().create_task(self._load())
        return self._reading

    async def _load(self) -> bool:
        started = self._attempted_at = self._clock()
        try:
            fetched = await asyncio.to_thread(self.source.fetch)
        except Exception as exc:  # any failure of the source keeps the last good set
            return self._failed(exc, f"reading keys from {self.source.description} failed: {type(exc).__name__}: {exc}")
        if fetched is not None:
            raw, version = fetched
            if not (self.ring.loaded and version == self.ring.version):
                try:
                    problems = self.ring.load_document(raw, version)
                except KeyDocumentError as exc:
                    return self._failed(exc, f"{self.source.description} ({version}): {exc}")
                for problem in problems:
                    logger.error("%s (%s): %s", self.source.description, version, problem)
                logger.info("loaded %d keys from %s (%s)", len(self.ring), self.source.description, version)
        self.last_error, self.failed_for_good = None, False
        self._fresh_at = started
        return True

    def _failed(self, exc: Exception, message: str) -> bool:
        self.last_error = message
        self.failed_for_good = type(exc).__name__ in _PERMANENT_ERRORS
        suffix = "; keeping the last good key set" if self.ring.loaded else "; no keys loaded yet, /v1 answers 503"
        logger.error("%s%s", message, suffix)
        return False

    async def first_load(self, wait: float) -> None:
        """Until the first good load, a failure retrying will not fix, or `wait` seconds: the worker
        accepts no connection meanwhile, so its siblings serve and nobody meets a key-less worker."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait  # real time, not the clock: the worker sits out this wait
        while not await self.load_once():
            if self.failed_for_good or loop.time() + STARTUP_RETRY_SECONDS > deadline:
                logger.error("serving without keys until %s can be read; /v1 answers 503 meanwhile", self.source.kind)
                return
            await asyncio.sleep(STARTUP_RETRY_SECONDS)

    def stale(self) -> bool:
        """The last good read is older than the refresh interval (the loop was starved or is failing)."""
        fresh_at = self._fresh_at
        return (
            fresh_at is not None
            and self.source.refreshes
            and self._clock() - fresh_at > self.interval + STALE_GRACE_SECONDS
        )

    async def freshen(self) -> None:
        """Called by a request that found the ring stale: a bounded wait for a fresh read."""
        reading = self._reading
        if (reading is None or reading.done()) and (self._clock() - self._attempted_at < FRESHEN_RETRY_SECONDS):
            return  # a read just failed: the last good set stands, the loop retries
        try:
            await asyncio.wait_for(asyncio.shield(self.load_once()), FRESHEN_WAIT_SECONDS)
        except TimeoutError:
            logger.warning("key refresh took over %g s; this request uses the last good key set", FRESHEN_WAIT_SECONDS)

    async def run(self) -> None:
        while self.source.refreshes or not self.ring.loaded:
            interval = self.interval if self.ring.loaded else min(self.interval, FIRST_LOAD_RETRY_SECONDS)
            # Timed from the start of the last read, so a healthy loop's read is under way before
            # a request could find the ring stale.
            await asyncio.sleep(max(0.0, self._attempted_at + interval - self._clock()))
            await self.load_once()
