"""Measurements: wrk load cells, added latency at one connection, per-chunk delay of paced streams,
import and start-up times, and the 1,000-stream soak. Every loop is bounded in count and time."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import procs
from procs import (
    BENCH,
    CPU_MOCK,
    CPU_SERVER,
    GATEWAY_KEY,
    PY,
    VERTEX_PATH,
    Server,
    cpu_busy,
    cpu_seconds,
    fd_count,
    free_port,
    gateway_env,
    log,
    rss_mb,
    running,
    start_gateway,
    status_kb,
    wait_ready,
)

JSON_BODY = {
    "model": "flash",
    "messages": [{"role": "user", "content": "Say hello in one short sentence."}],
    "max_tokens": 64,
}


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


def measure_import(tmp: Path, mock: int, rounds: int) -> list[float]:
    code = "import time; t = time.perf_counter(); import app.main; print(time.perf_counter() - t)"
    env = gateway_env(tmp, free_port(), mock)
    times = []
    for _ in range(rounds):
        out = subprocess.run(
            ["taskset", "-c", CPU_SERVER, PY, "-c", code],
            cwd=procs.APP_ROOT,
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
