"""A/B the gateway's CPU cost per request across copies of the tree, in interleaved rounds.

Usage: .venv/bin/python bench/compare.py NAME=DIR [NAME=DIR ...] [--rounds 5] [--seconds 4]
       [--route passthrough|translated]
Each DIR holds app/ and gunicorn.conf.py (a copy of the repo with one candidate change).
All variants run at once on CPU 1 (idle ones cost nothing); each round drives each
variant in turn with wrk, so drift and other work on the machine hit every variant
alike. Reports, per variant and kind, the median and best CPU-ms per request and
the best req/s: on a shared machine the best of several rounds is the least disturbed.
--route translated drives `POST /v1/messages` on `flash` (Anthropic Messages translated to Gemini and
back, issue 12; 20-chunk streams) instead of `POST /v1/chat/completions`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import measure
import procs


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("variants", nargs="+", help="NAME=DIR")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seconds", type=int, default=4)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--kinds", default="json,stream")
    p.add_argument("--route", choices=("passthrough", "translated"), default="passthrough")
    args = p.parse_args()
    path = "/v1/messages" if args.route == "translated" else "/v1/chat/completions"
    variants = [(v.split("=", 1)[0], Path(v.split("=", 1)[1]).resolve()) for v in args.variants]
    tmp = Path(tempfile.mkdtemp(prefix="gw-compare-"))
    bodies = {}
    for kind in args.kinds.split(","):
        bodies[kind] = tmp / f"{kind}.json"
        if args.route == "translated":
            # The mock takes a Gemini stream's length from max_tokens: 20 chunks, as the chat stream.
            messages = [{"role": "user", "content": "Say hello in one short sentence."}]
            body = {"model": "flash", "max_tokens": 20 if kind == "stream" else 64, "messages": messages}
        else:
            body = dict(measure.JSON_BODY)
        bodies[kind].write_text(json.dumps({**body, "stream": kind == "stream"}))
    mock_port = procs.free_port()
    mock = procs.spawn_mock(tmp, mock_port)
    servers: list[tuple[str, procs.Server]] = []
    results: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    try:
        procs.wait_ready(mock, "/computeMetadata/v1/project/project-id", timeout=10)
        for name, root in variants:
            procs.APP_ROOT = root
            server = procs.start_gateway(tmp, procs.free_port(), mock_port, f"{name}.log")
            servers.append((name, server))
        for _name, server in servers:
            procs.wait_ready(server, "/healthz", timeout=30)
            for body in bodies.values():  # warm-up
                measure.wrk(server.port, path, body, procs.GATEWAY_KEY, procs.CPU_MOCK, 32, 1)
        for i in range(args.rounds):
            # Rotate the order each round so no variant always runs first or last.
            order = servers[i % len(servers) :] + servers[: i % len(servers)]
            for kind, body in bodies.items():
                for name, server in order:
                    pids = procs.tree(server.pid)
                    cpu0, busy0, t0 = procs.cpu_seconds(pids), procs.cpu_busy(procs.CPU_SERVER), time.perf_counter()
                    r = measure.wrk(
                        server.port, path, body, procs.GATEWAY_KEY, procs.CPU_MOCK,
                        args.connections, args.seconds,
                    )  # fmt: skip
                    cpu = procs.cpu_seconds(pids) - cpu0
                    other = max(0.0, procs.cpu_busy(procs.CPU_SERVER) - busy0 - cpu) / (time.perf_counter() - t0)
                    ms = cpu / max(1, r["requests"]) * 1000
                    results.setdefault((name, kind), []).append((ms, r["rps"], other))
                    procs.log(
                        f"round {i + 1} {kind:6} {name:12} {r['rps']:8.0f} req/s  {ms:.4f} CPU-ms/req  "
                        f"errors {r['errors']}  other {other:.0%}"
                    )
    finally:
        for _, server in servers:
            server.stop()
        mock.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    base = variants[0][0]
    print("| variant | kind | CPU-ms/req median | best | best vs first | best req/s | median other load |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for kind in bodies:
        best_base = min(m for m, _, _ in results[(base, kind)])
        for name, _ in variants:
            rows = results[(name, kind)]
            best = min(m for m, _, _ in rows)
            print(
                f"| {name} | {kind} | {statistics.median(m for m, _, _ in rows):.4f} | {best:.4f} | "
                f"{best / best_base - 1:+.1%} | {max(r for _, r, _ in rows):,.0f} | "
                f"{statistics.median(o for _, _, o in rows):.0%} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
