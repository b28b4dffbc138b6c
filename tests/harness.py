"""Start the gateway as the container does: `gunicorn -c gunicorn.conf.py app.main:app`.

The process gets a clean environment (no real ADC, no gcloud config) plus the
overrides a test passes; its stdout and stderr are kept in memory and in a file
so tests can parse the JSON log lines.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tests.fakes import free_port

REPO = Path(__file__).resolve().parent.parent
GUNICORN = Path(sys.executable).parent / "gunicorn"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0


@dataclass
class Gateway:
    proc: subprocess.Popen[str]
    port: int
    home: tempfile.TemporaryDirectory[str]
    log_path: Path
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    _readers: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    returncode: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """What an OpenAI SDK takes as base_url."""
        return self.url + "/v1"

    def lines(self) -> list[str]:
        with self._lock:
            return self.stdout + self.stderr

    def json_logs(self) -> list[dict[str, Any]]:
        """Every stdout line that is a JSON object, in order."""
        with self._lock:
            raw = list(self.stdout)
        parsed = []
        for line in raw:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict):
                parsed.append(entry)
        return parsed

    def request_logs(self) -> list[dict[str, Any]]:
        return [e for e in self.json_logs() if "httpRequest" in e]

    def wait_for_log(self, predicate: Any, timeout: float = 10.0) -> dict[str, Any]:
        """The first JSON log line matching `predicate`, waiting a bounded time for it."""
        deadline = time.monotonic() + timeout
        while True:
            for entry in self.json_logs():
                if predicate(entry):
                    return entry
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no log line matched within {timeout}s; last lines:\n" + "\n".join(self.lines()[-20:])
                )
            time.sleep(0.02)

    def _pump(self, pipe: IO[str], sink: list[str], name: str) -> None:
        with self.log_path.open("a", encoding="utf-8") as out:
            for line in pipe:
                line = line.rstrip("\n")
                with self._lock:
                    sink.append(line)
                out.write(f"{name}: {line}\n")
                out.flush()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int:
        """Signal gunicorn's master and return its exit code (killed if it overstays)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        for reader in self._readers:
            reader.join(5)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        self.home.cleanup()
        self.returncode = self.proc.returncode
        return self.proc.returncode


def clean_env(home: str, overrides: dict[str, str | None]) -> dict[str, str]:
    env: dict[str, str | None] = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "HOME": home,
        "CLOUDSDK_CONFIG": os.path.join(home, "gcloud"),
        # The container image sets this too: log lines must not wait in a buffer.
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    env.update(overrides)
    # None means "unset", for a test that wants a variable gone.
    return {k: v for k, v in env.items() if v is not None}


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def start_gateway(
    env: dict[str, str | None],
    workers: int = 1,
    wait_healthy: bool = True,
    timeout: float = START_TIMEOUT,
    log_path: Path | None = None,
) -> Gateway:
    """Start gunicorn on a free port; wait (bounded) for /health 200, or only for the port."""
    port = free_port()
    home = tempfile.TemporaryDirectory(prefix="gw-home-")
    overrides: dict[str, str | None] = {
        "PORT": str(port),
        "WEB_CONCURRENCY": str(workers),
        **env,
    }
    if log_path is None:
        # Outside HOME so the log survives stop() for a post-mortem.
        log_path = Path(tempfile.mkdtemp(prefix="gw-log-")) / "gateway.log"
    proc = subprocess.Popen(
        [str(GUNICORN), "-c", "gunicorn.conf.py", "app.main:app"],
        cwd=REPO,
        env=clean_env(home.name, overrides),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
    )
    gateway = Gateway(proc=proc, port=port, home=home, log_path=log_path)
    for pipe, sink, name in (
        (proc.stdout, gateway.stdout, "out"),
        (proc.stderr, gateway.stderr, "err"),
    ):
        assert pipe is not None
        reader = threading.Thread(target=gateway._pump, args=(pipe, sink, name), daemon=True)
        reader.start()
        gateway._readers.append(reader)

    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            gateway.stop()
            raise RuntimeError(
                f"gateway exited with {proc.returncode} at startup:\n" + "\n".join(gateway.lines()[-40:])
            )
        # Without waiting for health, still wait until the port accepts connections.
        if _healthy(gateway.url) if wait_healthy else _listening(port):
            return gateway
        if time.monotonic() > deadline:
            gateway.stop()
            raise RuntimeError(f"gateway not ready within {timeout}s:\n" + "\n".join(gateway.lines()[-40:]))
        time.sleep(0.1)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0
