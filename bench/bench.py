"""Side-by-side benchmark: mock upstream direct vs the gateway vs LiteLLM proxy.

Driven by `bench/run` (which installs wrk and LiteLLM first). Everything talks only
to 127.0.0.1; every load loop is bounded in count and time. The mock and the load
generator share CPU 0 while the server under test owns CPU 1 (for the direct
baseline the mock is on CPU 0 and wrk on CPU 1).

Writes bench/RESULTS.md and prints it. This file is the run's order of phases; the processes are in
procs.py, the measurements in measure.py, the tables in report.py.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import procs
from measure import JSON_BODY, LoadResult, chunk_delay, latency_c1, load, measure_import, measure_startup, soak
from procs import (
    BENCH,
    CPU_MOCK,
    CPU_SERVER,
    GATEWAY_KEY,
    LITELLM_BIN,
    LITELLM_KEY,
    ROOT,
    VERTEX_PATH,
    free_port,
    log,
    machine_info,
    repin,
    running,
    spawn_mock,
    start_gateway,
    start_litellm,
    tree,
    wait_ready,
)
from report import report, write_results


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
    procs.APP_ROOT = args.app_root.resolve()
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


if __name__ == "__main__":
    sys.exit(main())
