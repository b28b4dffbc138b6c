"""Local fakes of the Google services the gateway talks to.

Each fake is an aiohttp server on 127.0.0.1 running in its own thread and event
loop, so the gateway (a separate process) and synchronous test code can both
reach it over a real socket.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from types import TracebackType
from typing import Self

from aiohttp import web

__all__ = ["BackgroundServer", "free_port", "gcloud_env"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def gcloud_env(config_dir: str, api: str, url: str, token: str, project: str) -> dict[str, str]:
    """Variables that make the real gcloud call `api` (e.g. SECRETMANAGER, LOGGING) at a fake's `url`, offline,
    with a fixed access token and no prompts, update checks or usage reports."""
    os.makedirs(config_dir, exist_ok=True)
    token_file = os.path.join(config_dir, "access-token")
    with open(token_file, "w", encoding="utf-8") as handle:
        handle.write(token)
    env = {
        "CLOUDSDK_CONFIG": config_dir,
        f"CLOUDSDK_API_ENDPOINT_OVERRIDES_{api}": url + "/",
        "CLOUDSDK_AUTH_ACCESS_TOKEN_FILE": token_file,
        "CLOUDSDK_CORE_PROJECT": project,
        "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
        "CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK": "true",
        "CLOUDSDK_CORE_DISABLE_USAGE_REPORTING": "true",
        "CLOUDSDK_SURVEY_DISABLE_PROMPTS": "true",
    }
    if "CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE" in os.environ:
        env["CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE"] = os.environ["CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE"]
    return env


class BackgroundServer:
    """Runs `build_app()` on 127.0.0.1 in a daemon thread with its own loop."""

    start_timeout = 10.0

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self.port = 0

    def build_app(self) -> web.Application:
        raise NotImplementedError

    @property
    def host_port(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host_port}"

    def start(self) -> Self:
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._serve())
            except Exception as exc:  # re-raised by start()
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, name=type(self).__name__, daemon=True)
        self._thread.start()
        if not ready.wait(self.start_timeout):
            raise RuntimeError(f"{type(self).__name__} did not start")
        if failure:
            raise RuntimeError(f"{type(self).__name__} failed to start") from failure[0]
        return self

    async def _serve(self) -> None:
        # handler_cancellation: a fake must notice a client hanging up so tests
        # can assert the gateway closed its upstream request.
        self._runner = web.AppRunner(self.build_app(), handler_cancellation=True, access_log=None)
        await self._runner.setup()
        await self._bind()

    async def _bind(self) -> None:
        assert self._runner is not None
        self._site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await self._site.start()
        self.port = int(self._runner.addresses[0][1])

    async def _cleanup(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def call(self, coro_fn, timeout: float = 10.0):  # type: ignore[no-untyped-def]
        """Run a coroutine function on the server's loop from a test thread."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro_fn(), self._loop).result(timeout)

    def stop_listening(self) -> None:
        """Close the listening socket: new connections are refused."""

        async def stop() -> None:
            if self._site is not None:
                await self._site.stop()
                self._site = None

        self.call(stop)

    def resume_listening(self) -> None:
        self.call(self._bind)

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
