"""The results as Markdown tables (throughput, latency, start-up, soak, targets), written into the
generated block of RESULTS.md between its markers."""

from __future__ import annotations

import argparse
import re
import statistics
from pathlib import Path
from typing import Any

from measure import LoadResult


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
