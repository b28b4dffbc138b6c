"""A local Secret Manager v1 REST fake.

Good enough for the real `gcloud` CLI (CLOUDSDK_API_ENDPOINT_OVERRIDES_SECRETMANAGER)
and for `google-cloud-secret-manager` with transport="rest". It runs aiohttp in a
background thread with its own event loop, so synchronous tests can drive it.

Test controls: `down` (every call answers 500), `garbage` (access answers a
non-JSON body), `before_reply(method, path)` (runs in a worker thread after a
reply is computed and before it is sent, so whatever it writes lands "between"
two calls of a client: a second writer slipping in), and `requests` (every
request seen). `gcloud_env()` gives the variables that point gcloud here.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from tests.fakes import BackgroundServer, gcloud_env


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    # Pure Python on purpose: no extra dependency for a test fake's small payloads.
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Version:
    number: int
    data: bytes
    state: str = "ENABLED"
    create_time: str = field(default_factory=_now)
    destroy_time: str | None = None


@dataclass
class Secret:
    project: str
    name: str
    create_time: str = field(default_factory=_now)
    labels: dict[str, str] = field(default_factory=dict)
    versions: list[Version] = field(default_factory=list)
    etag_counter: int = 1

    @property
    def resource(self) -> str:
        return f"projects/{self.project}/secrets/{self.name}"


class _ApiError(Exception):
    def __init__(self, code: int, status: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.message = message


_SECRETS = re.compile(r"^/v1/projects/([^/]+)/secrets$")
_SECRET = re.compile(r"^/v1/projects/([^/]+)/secrets/([^/:]+)(?::(addVersion))?$")
_VERSIONS = re.compile(r"^/v1/projects/([^/]+)/secrets/([^/:]+)/versions$")
_VERSION = re.compile(r"^/v1/projects/([^/]+)/secrets/([^/:]+)/versions/([^/:]+)(?::(access|enable|disable|destroy))?$")


class FakeSecretManager(BackgroundServer):
    def __init__(self, require_token: str | None = None) -> None:
        super().__init__()
        self.require_token = require_token
        self.down = False
        self.garbage = False
        self.before_reply: Callable[[str, str], None] | None = None
        # Seconds to hold each coming `:access` call, one entry per call (a slow or busy Secret Manager).
        self.access_delays: list[float] = []
        self.requests: list[dict[str, Any]] = []
        self.secrets: dict[tuple[str, str], Secret] = {}
        self._lock = threading.Lock()

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    # -- direct access for tests -------------------------------------------
    def create_secret(self, name: str, project: str = "test-project") -> Secret:
        with self._lock:
            return self._create(project, name)

    def add_version(self, name: str, data: bytes | str, project: str = "test-project") -> int:
        raw = data.encode() if isinstance(data, str) else data
        with self._lock:
            secret = self._secret(project, name)
            return self._add(secret, raw).number

    def latest_data(self, name: str, project: str = "test-project") -> bytes:
        with self._lock:
            return self._secret(project, name).versions[-1].data

    def versions(self, name: str, project: str = "test-project") -> list[Version]:
        with self._lock:
            return list(self._secret(project, name).versions)

    def gcloud_env(self, config_dir: str, project: str = "test-project") -> dict[str, str]:
        """Variables that make the real gcloud talk to this fake, offline, with a fixed token."""
        return gcloud_env(config_dir, "SECRETMANAGER", self.url, self.require_token or "test-token", project)

    def paths(self) -> list[str]:
        return [f"{r['method']} {r['path']}" for r in self.requests]

    # -- model -------------------------------------------------------------
    def _create(self, project: str, name: str) -> Secret:
        if (project, name) in self.secrets:
            raise _ApiError(
                409,
                "ALREADY_EXISTS",
                f"Secret [projects/{project}/secrets/{name}] already exists.",
            )
        secret = Secret(project, name)
        self.secrets[(project, name)] = secret
        return secret

    def _secret(self, project: str, name: str) -> Secret:
        secret = self.secrets.get((project, name))
        if secret is None:
            raise _ApiError(
                404,
                "NOT_FOUND",
                f"Secret [projects/{project}/secrets/{name}] not found or has no versions.",
            )
        return secret

    def _add(self, secret: Secret, data: bytes) -> Version:
        version = Version(number=len(secret.versions) + 1, data=data)
        secret.versions.append(version)
        return version

    def _version(self, secret: Secret, ref: str) -> Version:
        name = f"{secret.resource}/versions/{ref}"
        if ref == "latest":
            # The real API resolves "latest" to the newest version whatever its state.
            if not secret.versions:
                raise _ApiError(404, "NOT_FOUND", f"Secret Version [{name}] not found.")
            return secret.versions[-1]
        if not ref.isdigit() or not 1 <= int(ref) <= len(secret.versions):
            raise _ApiError(404, "NOT_FOUND", f"Secret Version [{name}] not found.")
        return secret.versions[int(ref) - 1]

    def _version_json(self, secret: Secret, version: Version) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": f"{secret.resource}/versions/{version.number}",
            "createTime": version.create_time,
            "state": version.state,
            "replicationStatus": {"automatic": {}},
            "etag": f'"{version.number}-{version.state.lower()}"',
            # gcloud reports the payload as corrupted on addVersion without this.
            "clientSpecifiedPayloadChecksum": True,
        }
        if version.destroy_time:
            body["destroyTime"] = version.destroy_time
        return body

    def _secret_json(self, secret: Secret) -> dict[str, Any]:
        return {
            "name": secret.resource,
            "replication": {"automatic": {}},
            "createTime": secret.create_time,
            "labels": secret.labels,
            "etag": f'"{secret.etag_counter}"',
        }

    # -- HTTP --------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self.requests.append(
            {
                "method": request.method,
                "path": request.path,
                "query": dict(request.query),
                "authorization": request.headers.get("Authorization"),
                "body": raw.decode(errors="replace"),
            }
        )
        if self.access_delays and request.path.endswith(":access"):
            await asyncio.sleep(self.access_delays.pop(0))
        if self.down:
            return _error(_ApiError(500, "INTERNAL", "fake secret manager is down"))
        if self.require_token is not None and request.headers.get("Authorization") != f"Bearer {self.require_token}":
            return _error(
                _ApiError(
                    401,
                    "UNAUTHENTICATED",
                    "Request had invalid authentication credentials.",
                )
            )
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError:
            return _error(_ApiError(400, "INVALID_ARGUMENT", "Invalid JSON payload received."))
        try:
            with self._lock:
                result = self._dispatch(request.method, request.path, dict(request.query), body)
        except _ApiError as exc:
            return _error(exc)
        if isinstance(result, _Access):
            if self.garbage:
                return web.Response(status=200, text="<html>not json</html>", content_type="text/html")
            result = result.body
        hook = self.before_reply
        if hook is not None:
            # The reply is already fixed: anything the hook writes lands after it.
            await asyncio.get_running_loop().run_in_executor(None, hook, request.method, request.path)
        return web.json_response(result)

    def _dispatch(self, method: str, path: str, query: dict[str, str], body: dict[str, Any]) -> Any:
        if m := _SECRETS.match(path):
            project = m.group(1)
            if method == "POST":
                secret_id = query.get("secretId", "")
                if not re.fullmatch(r"[A-Za-z0-9_-]{1,255}", secret_id):
                    raise _ApiError(400, "INVALID_ARGUMENT", "Invalid secretId.")
                secret = self._create(project, secret_id)
                secret.labels = dict(body.get("labels") or {})
                return self._secret_json(secret)
            if method == "GET":
                items = [self._secret_json(s) for (p, _), s in sorted(self.secrets.items()) if p == project]
                return {"secrets": items, "totalSize": len(items)} if items else {}
        elif m := _SECRET.match(path):
            secret = self._secret(m.group(1), m.group(2))
            if m.group(3) == "addVersion" and method == "POST":
                return self._add_version(secret, body)
            if m.group(3) is None and method == "GET":
                return self._secret_json(secret)
            if m.group(3) is None and method == "DELETE":
                del self.secrets[(secret.project, secret.name)]
                return {}
        elif m := _VERSIONS.match(path):
            if method == "GET":
                return self._list_versions(self._secret(m.group(1), m.group(2)), query)
        elif m := _VERSION.match(path):
            secret = self._secret(m.group(1), m.group(2))
            version = self._version(secret, m.group(3))
            verb = m.group(4)
            if verb is None and method == "GET":
                return self._version_json(secret, version)
            if verb == "access" and method == "GET":
                return self._access(secret, version)
            if verb in ("enable", "disable", "destroy") and method == "POST":
                return self._transition(secret, version, verb)
        raise _ApiError(404, "NOT_FOUND", f"fake has no route {method} {path}")

    def _add_version(self, secret: Secret, body: dict[str, Any]) -> dict[str, Any]:
        payload = body.get("payload") or {}
        try:
            # proto3's JSON mapping accepts standard and URL-safe base64, padded or not; gcloud sends URL-safe.
            text = str(payload.get("data", "")).translate(str.maketrans("-_", "+/"))
            data = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        except ValueError as exc:
            raise _ApiError(400, "INVALID_ARGUMENT", "payload.data is not base64") from exc
        if "dataCrc32c" in payload and int(payload["dataCrc32c"]) != crc32c(data):
            raise _ApiError(
                400,
                "INVALID_ARGUMENT",
                "Checksum mismatch: payload.dataCrc32c does not match the data.",
            )
        if len(data) > 64 * 1024:
            raise _ApiError(
                400,
                "INVALID_ARGUMENT",
                "Secret payload data exceeds the 65536 byte limit.",
            )
        return self._version_json(secret, self._add(secret, data))

    def _access(self, secret: Secret, version: Version) -> _Access:
        if version.state != "ENABLED":
            raise _ApiError(
                400,
                "FAILED_PRECONDITION",
                f"Secret Version [{secret.resource}/versions/{version.number}] is in {version.state} state.",
            )
        return _Access(
            {
                "name": f"{secret.resource}/versions/{version.number}",
                "payload": {
                    "data": base64.b64encode(version.data).decode(),
                    "dataCrc32c": str(crc32c(version.data)),
                },
            }
        )

    def _transition(self, secret: Secret, version: Version, verb: str) -> dict[str, Any]:
        if version.state == "DESTROYED":
            raise _ApiError(
                400,
                "FAILED_PRECONDITION",
                f"Secret Version [{secret.resource}/versions/{version.number}] is destroyed.",
            )
        if verb == "destroy":
            version.state, version.data, version.destroy_time = "DESTROYED", b"", _now()
        else:
            version.state = "ENABLED" if verb == "enable" else "DISABLED"
        return self._version_json(secret, version)

    def _list_versions(self, secret: Secret, query: dict[str, str]) -> dict[str, Any]:
        # Newest first, as the real API lists them.
        items = [self._version_json(secret, v) for v in reversed(secret.versions)]
        wanted = query.get("filter", "")
        if m := re.fullmatch(r"\s*state\s*[:=]\s*(\w+)\s*", wanted):
            items = [i for i in items if i["state"] == m.group(1).upper()]
        start = int(query.get("pageToken") or 0)
        size = int(query.get("pageSize") or 0) or 25000
        page = items[start : start + size]
        result: dict[str, Any] = {"totalSize": len(items)}
        if page:
            result["versions"] = page
        if start + size < len(items):
            result["nextPageToken"] = str(start + size)
        return result


@dataclass
class _Access:
    body: dict[str, Any]


def _error(exc: _ApiError) -> web.Response:
    return web.json_response(
        {"error": {"code": exc.code, "message": exc.message, "status": exc.status}},
        status=exc.code,
    )
