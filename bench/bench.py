"""Side-by-side benchmark: mock upstream direct vs the gateway vs LiteLLM proxy.

Driven by `bench/run` (which installs wrk and LiteLLM first). Everything talks only
to 127.0.0.1; every load loop is bounded in count and time. The mock and the load
generator share CPU 0 while the server under test owns CPU 1 (for the direct
baseline the mock is on CPU 0 and wrk on CPU 1).

Writes bench/RESULTS.md and prints it.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.metadata as md
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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

JSON_BODY = {
    "model": "flash",
    "messages": [{"role": "user", "content": "Say hello in one short sentence."}],
    "max_tokens": 64,
}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------- procs


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


# --------------------------------------------------------------------------- wrk


def wrk(
    port: int,
    path: str,
    body_file: Path,
    key: str,
    cpu: str,
    connections: int,
    duration: float,
) -> dict[str, Any]:
    env = {**os.environ, "BENCH_BODY": str(body_file), "BENCH_KEY": key}
    argv = [
        "taskset", "-c", cpu, "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s",
        "--timeout", "10s", "-s", str(BENCH / "wrk" / "post.lua"),
        f"http://127.0.0.1:{port}{path}",
    ]  # fmt: skip
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=duration + 30)
    for line in out.stdout.splitlines():
        if line.startswith("WRK_JSON "):
            r: dict[str, Any] = json.loads(line[9:])
            r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
            r["errors"] = r["connect"] + r["read"] + r["write"] + r["status"] + r["timeout"]
            return r
    raise RuntimeError(f"wrk gave no summary: {out.stdout}\n{out.stderr}")


@dataclass
class LoadResult:
    target: str
    kind: str
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int
    cpu_per_1k: float | None
    rss_mb: float | None
    foreign: float | None = None  # share of the server's CPU used by other processes


def load(
    target: str,
    kind: str,
    port: int,
    path: str,
    body: Path,
    key: str,
    wrk_cpu: str,
    pids: list[int] | None,
    args: argparse.Namespace,
) -> LoadResult:
    wrk(port, path, body, key, wrk_cpu, args.connections, args.warmup)
    cpu0 = cpu_seconds(pids) if pids else 0.0
    server_cpu = CPU_MOCK if wrk_cpu == CPU_SERVER else CPU_SERVER
    busy0, t0 = cpu_busy(server_cpu), time.perf_counter()
    r = wrk(port, path, body, key, wrk_cpu, args.connections, args.duration)
    busy, wall = cpu_busy(server_cpu) - busy0, time.perf_counter() - t0
    cpu = (cpu_seconds(pids) - cpu0) if pids else 0.0
    res = LoadResult(
        target,
        kind,
        r["rps"],
        r["p50_us"] / 1000,
        r["p99_us"] / 1000,
        r["errors"],
        r["requests"],
        cpu / r["requests"] * 1000 if pids and r["requests"] else None,
        rss_mb(pids) if pids else None,
        max(0.0, busy - cpu) / wall if pids else None,
    )
    log(
        f"{target:8} {kind:6} {res.rps:10.0f} req/s  p50 {res.p50_ms:.2f} ms  "
        f"p99 {res.p99_ms:.2f} ms  errors {res.errors}"
        + (f"  cpu/1k {res.cpu_per_1k:.3f}s  rss {res.rss_mb:.0f} MB  other {res.foreign:.0%}" if pids else "")
    )
    return res


# --------------------------------------------------------------------------- helpers


def stream_client(port: int, path: str, key: str, cpu: str, extra: list[str], timeout: float) -> dict[str, Any]:
    argv = [
        "taskset", "-c", cpu, PY, str(BENCH / "stream_client.py"),
        "--port", str(port), "--path", path, "--key", key, *extra,
    ]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"stream_client failed: {out.stderr}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    if not values:
        return float("nan")
    return values[min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))]


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


# --------------------------------------------------------------------------- env


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


# --------------------------------------------------------------------------- phases


def measure_import(tmp: Path, mock: int, rounds: int) -> list[float]:
    code = "import time; t = time.perf_counter(); import app.main; print(time.perf_counter() - t)"
    env = gateway_env(tmp, free_port(), mock)
    times = []
    for _ in range(rounds):
        out = subprocess.run(
            ["taskset", "-c", CPU_SERVER, PY, "-c", code],
            cwd=APP_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if out.returncode != 0:
            raise RuntimeError(f"import app.main failed: {out.stderr[-2000:]}")
        times.append(float(out.stdout.strip().splitlines()[-1]))
    return times


def measure_startup(tmp: Path, mock: int, rounds: int) -> list[float]:
    times = []
    for i in range(rounds):
        port = free_port()
        with running(start_gateway(tmp, port, mock, f"startup-{i}.log")) as gw:
            times.append(wait_ready(gw, "/healthz", timeout=30, interval=0.002))
    return times


def repin(pid: int, cpu: str) -> None:
    subprocess.run(["taskset", "-a", "-p", "-c", cpu, str(pid)], check=True, capture_output=True)


def latency_c1(
    gw_port: int,
    mock: int,
    body: Path,
    rounds: int,
    seconds: float,
    direct_cpu: str = CPU_SERVER,
    gw_cpu: str = CPU_MOCK,
) -> dict[str, list[float]]:
    """Alternate gateway and direct rounds at one connection, so drift hits both."""
    out: dict[str, list[float]] = {"gw_p50": [], "gw_p99": [], "d_p50": [], "d_p99": []}
    for _ in range(rounds):
        d = wrk(mock, VERTEX_PATH, body, "", direct_cpu, 1, seconds)
        g = wrk(gw_port, "/v1/chat/completions", body, GATEWAY_KEY, gw_cpu, 1, seconds)
        out["d_p50"].append(d["p50_us"])
        out["d_p99"].append(d["p99_us"])
        out["gw_p50"].append(g["p50_us"])
        out["gw_p99"].append(g["p99_us"])
    return out


def chunk_delay(gw_port: int, mock: int, rounds: int, client_cpu: str = CPU_MOCK) -> dict[str, float]:
    """Per-chunk delay (arrival minus the mock's send stamp), via gateway vs direct."""
    extra = ["--streams", "8", "--chunks", "25", "--interval-ms", "20", "--raw-delays"]
    gw: list[float] = []
    direct: list[float] = []
    for _ in range(rounds):
        r = stream_client(mock, VERTEX_PATH, "", client_cpu, extra, 60)
        direct += r["delays_us"]
        r = stream_client(gw_port, "/v1/chat/completions", GATEWAY_KEY, client_cpu, extra, 60)
        if r["errors"]:
            raise RuntimeError(f"chunk-delay streams failed: {r['error_samples']}")
        gw += r["delays_us"]
    return {
        "n": len(gw),
        "gw_p50": pct(gw, 50),
        "gw_p99": pct(gw, 99),
        "d_p50": pct(direct, 50),
        "d_p99": pct(direct, 99),
        "added_p50": pct(gw, 50) - pct(direct, 50),
        "added_p99": pct(gw, 99) - pct(direct, 99),
    }


def soak_round(gw: Server, worker: int, args: argparse.Namespace) -> dict[str, Any]:
    extra = [
        "--streams", str(args.soak_streams), "--chunks", str(args.soak_chunks),
        "--interval-ms", str(args.soak_interval_ms), "--ramp", "1.0", "--timeout", "60", "--count-only",
    ]  # fmt: skip
    argv = [
        "taskset", "-c", CPU_MOCK, PY, str(BENCH / "stream_client.py"), "--port", str(gw.port),
        "--key", GATEWAY_KEY, *extra,
    ]  # fmt: skip
    cpu0 = cpu_seconds([worker])
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak_rss, peak_fds = 0.0, 0
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        peak_rss = max(peak_rss, rss_mb([worker]))
        peak_fds = max(peak_fds, fd_count(worker))
        time.sleep(0.05)
    if proc.poll() is None:
        proc.kill()
    stdout, stderr = proc.communicate(timeout=10)
    if proc.returncode != 0:
        raise RuntimeError(f"soak client failed: {stderr[-2000:]}")
    result: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    result.update(peak_rss=peak_rss, peak_fds=peak_fds, cpu_s=cpu_seconds([worker]) - cpu0)
    return result


def soak(gw: Server, args: argparse.Namespace) -> dict[str, Any]:
    """Rounds of concurrent paced streams; a second round that does not grow RSS means no leak."""
    worker = gw.worker()
    base_rss = rss_mb([worker])
    base_fds = fd_count(worker)
    rounds = []
    for i in range(args.soak_rounds):
        r = soak_round(gw, worker, args)
        time.sleep(2.0)
        r["rss_after_round"] = rss_mb([worker])
        rounds.append(r)
        log(
            f"soak round {i + 1}: {r['complete']}/{r['streams']} complete, {r['errors']} errors, "
            f"peak rss {r['peak_rss']:.0f} MB, peak fds {r['peak_fds']}, rss after {r['rss_after_round']:.0f} MB"
        )
    # Idle upstream connections stay in the pool for its keep-alive time:
    # wait (bounded) for the fd count to come back.
    settle_start = time.monotonic()
    while time.monotonic() - settle_start < args.settle and fd_count(worker) > base_fds + 2:
        time.sleep(0.25)
    delays_p50 = max(r["delay_p50_us"] for r in rounds)
    delays_p99 = max(r["delay_p99_us"] for r in rounds)
    return {
        "rounds": rounds,
        "streams": sum(r["streams"] for r in rounds),
        "complete": sum(r["complete"] for r in rounds),
        "errors": sum(r["errors"] for r in rounds),
        "error_samples": sorted({e for r in rounds for e in r["error_samples"]})[:5],
        "chunks": sum(r["chunks"] for r in rounds),
        "elapsed_s": max(r["elapsed_s"] for r in rounds),
        "delay_p50_us": delays_p50,
        "delay_p99_us": delays_p99,
        "base_rss": base_rss,
        "peak_rss": max(r["peak_rss"] for r in rounds),
        "after_rss": rss_mb([worker]),
        "hwm_rss": status_kb(worker, "VmHWM") / 1024,
        "base_fds": base_fds,
        "peak_fds": max(r["peak_fds"] for r in rounds),
        "after_fds": fd_count(worker),
        "settle_s": time.monotonic() - settle_start,
        "cpu_s": sum(r["cpu_s"] for r in rounds),
    }


# --------------------------------------------------------------------------- report


def fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def ratio(a: float, b: float) -> str:
    return f"{a / b:.3g}x" if b else "-"


def report(
    info: dict[str, str],
    loads: dict[tuple[str, str], LoadResult],
    extras: dict[str, Any],
    args: argparse.Namespace,
) -> str:
    L: list[str] = []
    L.append("## Run")
    L.append("")
    for k, v in info.items():
        L.append(f"- {k}: {v}")
    L.append(
        f"- load: wrk, 1 thread, {args.connections} connections, {args.duration:g} s "
        f"per cell after a {args.warmup:g} s warm-up; streams = {args.chunks} SSE chunks each"
    )
    L.append("- pinning: mock on CPU 0; server under test on CPU 1 with wrk on CPU 0 (direct rows: wrk on CPU 1)")
    L.append("")
    L.append("## Throughput")
    L.append("")
    L.append(
        "| target | kind | req/s | p50 ms | p99 ms | errors | CPU-s / 1k req | req per CPU-s | RSS MB "
        "| other load on its CPU | vs direct | vs LiteLLM |"
    )
    L.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for (target, kind), r in loads.items():
        d = loads.get(("direct", kind))
        lt = loads.get(("litellm", kind))
        vs_d = ratio(r.rps, d.rps) if d and target != "direct" else "-"
        vs_l = ratio(r.rps, lt.rps) if lt and target in ("gateway", "bare") else "-"
        per_cpu = f"{1000 / r.cpu_per_1k:,.0f}" if r.cpu_per_1k else "-"
        other = "-" if r.foreign is None else f"{r.foreign:.0%}"
        L.append(
            f"| {target} | {kind} | {r.rps:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | "
            f"{r.errors} | {fmt(r.cpu_per_1k, '.3f')} | {per_cpu} | {fmt(r.rss_mb, '.0f')} | {other} | "
            f"{vs_d} | {vs_l} |"
        )
    L.append("")
    L.append("Errors = non-2xx responses + socket errors (connect/read/write/timeout).")
    L.append(
        "CPU and RSS: the server's whole process tree (gunicorn master + worker), from /proc. "
        "'req per CPU-s' is the rate one fully busy core would sustain: it is less sensitive than "
        "req/s to other work on the machine. 'other load': busy time of the server's CPU not spent by the "
        "server itself (other processes on a shared machine), as a share of the cell's wall time."
    )
    L.append("")
    if "latency" in extras:
        L.append("## Added latency")
        L.append("")
        L.append("| measure | layout | gateway | direct | added |")
        L.append("|---|---|---:|---:|---:|")
        layouts = (("", "gateway on its own core"), ("_same", "all on one core"))
        for suffix, layout in layouts:
            lat = extras.get("latency" + suffix)
            if not lat:
                continue
            g50, d50 = statistics.median(lat["gw_p50"]), statistics.median(lat["d_p50"])
            g99, d99 = statistics.median(lat["gw_p99"]), statistics.median(lat["d_p99"])
            L.append(f"| JSON p50, 1 connection (ms) | {layout} | {g50 / 1000:.3f} | {d50 / 1000:.3f} | "
                     f"{(g50 - d50) / 1000:.3f} |")  # fmt: skip
            L.append(f"| JSON p99, 1 connection (ms) | {layout} | {g99 / 1000:.3f} | {d99 / 1000:.3f} | "
                     f"{(g99 - d99) / 1000:.3f} |")  # fmt: skip
        for key, layout in (("chunks", "gateway on its own core"), ("chunks_same", "all on one core"),
                            ("chunks_bare", "bare floor, own core")):  # fmt: skip
            c = extras.get(key)
            if not c:
                continue
            L.append(f"| per-chunk delay p50 (ms) | {layout} | {c['gw_p50'] / 1000:.3f} | "
                     f"{c['d_p50'] / 1000:.3f} | {c['added_p50'] / 1000:.3f} |")  # fmt: skip
            L.append(f"| per-chunk delay p99 (ms) | {layout} | {c['gw_p99'] / 1000:.3f} | "
                     f"{c['d_p99'] / 1000:.3f} | {c['added_p99'] / 1000:.3f} |")  # fmt: skip
        L.append("")
        L.append(
            f"1-connection rows: median over {args.latency_rounds} alternating rounds of "
            f"{args.latency_seconds:g} s each (wrk). Per-chunk: 8 concurrent streams x 25 "
            "chunks 20 ms apart, arrival minus the mock's send stamp, alternating rounds. "
            "'Own core': mock and client on CPU 0, gateway on CPU 1 (direct JSON: wrk on CPU 1), so "
            "every hop through the gateway wakes the other vCPU. 'One core': mock, client and gateway "
            "all on CPU 1, so 'added' is the gateway's own work without cross-vCPU wake-ups."
        )
        L.append("")
    if "startup" in extras:
        s = extras["startup"]
        imp = extras["import"]
        L.append("## Start-up")
        L.append("")
        L.append(
            f"- gateway, spawn of gunicorn to first 200 on /healthz: best {min(s) * 1000:.0f} ms, median "
            f"{statistics.median(s) * 1000:.0f} ms (runs: {', '.join(f'{x * 1000:.0f}' for x in s)})"
        )
        L.append(
            f"- `import app.main` in a fresh interpreter: best {min(imp) * 1000:.0f} ms, "
            f"median {statistics.median(imp) * 1000:.0f} ms "
            f"(runs: {', '.join(f'{x * 1000:.0f}' for x in imp)})"
        )
        if "litellm_ready" in extras:
            L.append(f"- LiteLLM, spawn to first 200 on /health/liveliness: {extras['litellm_ready'] * 1000:.0f} ms")
        L.append("")
    if "soak" in extras:
        s = extras["soak"]
        L.append("## Soak")
        L.append("")
        L.append(
            f"{args.soak_rounds} rounds of {args.soak_streams} concurrent streams x {args.soak_chunks} chunks, "
            f"{args.soak_interval_ms:g} ms apart, through one worker (connects spread over 1 s):"
        )
        L.append("")
        L.append(f"- complete: {s['complete']}/{s['streams']}, errors: {s['errors']} "
                 f"{s['error_samples'] or ''}, chunks received: {s['chunks']:,}, "
                 f"longest round {s['elapsed_s']:.1f} s")  # fmt: skip
        L.append(f"- worker RSS: baseline {s['base_rss']:.1f} MB, peak {s['peak_rss']:.1f} MB "
                 f"(VmHWM {s['hwm_rss']:.1f}), after each round "
                 f"{', '.join(format(r['rss_after_round'], '.1f') for r in s['rounds'])} MB, "
                 f"at the end {s['after_rss']:.1f} MB")  # fmt: skip
        L.append(f"- worker open fds: baseline {s['base_fds']}, peak {s['peak_fds']}, "
                 f"after {s['after_fds']} ({s['settle_s']:.1f} s after the last stream)")  # fmt: skip
        L.append(f"- per-chunk delay under this load (arrival minus send stamp): "
                 f"p50 {s['delay_p50_us'] / 1000:.2f} ms, p99 {s['delay_p99_us'] / 1000:.2f} ms")  # fmt: skip
        L.append(f"- worker CPU over the soak: {s['cpu_s']:.2f} s")
        L.append("")
    L.append("## Targets")
    L.append("")
    L.append("| target | measured | met |")
    L.append("|---|---|---|")
    for name, measured, ok in targets(loads, extras):
        L.append(f"| {name} | {measured} | {'yes' if ok else '**no**'} |")
    L.append("")
    return "\n".join(L)


def targets(loads: dict[tuple[str, str], LoadResult], extras: dict[str, Any]) -> list[tuple[str, str, bool]]:
    out: list[tuple[str, str, bool]] = []
    for kind, floor in (("json", 5000), ("stream", 2500)):
        g = loads.get(("gateway", kind))
        if not g:
            continue
        unit = "req/s" if kind == "json" else "streams/s"
        out.append((f"{kind}: >= {floor:,} {unit}", f"{g.rps:,.0f}", g.rps >= floor))
        lt = loads.get(("litellm", kind))
        if lt:
            out.append((f"{kind}: >= 30x LiteLLM", f"{g.rps / lt.rps:.1f}x", g.rps >= 30 * lt.rps))
        d = loads.get(("direct", kind))
        if d:
            out.append((f"{kind}: >= 0.15 of direct", f"{g.rps / d.rps:.3f}", g.rps >= 0.15 * d.rps))
    for suffix, layout in (("", "own core"), ("_same", "one core")):
        lat = extras.get("latency" + suffix)
        if lat:
            a50 = statistics.median(lat["gw_p50"]) - statistics.median(lat["d_p50"])
            a99 = statistics.median(lat["gw_p99"]) - statistics.median(lat["d_p99"])
            out.append((f"added latency p50 <= 0.3 ms ({layout})", f"{a50 / 1000:.3f} ms", a50 <= 300))
            out.append((f"added latency p99 <= 1 ms ({layout})", f"{a99 / 1000:.3f} ms", a99 <= 1000))
        c = extras.get("chunks" + suffix)
        if c:
            out.append(
                (
                    f"per-chunk added delay p99 <= 1 ms ({layout})",
                    f"{c['added_p99'] / 1000:.3f} ms",
                    c["added_p99"] <= 1000,
                )
            )
    if "soak" in extras:
        s = extras["soak"]
        out.append(
            (
                "1,000 streams, zero errors",
                f"{s['complete']}/{s['streams']} complete, {s['errors']} errors",
                s["errors"] == 0 and s["complete"] == s["streams"] and min(r["streams"] for r in s["rounds"]) >= 1000,
            )
        )
        out.append(("soak RSS <= 150 MB", f"peak {s['peak_rss']:.0f} MB", s["peak_rss"] <= 150))
        out.append(
            (
                "fds back to baseline (+2)",
                f"{s['base_fds']} -> peak {s['peak_fds']} -> {s['after_fds']} ({s['settle_s']:.0f} s after)",
                s["after_fds"] <= s["base_fds"] + 2,
            )
        )
        out.append(
            (
                "RSS back to baseline (+10 MB)",
                f"{s['base_rss']:.0f} -> peak {s['peak_rss']:.0f} -> {s['after_rss']:.0f} MB",
                s["after_rss"] <= s["base_rss"] + 10,
            )
        )
        after = [r["rss_after_round"] for r in s["rounds"]]
        if len(after) > 1:
            out.append(
                (
                    "no RSS growth from soak round to round (+5 MB)",
                    " -> ".join(f"{a:.0f}" for a in after) + " MB",
                    after[-1] <= after[0] + 5,
                )
            )
    if "startup" in extras:
        # Judged on the best run: on a shared machine the slower runs measure the neighbours.
        st = min(extras["startup"])
        out.append(("start to ready <= 1 s (best of runs)", f"{st * 1000:.0f} ms", st <= 1.0))
        im = min(extras["import"])
        out.append(("import app.main <= 250 ms (best of runs)", f"{im * 1000:.0f} ms", im <= 0.25))
    return out


# --------------------------------------------------------------------------- main


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--duration", type=float, default=10.0, help="seconds per measured cell")
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--chunks", type=int, default=20)
    p.add_argument("--latency-rounds", type=int, default=5)
    p.add_argument("--latency-seconds", type=float, default=2.0)
    p.add_argument("--chunk-rounds", type=int, default=4)
    p.add_argument("--soak-streams", type=int, default=1000)
    p.add_argument("--soak-rounds", type=int, default=2)
    p.add_argument("--soak-chunks", type=int, default=60)
    p.add_argument("--soak-interval-ms", type=float, default=50.0)
    p.add_argument(
        "--settle",
        type=float,
        default=135.0,
        help="max wait for fds after the soak (the upstream pool closes idle connections 60-120 s after use)",
    )
    p.add_argument("--startup-rounds", type=int, default=5)
    p.add_argument("--skip-gateway", action="store_true")
    p.add_argument("--quick", action="store_true", help="throughput cells only (direct and gateway)")
    p.add_argument("--skip-bare", action="store_true", help="skip the bare Starlette floor")
    p.add_argument("--skip-litellm", action="store_true")
    p.add_argument("--skip-soak", action="store_true")
    p.add_argument("--output", type=Path, default=BENCH / "RESULTS.md")
    p.add_argument("--app-root", type=Path, default=ROOT, help="tree holding app/ and gunicorn.conf.py")
    p.add_argument("--keep-logs", action="store_true")
    args = p.parse_args()
    global APP_ROOT
    APP_ROOT = args.app_root.resolve()
    quick = args.quick
    if quick:
        args.skip_bare = args.skip_litellm = args.skip_soak = True

    # The soak needs ~2 fds per stream in the worker and the client.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    tmp = Path(tempfile.mkdtemp(prefix="gw-bench-"))
    json_body = tmp / "json.body"
    json_body.write_text(json.dumps(JSON_BODY))
    stream_body = tmp / "stream.body"
    stream_body.write_text(json.dumps({**JSON_BODY, "stream": True}))
    loads: dict[tuple[str, str], LoadResult] = {}
    extras: dict[str, Any] = {}
    mock_port = free_port()
    info = machine_info()
    log(f"work dir {tmp}")
    mock = spawn_mock(tmp, mock_port, "--chunks", str(args.chunks))
    try:
        wait_ready(mock, "/computeMetadata/v1/project/project-id", timeout=10)
        for kind, body in (("json", json_body), ("stream", stream_body)):
            loads[("direct", kind)] = load(
                "direct", kind, mock_port, VERTEX_PATH, body, "", CPU_SERVER, [mock.pid], args
            )

        if not args.skip_bare:
            bare_port = free_port()
            with running(start_gateway(tmp, bare_port, mock_port, "bare.log", bare=True)) as bare:
                wait_ready(bare, "/healthz", timeout=30)
                pids = tree(bare.pid)
                for kind, body in (("json", json_body), ("stream", stream_body)):
                    loads[("bare", kind)] = load(
                        "bare", kind, bare_port, "/v1/chat/completions", body,
                        "", CPU_MOCK, pids, args,
                    )  # fmt: skip
                extras["chunks_bare"] = chunk_delay(bare_port, mock_port, args.chunk_rounds)

        if not args.skip_gateway:
            if not quick:
                extras["import"] = measure_import(tmp, mock_port, 5)
                extras["startup"] = measure_startup(tmp, mock_port, args.startup_rounds)
                log(f"import app.main {[round(x * 1000) for x in extras['import']]} ms, "
                    f"start to ready {[round(x * 1000) for x in extras['startup']]} ms")  # fmt: skip
            gw_port = free_port()
            with running(start_gateway(tmp, gw_port, mock_port)) as gw:
                wait_ready(gw, "/healthz", timeout=30)
                pids = tree(gw.pid)
                for kind, body in (("json", json_body), ("stream", stream_body)):
                    loads[("gateway", kind)] = load(
                        "gateway", kind, gw_port, "/v1/chat/completions", body,
                        GATEWAY_KEY, CPU_MOCK, pids, args,
                    )  # fmt: skip
                if not quick:
                    extras["latency"] = latency_c1(
                        gw_port, mock_port, json_body, args.latency_rounds, args.latency_seconds
                    )
                    extras["chunks"] = chunk_delay(gw_port, mock_port, args.chunk_rounds)
                    log(f"per-chunk delay {extras['chunks']}")
                    # The same measures with mock, client and gateway on one core: on this VM a
                    # wake-up across vCPUs alone costs ~1 ms at p99 (see RESULTS.md).
                    repin(mock.pid, CPU_SERVER)
                    try:
                        extras["latency_same"] = latency_c1(
                            gw_port, mock_port, json_body, args.latency_rounds, args.latency_seconds,
                            CPU_SERVER, CPU_SERVER,
                        )  # fmt: skip
                        extras["chunks_same"] = chunk_delay(gw_port, mock_port, args.chunk_rounds, CPU_SERVER)
                        log(f"same-core per-chunk delay {extras['chunks_same']}")
                    finally:
                        repin(mock.pid, CPU_MOCK)
                if not args.skip_soak:
                    extras["soak"] = soak(gw, args)

        if not args.skip_litellm:
            if not LITELLM_BIN.exists():
                raise RuntimeError(f"{LITELLM_BIN} missing: run bench/run (it installs LiteLLM)")
            lt_port = free_port()
            with running(start_litellm(tmp, lt_port, mock_port)) as lt:
                extras["litellm_ready"] = wait_ready(lt, "/health/liveliness", timeout=120, interval=0.05)
                pids = tree(lt.pid)
                for kind, body in (("json", json_body), ("stream", stream_body)):
                    loads[("litellm", kind)] = load(
                        "litellm", kind, lt_port, "/v1/chat/completions", body,
                        LITELLM_KEY, CPU_MOCK, pids, args,
                    )  # fmt: skip
    finally:
        mock.stop()

    # Table order: direct, gateway, litellm per kind.
    order = [(t, k) for k in ("json", "stream") for t in ("direct", "bare", "gateway", "litellm")]
    loads = {key: loads[key] for key in order if key in loads}
    text = report(info, loads, extras, args)
    print(text)
    write_results(args.output, text)
    if args.keep_logs:
        log(f"logs kept in {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


MARK_START = "<!-- bench:run:start -->"
MARK_END = "<!-- bench:run:end -->"


def write_results(path: Path, text: str) -> None:
    """Replace the generated block of RESULTS.md, keeping the hand-written analysis."""
    block = f"{MARK_START}\n{text}\n{MARK_END}"
    if path.exists():
        old = path.read_text()
        pattern = re.compile(re.escape(MARK_START) + r".*?" + re.escape(MARK_END), re.S)
        if pattern.search(old):
            path.write_text(pattern.sub(lambda _: block, old))
            return
        path.write_text(old.rstrip() + "\n\n" + block + "\n")
        return
    path.write_text("# Benchmark results\n\n" + block + "\n")


if __name__ == "__main__":
    sys.exit(main())
