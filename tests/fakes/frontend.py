"""A fake of Cloud Run's front end: the HTTPS proxy in front of every *.run.app service.

Cloud Run's "Known issues" page (https://cloud.google.com/run/docs/known-issues, "Reserved URL
paths") says the front end keeps some paths for itself: `/eventlogs`, every path under `/_ah/`,
and some paths ending in `z` (it advises avoiding all of them). Such a request never reaches the
container; Google's front end answers it with its own HTML 404. This fake does the same for every
path ending in `z` (the documented advice, since which ones are taken is not published), under
`/_ah/`, and `/eventlogs`, and forwards everything else to `backend`, streaming the answer back.

The path is checked after percent-decoding, as Cloud Run decodes some escapes before routing
(same page: "%41" reaches the container as "A"). With `tls` (see `self_signed_tls`) it serves
HTTPS, so a real `curl https://…` can be pointed at it.
"""

from __future__ import annotations

import datetime
import html
import ipaddress
import ssl
import threading
from pathlib import Path

import aiohttp
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.fakes import BackgroundServer

__all__ = ["FakeFrontend", "is_reserved", "self_signed_tls"]

HOP_BY_HOP = frozenset(
    h.lower()
    for h in (
        "Connection",
        "Keep-Alive",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "TE",
        "Trailer",
        "Transfer-Encoding",
        "Upgrade",
        "Host",
        "Content-Length",
    )
)

# The shape of Google's own 404 page (status, content type, the words), not its styling.
GOOGLE_404 = """<!DOCTYPE html>
<html lang=en>
  <meta charset=utf-8>
  <meta name=viewport content="initial-scale=1, minimum-scale=1, width=device-width">
  <title>Error 404 (Not Found)!!1</title>
  <a href=//www.google.com/><span id=logo aria-label=Google></span></a>
  <p><b>404.</b> <ins>That\u2019s an error.</ins>
  <p>The requested URL <code>{path}</code> was not found on this server.  <ins>That\u2019s all we know.</ins>
"""


def is_reserved(path: str) -> bool:
    """Whether Cloud Run's front end answers `path` (decoded, without the query) itself."""
    return path.endswith("z") or path.startswith("/_ah/") or path == "/eventlogs"


def self_signed_tls(folder: Path) -> tuple[ssl.SSLContext, Path]:
    """A server context for 127.0.0.1/localhost and the certificate file a client must trust."""
    cert_path, key_path = write_self_signed(folder, "frontend-")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    return context, cert_path


def write_self_signed(folder: Path, prefix: str = "") -> tuple[Path, Path]:
    """A one-day self-signed certificate for localhost and 127.0.0.1, and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / f"{prefix}cert.pem", folder / f"{prefix}key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


class FakeFrontend(BackgroundServer):
    def __init__(self, backend: str, tls: ssl.SSLContext | None = None) -> None:
        super().__init__()
        self.backend = backend.rstrip("/")
        self.tls = tls
        self.refused: list[str] = []  # paths the front end answered itself
        self.forwarded: list[str] = []  # paths passed on to the backend
        self._lock = threading.Lock()
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host_port}"

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        app.on_cleanup.append(self._close_session)
        return app

    async def _bind(self) -> None:
        assert self._runner is not None
        self._site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True, ssl_context=self.tls)
        await self._site.start()
        self.port = int(self._runner.addresses[0][1])

    async def _close_session(self, _app: web.Application) -> None:
        if self._session is not None:
            await self._session.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path  # decoded
        if is_reserved(path):
            with self._lock:
                self.refused.append(path)
            return web.Response(
                status=404,
                text=GOOGLE_404.format(path=html.escape(path)),
                content_type="text/html",
                charset="UTF-8",
                headers={"Referrer-Policy": "no-referrer", "Server": "Google Frontend"},
            )
        with self._lock:
            self.forwarded.append(path)
        if self._session is None:
            self._session = aiohttp.ClientSession(auto_decompress=False)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["X-Forwarded-For"] = request.remote or "127.0.0.1"
        headers["X-Forwarded-Proto"] = "https" if self.tls else "http"
        body = await request.read()
        async with self._session.request(
            request.method,
            self.backend + request.rel_url.raw_path_qs,
            headers=headers,
            data=body,
            allow_redirects=False,
        ) as upstream:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for name, value in upstream.headers.items():
                if name.lower() not in HOP_BY_HOP and name.lower() != "server":
                    response.headers.add(name, value)
            response.headers["Server"] = "Google Frontend"
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response
