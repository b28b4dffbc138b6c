"""Processes for the benchmark: paths and pins, the mock, the gateway and LiteLLM started as their real
commands (each in its own process group, stopped by pid), readiness, and what /proc says about them
(CPU seconds, RSS, fds, the CPUs' busy time); the machine's description."""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.metadata as md
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent

ROOT = BENCH.parent

PY = sys.executable

LITELLM_BIN = BENCH / ".venv-litellm" / "bin" / "litellm"

GATEWAY_KEY = "bench-key-0123456789abcdef"

LITELLM_KEY = "sk-bench-master-key"

PROJECT = "bench-project"

VERTEX_PATH = f"/v1/projects/{PROJECT}/locations/global/endpoints/openapi/chat/completions"

CPU_MOCK, CPU_SERVER = "0", "1"

# Where `gunicorn -c gunicorn.conf.py app.main:app` runs; --app-root points it at a copy
# of the tree to measure a candidate change without touching app/.
APP_ROOT = ROOT


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children(p))
    return out


def cpu_seconds(pids: list[int]) -> float:
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime + stime (all threads)
    return total / tick


def cpu_busy(cpu: str) -> float:
    """Busy seconds of one CPU since boot (everything but idle and iowait)."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{cpu} "):
            v = [int(x) for x in line.split()[1:]]
            return (sum(v[:8]) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")
    return 0.0


def status_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_mb(pids: list[int]) -> float:
    return sum(status_kb(p, "VmRSS") for p in pids) / 1024


def fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    started: float  # perf_counter at spawn

    @property
    def pid(self) -> int:
        return self.proc.pid

    def worker(self) -> int:
        """The process that serves requests: the gunicorn worker, else the process."""
        kids = children(self.pid)
        return kids[0] if kids else self.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


def spawn(
    name: str,
    argv: list[str],
    cpu: str,
    env: dict[str, str],
    log_path: Path,
    port: int,
    cwd: Path = ROOT,
) -> Server:
    out = log_path.open("ab")
    started = time.perf_counter()
    proc = subprocess.Popen(
        ["taskset", "-c", cpu, *argv],
        cwd=cwd,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, so stop() ends exactly it
    )
    out.close()
    return Server(name, proc, port, started)


def spawn_mock(tmp: Path, port: int, *extra: str) -> Server:
    """The mock upstream (Vertex + metadata) on the mock's CPU."""
    argv = [PY, str(BENCH / "mock_upstream.py"), "--port", str(port), *extra]
    return spawn("mock", argv, CPU_MOCK, base_env(tmp), tmp / "mock.log", port)


def http_get(port: int, path: str, timeout: float = 1.0) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except OSError:
        return 0


def wait_ready(server: Server, path: str, timeout: float, interval: float = 0.005) -> float:
    """Seconds from spawn to the first 200 on path (polling every `interval`)."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited with {server.proc.returncode}")
        if http_get(server.port, path, timeout=0.5) == 200:
            return time.perf_counter() - server.started
        time.sleep(interval)
    raise RuntimeError(f"{server.name} not ready on {path} within {timeout}s")


def version(dist: str) -> str:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "-"


def litellm_version() -> str:
    py = BENCH / ".venv-litellm" / "bin" / "python"
    if not py.exists():
        return "-"
    out = subprocess.run(
        [str(py), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        capture_output=True,
        text=True,
    )
    return out.stdout.strip() or "-"


def machine_info() -> dict[str, str]:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    wrk_v = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.splitlines()
    commit = subprocess.run(
        ["git", "-C", str(APP_ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(APP_ROOT), "status", "--porcelain", "--", "app", "gunicorn.conf.py"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    load1 = os.getloadavg()[0]
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "gateway commit": (commit or "-")
        + (" (app/ modified)" if dirty else "")
        + ("" if APP_ROOT == ROOT else f" (app root {APP_ROOT})"),
        "wrk": wrk_v[0].split(" [")[0] if wrk_v else "-",
        "gateway deps": ", ".join(
            f"{d} {version(d)}" for d in ("starlette", "uvicorn", "gunicorn", "uvloop", "httptools", "orjson")
        ),
        "litellm": litellm_version(),
        # Other work on the machine skews every number; this makes it visible.
        "load average at start (1 min)": f"{load1:.2f}",
    }


def base_env(tmp: Path) -> dict[str, str]:
    env = {
        "PATH": f"{Path(PY).parent}:/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": str(tmp / "home"),
    }
    (tmp / "home").mkdir(exist_ok=True)
    return env


def gateway_env(tmp: Path, port: int, mock: int) -> dict[str, str]:
    keys = [{"id": "bench", "key": GATEWAY_KEY, "enabled": True}]
    return {
        **base_env(tmp),
        "PORT": str(port),
        "WEB_CONCURRENCY": "1",
        "API_KEYS_JSON": json.dumps(keys),
        "VERTEX_BASE_URL": f"http://127.0.0.1:{mock}",
        "VERTEX_LOCATION": "global",
        "GOOGLE_CLOUD_PROJECT": PROJECT,
        "CLOUDSDK_CONFIG": str(tmp / "home" / "gcloud"),
        "GCE_METADATA_HOST": f"127.0.0.1:{mock}",
        "GCE_METADATA_IP": f"127.0.0.1:{mock}",
        "LOG_LEVEL": "info",
    }


def start_gateway(tmp: Path, port: int, mock: int, logname: str = "gateway.log", bare: bool = False) -> Server:
    """The container's command; bare=True serves bench/bare_proxy.py the same way."""
    gunicorn = str(Path(PY).parent / "gunicorn")
    target = ["--pythonpath", str(BENCH), "bare_proxy:app"] if bare else ["app.main:app"]
    return spawn(
        "bare" if bare else "gateway",
        [gunicorn, "-c", "gunicorn.conf.py", *target],
        CPU_SERVER,
        gateway_env(tmp, port, mock),
        tmp / logname,
        port,
        cwd=APP_ROOT,
    )


def start_litellm(tmp: Path, port: int, mock: int) -> Server:
    env = {
        **base_env(tmp),
        "LITELLM_MASTER_KEY": LITELLM_KEY,
        "BENCH_MOCK_API_BASE": f"http://127.0.0.1:{mock}{VERTEX_PATH.rsplit('/chat/', 1)[0]}",
        # No network here: use the bundled model cost map instead of fetching it.
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_LOG": "ERROR",
    }
    argv = [
        str(LITELLM_BIN), "--config", str(BENCH / "litellm" / "config.yaml"),
        "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1", "--telemetry", "False",
    ]  # fmt: skip
    return spawn("litellm", argv, CPU_SERVER, env, tmp / "litellm.log", port)


@contextlib.contextmanager
def running(server: Server) -> Iterator[Server]:
    try:
        yield server
    finally:
        server.stop()


def repin(pid: int, cpu: str) -> None:
    subprocess.run(["taskset", "-a", "-p", "-c", cpu, str(pid)], check=True, capture_output=True)
