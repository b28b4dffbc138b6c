"""Memory and latency under attack: 16 connections streaming endless trailers or headers (issue 16).

Starts the mock upstream and the gateway as bench.py does (the container's command, one worker,
gateway on CPU 1), then runs each attack for a bounded time from 16 threads pinned to CPU 0 while
sampling the worker's RSS from /proc and timing GET /health on fresh connections. Prints one table;
the target (issue 16, "Done when") is under +50 MiB RSS and /health under 100 ms.

    .venv/bin/python bench/attack.py                      # every attack, 20 s each
    .venv/bin/python bench/attack.py --seconds 10 --attack trailer-value
    .venv/bin/python bench/attack.py --app-root /tmp/old  # the same against a copy of another tree
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event as EventType
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import procs

CONNECTIONS = 16
PIECE = 64 * 1024
BAD_KEY = "not-a-key"
# Stop an attack early if the worker passes this: enough to show an unbounded growth.
RSS_SAFETY_MB = 1536.0

CHUNKED_HEAD = (
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
    b"Authorization: Bearer " + BAD_KEY.encode() + b"\r\nTransfer-Encoding: chunked\r\n\r\n"
)


def _trailer_fields() -> Callable[[int], bytes]:
    def piece(n: int) -> bytes:
        return b"".join(b"X-T%d-%d: v\r\n" % (n, i) for i in range(4096))

    return piece


# name -> (what opens the request, the piece sent again and again after it); None: no attack, the control row
ATTACKS: dict[str, tuple[bytes, Callable[[int], bytes]] | None] = {
    "none": None,
    # The last chunk, then one trailer field that never ends.
    "trailer-value": (CHUNKED_HEAD + b"0\r\nX-Endless: ", lambda n: b"a" * PIECE),
    # The last chunk, then trailer fields without end.
    "trailer-fields": (CHUNKED_HEAD + b"0\r\n", _trailer_fields()),
    # A request head whose one header never ends.
    "header-value": (b"GET /health HTTP/1.1\r\nHost: gw\r\nX-Endless: ", lambda n: b"a" * PIECE),
    # An endless chunked body after the 401 (CPU rather than memory).
    "body-after-401": (CHUNKED_HEAD, lambda n: b"%x\r\n%s\r\n" % (PIECE, b"[" * PIECE)),
}


@dataclass
class Tally:
    sent: int = 0
    cut: int = 0  # connections the gateway closed (or stopped reading) under the attacker
    lock: threading.Lock = field(default_factory=threading.Lock)


def attacker(port: int, opening: bytes, piece: Callable[[int], bytes], stop: threading.Event, tally: Tally) -> None:
    """One connection at a time: push until the gateway hangs up, then open another; until stopped."""
    while not stop.is_set():
        sent, n = 0, 0
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                sock.sendall(opening)
                while not stop.is_set():
                    data = piece(n)
                    sock.sendall(data)
                    sent += len(data)
                    n += 1
        except OSError:
            with tally.lock:
                tally.cut += 1
        with tally.lock:
            tally.sent += sent


def health_ms(port: int) -> float | None:
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/health")
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            return None
    except OSError:
        return None
    finally:
        conn.close()
    return (time.perf_counter() - started) * 1000


@dataclass
class Result:
    attack: str
    seconds: float
    sent_mb: float
    cut: int
    cpu: float  # the worker's CPU-seconds per second of attack
    rss_before: float
    rss_peak: float
    health: list[float]
    health_failures: int
    stopped_early: bool

    def row(self) -> str:
        h = sorted(self.health) or [float("nan")]
        p99 = h[min(len(h) - 1, int(len(h) * 0.99))]
        return (
            f"| {self.attack} | {self.seconds:.0f} | {self.sent_mb:,.0f} | {self.cut:,} | {self.cpu:.0%} | "
            f"{self.rss_before:.0f} | "
            f"{self.rss_peak:.0f} | {self.rss_peak - self.rss_before:+.0f} | {statistics.median(h):.1f} | "
            f"{p99:.1f} | {max(h):.1f} | {self.health_failures}{' (stopped at the RSS cap)' * self.stopped_early} |"
        )


def attack_process(port: int, name: str, stop: EventType, out: Connection) -> None:
    """The attackers, in a process of their own so their GIL never delays the /health probe."""
    os.sched_setaffinity(0, {int(procs.CPU_MOCK)})
    # Below the /health probe on the shared CPU: the probe should measure the gateway, not this.
    os.nice(10)
    attack = ATTACKS[name]
    tally = Tally()
    local_stop = threading.Event()
    threads = [
        threading.Thread(target=attacker, args=(port, *attack, local_stop, tally), daemon=True)
        for _ in range(CONNECTIONS if attack else 0)
    ]
    for t in threads:
        t.start()
    stop.wait()
    local_stop.set()  # attackers check it between pieces; a blocked send times out within 2 s
    for t in threads:
        t.join(10)
    out.send((tally.sent, tally.cut))


def run_attack(port: int, worker: int, name: str, seconds: float) -> Result:
    before = procs.rss_mb([worker])
    cpu_before = procs.cpu_seconds([worker])
    ctx = multiprocessing.get_context("fork")
    stop = ctx.Event()
    receiver, sender = ctx.Pipe(duplex=False)
    child = ctx.Process(target=attack_process, args=(port, name, stop, sender), daemon=True)
    started = time.monotonic()
    deadline = started + seconds
    child.start()
    peak, health, failures, stopped = before, [], 0, False
    next_probe = started
    while time.monotonic() < deadline:
        peak = max(peak, procs.rss_mb([worker]))
        if peak > RSS_SAFETY_MB:
            stopped = True
            break
        if time.monotonic() >= next_probe:
            ms = health_ms(port)
            if ms is None:
                failures += 1
            else:
                health.append(ms)
            next_probe = time.monotonic() + 0.1
        time.sleep(0.02)
    elapsed = time.monotonic() - started
    cpu = (procs.cpu_seconds([worker]) - cpu_before) / elapsed
    stop.set()
    sent, cut = receiver.recv() if receiver.poll(20) else (0, 0)
    child.join(5)
    if child.is_alive():
        child.kill()
    return Result(name, elapsed, sent / 2**20, cut, cpu, before, peak, health, failures, stopped)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=20.0, help="per attack (default 20)")
    p.add_argument("--attack", action="append", choices=sorted(ATTACKS), help="default: all")
    p.add_argument("--app-root", type=Path, default=procs.ROOT, help="tree to run (default: this one)")
    args = p.parse_args()
    procs.APP_ROOT = args.app_root.resolve()
    # The attackers share CPU 0 with the mock; the gateway is on CPU 1, as in bench.py, and so is the
    # /health probe: on CPU 0 it would queue behind the attackers' loopback traffic and time that.
    os.sched_setaffinity(0, {int(procs.CPU_SERVER)})
    names = args.attack or list(ATTACKS)
    results = []
    with tempfile.TemporaryDirectory(prefix="attack-") as tmp_name:
        tmp = Path(tmp_name)
        mock_port, port = procs.free_port(), procs.free_port()
        with procs.running(procs.spawn_mock(tmp, mock_port)) as mock:
            procs.wait_ready(mock, "/computeMetadata/v1/project/project-id", 10)
            for name in names:
                # A fresh gateway per attack, so one attack's heap is not the next one's baseline.
                with procs.running(procs.start_gateway(tmp, port, mock_port, logname=f"gateway-{name}.log")) as gw:
                    procs.wait_ready(gw, "/health", 60)
                    # Warm up until RSS settles: the token and key loaders import google-auth in the background.
                    settle = time.monotonic() + 30
                    last = -1.0
                    while time.monotonic() < settle:
                        for _ in range(10):
                            health_ms(port)
                        time.sleep(1)
                        rss = procs.rss_mb([gw.worker()])
                        if abs(rss - last) < 0.5:
                            break
                        last = rss
                    procs.log(f"{name}: {CONNECTIONS} connections for {args.seconds:g} s; worker pid {gw.worker()}")
                    results.append(run_attack(port, gw.worker(), name, args.seconds))
    print(f"\n{CONNECTIONS} connections per attack; gateway: {procs.APP_ROOT}\n")
    print(
        "| attack | s | MiB pushed | connections cut | worker CPU | RSS before MB | RSS peak MB | growth MB | "
        "/health p50 ms | p99 ms | max ms | /health failures |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for result in results:
        print(result.row())
    worst_growth = max(r.rss_peak - r.rss_before for r in results)
    worst_health = max((max(r.health) if r.health else float("inf")) for r in results)
    ok = worst_growth < 50 and worst_health < 100 and not any(r.health_failures for r in results)
    print(f"\ntarget (+50 MiB, /health < 100 ms): {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
