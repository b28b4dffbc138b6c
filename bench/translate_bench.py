"""Translated (Anthropic Messages -> Gemini) vs passthrough (chat -> Vertex chat): side by side, one run.

One mock (CPU 0) and one gateway worker (CPU 1), started as bench.py starts them; wrk on CPU 0.
- throughput: streams/s (and JSON req/s) of `POST /v1/messages` on `flash` (translated to Gemini's
  streamGenerateContent and back) and of `POST /v1/chat/completions` on `flash` (passed through to
  Vertex's OpenAI-compatible endpoint), in interleaved rounds whose order alternates, so drift and other
  work on the machine hit both routes alike; CPU of the gateway's process tree per request from /proc.
- the same streams straight at the mock (wrk on CPU 1), once: what each upstream format costs the mock.
- per-chunk delay: paced streams, arrival minus the mock's send stamp, via the gateway and direct to the
  mock for each route (direct: chat for passthrough, native Gemini for translated), in alternating
  rounds; once with the gateway on its own core, once with mock, client and gateway all on CPU 1.
- in-process: the translator (MessagesAnswer) alone on the mock's stream bytes, next to what the
  passthrough does to the same stream (UsageSniffer), in a fresh interpreter on CPU 1.

Every load loop is bounded in count and time; everything talks only to 127.0.0.1. Writes its block
into bench/RESULTS.md (between the bench:translate markers) and prints it.
Usage: .venv/bin/python bench/translate_bench.py [--rounds 5] [--seconds 4] (or: bash bench/run --translate)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import measure
import procs

GEMINI_MODEL = f"/v1/projects/{procs.PROJECT}/locations/global/publishers/google/models/gemini-2.5-flash"
GEMINI_STREAM_PATH = f"{GEMINI_MODEL}:streamGenerateContent?alt=sse"
GEMINI_JSON_PATH = f"{GEMINI_MODEL}:generateContent"
ROUTES = ("passthrough", "translated")
GATEWAY_PATH = {"passthrough": "/v1/chat/completions", "translated": "/v1/messages"}
DIRECT_PATH = {
    ("passthrough", "stream"): procs.VERTEX_PATH,
    ("passthrough", "json"): procs.VERTEX_PATH,
    ("translated", "stream"): GEMINI_STREAM_PATH,
    ("translated", "json"): GEMINI_JSON_PATH,
}
CLIENT_API = {"passthrough": "chat", "translated": "messages"}
DIRECT_API = {"passthrough": "chat", "translated": "gemini"}
PROMPT = "Say hello in one short sentence."
MARK_START = "<!-- bench:translate:start -->"
MARK_END = "<!-- bench:translate:end -->"
SECTION = "## Translated (Anthropic Messages → Gemini) vs passthrough"


def bodies(chunks: int) -> dict[tuple[str, str], dict[str, Any]]:
    """(target, kind) -> request body. The mock takes a Gemini stream's length from maxOutputTokens
    (Anthropic max_tokens), a chat stream's from its --chunks; both streams are `chunks` long."""
    messages = {"model": "flash", "max_tokens": 64, "messages": [{"role": "user", "content": PROMPT}]}
    gemini = {"contents": [{"role": "user", "parts": [{"text": PROMPT}]}], "generationConfig": {"maxOutputTokens": 64}}
    return {
        ("passthrough", "json"): measure.JSON_BODY,
        ("passthrough", "stream"): {**measure.JSON_BODY, "stream": True},
        ("translated", "json"): messages,
        ("translated", "stream"): {**messages, "max_tokens": chunks, "stream": True},
        ("direct-translated", "json"): gemini,
        ("direct-translated", "stream"): {**gemini, "generationConfig": {"maxOutputTokens": chunks}},
    }


@dataclass
class Cell:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_ms: float  # gateway process tree CPU per request
    bytes_per: float  # response bytes per request, as wrk counts them (head + body)
    other: float  # share of the gateway's CPU used by other processes


@dataclass
class Results:
    cells: dict[tuple[str, str], list[Cell]] = field(default_factory=dict)
    direct: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    chunks: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    micro: dict[str, Any] = field(default_factory=dict)


def measure_cell(port: int, route: str, kind: str, body: Path, pids: list[int], args: argparse.Namespace) -> Cell:
    cpu0, busy0, t0 = procs.cpu_seconds(pids), procs.cpu_busy(procs.CPU_SERVER), time.perf_counter()
    r = measure.wrk(port, GATEWAY_PATH[route], body, procs.GATEWAY_KEY, procs.CPU_MOCK, args.connections, args.seconds)
    wall = time.perf_counter() - t0
    cpu = procs.cpu_seconds(pids) - cpu0
    busy = procs.cpu_busy(procs.CPU_SERVER) - busy0
    n = max(1, r["requests"])
    cell = Cell(
        r["rps"],
        r["p50_us"] / 1000,
        r["p99_us"] / 1000,
        r["errors"],
        cpu / n * 1000,
        r["bytes"] / n,
        max(0.0, busy - cpu) / wall,
    )
    procs.log(
        f"{route:11} {kind:6} {cell.rps:8.0f} req/s  p99 {cell.p99_ms:.2f} ms  {cell.cpu_ms:.4f} CPU-ms/req  "
        f"{cell.bytes_per:.0f} B/resp  errors {cell.errors}  other {cell.other:.0%}"
    )
    return cell


def sanity(gw_port: int, mock_port: int, chunks: int) -> None:
    """Both routes answer complete, well-formed streams (and the translated JSON answer is a message)."""
    unpaced = ["--streams", "2", "--chunks", str(chunks), "--interval-ms", "0"]
    for route in ROUTES:
        extra = ["--api", CLIENT_API[route], *unpaced]
        r = measure.stream_client(gw_port, GATEWAY_PATH[route], procs.GATEWAY_KEY, procs.CPU_MOCK, extra, 30)
        if r["errors"] or r["complete"] != 2:
            raise RuntimeError(f"{route} streams through the gateway are not complete: {r}")
        extra = ["--api", DIRECT_API[route], *unpaced]
        r = measure.stream_client(mock_port, DIRECT_PATH[(route, "stream")], "", procs.CPU_MOCK, extra, 30)
        if r["errors"] or r["complete"] != 2:
            raise RuntimeError(f"{route} streams direct to the mock are not complete: {r}")
    req = urllib.request.Request(
        f"http://127.0.0.1:{gw_port}/v1/messages",
        data=json.dumps(bodies(chunks)[("translated", "json")]).encode(),
        headers={"content-type": "application/json", "x-api-key": procs.GATEWAY_KEY},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        answer = json.loads(resp.read())
    if answer.get("type") != "message" or not answer.get("content"):
        raise RuntimeError(f"translated JSON answer is not an Anthropic message: {answer}")


def wait_quiet(limit_s: float, threshold: float = 0.25, quiet_log: bool = True) -> float:
    """Wait (at most limit_s) until both CPUs are under `threshold` busy over a 1 s sample; our own mock and
    gateway are idle at the call, so what is measured is other work. Returns the seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < limit_s:
        before = [procs.cpu_busy(c) for c in (procs.CPU_MOCK, procs.CPU_SERVER)]
        t0 = time.perf_counter()
        time.sleep(1.0)
        wall = time.perf_counter() - t0
        busy = [(procs.cpu_busy(c) - b) / wall for c, b in zip((procs.CPU_MOCK, procs.CPU_SERVER), before, strict=True)]
        if max(busy) < threshold:
            break
    waited = time.monotonic() - started
    if limit_s > 0 and (quiet_log or waited > 2):
        procs.log(f"waited {waited:.0f} s for a quieter machine (limit {limit_s:g} s)")
    return waited


def other_load_sampler(pids: list[int]) -> Any:
    """Returns a function giving the share of both CPUs (0-2) used since the call by anything but our own
    processes (`pids`: gateway and mock) and the children this process waited for (the clients)."""
    cpus = (procs.CPU_MOCK, procs.CPU_SERVER)
    busy0 = sum(procs.cpu_busy(c) for c in cpus)
    ours0 = procs.cpu_seconds(pids) + _children_cpu()
    t0 = time.perf_counter()

    def other() -> float:
        busy = sum(procs.cpu_busy(c) for c in cpus) - busy0
        ours = procs.cpu_seconds(pids) + _children_cpu() - ours0
        return max(0.0, busy - ours) / (time.perf_counter() - t0)

    return other


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def chunk_rounds(
    gw_port: int, mock_port: int, args: argparse.Namespace, client_cpu: str, pids: list[int]
) -> dict[str, dict[str, Any]]:
    """Per-chunk delay of paced streams: gateway and direct, per route, in alternating rounds; each round's
    p99s and the other work on the machine during it are kept, so a burst of someone else's work shows."""
    paced = ["--streams", str(args.chunk_streams), "--chunks", "25", "--interval-ms", "20", "--raw-delays"]
    rounds: dict[str, list[tuple[list[float], list[float]]]] = {r: [] for r in ROUTES}  # (gateway, direct)
    others: list[float] = []
    # Control for the own-core layout: straight at the mock with the client on the gateway's CPU, so each
    # chunk crosses vCPUs once and no gateway is involved (through the gateway it crosses twice).
    crossed: list[float] = []
    cross_cpu = procs.CPU_SERVER if client_cpu == procs.CPU_MOCK else ""
    for i in range(args.chunk_rounds):
        wait_quiet(args.wait_quiet, quiet_log=False)
        other = other_load_sampler(pids)
        if cross_cpu:
            extra = ["--api", "chat", *paced]
            crossed += measure.stream_client(mock_port, procs.VERTEX_PATH, "", cross_cpu, extra, 60)["delays_us"]
        for route in ROUTES if i % 2 == 0 else ROUTES[::-1]:
            r = measure.stream_client(
                mock_port, DIRECT_PATH[(route, "stream")], "", client_cpu, ["--api", DIRECT_API[route], *paced], 60
            )
            d = r["delays_us"]
            r = measure.stream_client(
                gw_port, GATEWAY_PATH[route], procs.GATEWAY_KEY, client_cpu, ["--api", CLIENT_API[route], *paced], 60
            )
            if r["errors"]:
                raise RuntimeError(f"{route} paced streams failed: {r['error_samples']}")
            rounds[route].append((r["delays_us"], d))
        others.append(other())
    quiet = [i for i, o in enumerate(others) if o < args.quiet_other]
    out: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        g = [x for gw, _ in rounds[route] for x in gw]
        d = [x for _, direct in rounds[route] for x in direct]
        qg = [x for i in quiet for x in rounds[route][i][0]]
        qd = [x for i in quiet for x in rounds[route][i][1]]
        per_round = [measure.pct(gw, 99) - measure.pct(direct, 99) for gw, direct in rounds[route]]
        out[route] = {
            "n": len(g),
            "gw_p50": measure.pct(g, 50),
            "gw_p99": measure.pct(g, 99),
            "d_p50": measure.pct(d, 50),
            "d_p99": measure.pct(d, 99),
            "added_p50": measure.pct(g, 50) - measure.pct(d, 50),
            "added_p99": measure.pct(g, 99) - measure.pct(d, 99),
            "round_added_p99": per_round,
            "median_round_added_p99": med(per_round),
            "quiet_rounds": len(quiet),
            "quiet_added_p50": measure.pct(qg, 50) - measure.pct(qd, 50) if quiet else float("nan"),
            "quiet_added_p99": measure.pct(qg, 99) - measure.pct(qd, 99) if quiet else float("nan"),
            "others": others,
            "other_median": med(others),
            "other_max": max(others),
        }
        procs.log(f"per-chunk {route} (client CPU {client_cpu}): {out[route]}")
    if crossed:
        out["crossed"] = {"n": len(crossed), "p50": measure.pct(crossed, 50), "p99": measure.pct(crossed, 99)}
        procs.log(f"per-chunk direct across vCPUs: {out['crossed']}")
    return out


# --------------------------------------------------------------------------- in-process


MICRO = r"""
import json, sys, time
sys.path.insert(0, ".")
from app.gemini_messages import MessagesAnswer
from app.usage import UsageSniffer
sys.path.insert(0, sys.argv[1])
import mock_upstream as m

chunks, reps = int(sys.argv[2]), int(sys.argv[3])

def dechunk(frames):
    # The chunked frames the mock writes -> the body bytes the upstream client hands on.
    out, data = [], frames
    while data:
        size, _, rest = data.partition(b"\r\n")
        n = int(size, 16)
        if n == 0:
            break
        out.append(rest[:n])
        data = rest[n + 2:]
    return out

gemini = dechunk(b"".join(m._gemini_frame() for _ in range(chunks)) + m._gemini_last_frame(chunks))
chat = dechunk(b"".join(m._frame() for _ in range(chunks)) + m._LAST_FRAME)

def translate(events):
    a = MessagesAnswer("flash")
    for e in events:
        a.chunk(e)
    a.end()

def sniff(events):
    s = UsageSniffer()
    for e in events:
        s.feed(e)
    s.usage

def best_us(fn, arg):
    # CPU time of this thread, not wall time: other work on a shared core does not count.
    best = float("inf")
    for _ in range(7):
        t = time.thread_time()
        for _ in range(reps):
            fn(arg)
        best = min(best, (time.thread_time() - t) / reps * 1e6)
    return best

out = {
    "translated_whole_us": best_us(translate, [b"".join(gemini)]),
    "translated_events_us": best_us(translate, gemini),
    "passthrough_whole_us": best_us(sniff, [b"".join(chat)]),
    "passthrough_events_us": best_us(sniff, chat),
    "gemini_bytes": sum(map(len, gemini)),
    "chat_bytes": sum(map(len, chat)),
}
a = MessagesAnswer("flash")
out["anthropic_bytes"] = sum(len(a.chunk(e)) for e in gemini) + len(a.end())
print(json.dumps(out))
"""


def micro(chunks: int, reps: int) -> dict[str, Any]:
    argv = ["taskset", "-c", procs.CPU_SERVER, procs.PY, "-c", MICRO, str(procs.BENCH), str(chunks), str(reps)]
    out = subprocess.run(argv, cwd=procs.APP_ROOT, capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise RuntimeError(f"in-process timing failed: {out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    procs.log(f"in-process: {result}")
    return result


# --------------------------------------------------------------------------- report


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ratios(res: Results, kind: str) -> tuple[list[float], list[float]]:
    """Per round: translated/passthrough req/s, and passthrough/translated CPU per request."""
    p, t = res.cells.get(("passthrough", kind), []), res.cells.get(("translated", kind), [])
    by_rps = [b.rps / a.rps for a, b in zip(p, t, strict=False) if a.rps]
    by_cpu = [a.cpu_ms / b.cpu_ms for a, b in zip(p, t, strict=False) if b.cpu_ms]
    return by_rps, by_cpu


def goals(res: Results) -> list[tuple[str, str, bool]]:
    out = []
    by_rps, _ = ratios(res, "stream")
    if by_rps:
        r = med(by_rps)
        out.append(("translated streams/s >= 0.5x passthrough (median of rounds)", f"{r:.2f}x", r >= 0.5))
    for layout, label in (("own", "gateway on its own core"), ("same", "all on one core")):
        c = res.chunks.get(layout, {}).get("translated")
        if c:
            a99, q99, n = c["added_p99"], c["quiet_added_p99"], c["quiet_rounds"]
            out.append(
                (
                    f"translated per-chunk added delay p99 < 1 ms ({label}, all rounds)",
                    f"{a99 / 1000:.3f} ms",
                    a99 < 1000,
                )
            )
            out.append(
                (
                    f"the same, quiet rounds only ({label}; {n} of {len(c['round_added_p99'])})",
                    f"{q99 / 1000:.3f} ms" if n else "no quiet round",
                    n > 0 and q99 < 1000,
                )
            )
    return out


def report(res: Results, info: dict[str, str], args: argparse.Namespace, command: str) -> str:
    L: list[str] = []
    L.append(f"Reproduce: `{command}` (or `bash bench/run --translate`); {info['date']}.")
    L.append("")
    for k in ("cpu", "kernel", "python", "gateway commit", "wrk"):
        L.append(f"- {k}: {info[k]}")
    L.append(
        "- load average (1 min, both cores; other sessions share this machine): "
        f"{info['load average at start (1 min)']} at the start, "
        f"{info.get('load average at the end (1 min)', '-')} at the end"
    )
    L.append(
        f"- load: wrk, 1 thread, {args.connections} connections, {args.rounds} interleaved rounds x {args.seconds} s "
        f"per route and kind (order alternating each round) after a {args.warmup} s warm-up each; "
        f"streams = {args.chunks} chunks, unpaced"
    )
    L.append("- pinning: mock and wrk on CPU 0, the gateway (1 gunicorn worker) on CPU 1; direct rows: wrk on CPU 1")
    L.append(
        "- passthrough = `POST /v1/chat/completions` on `flash` -> Vertex's OpenAI-compatible chat (mock); "
        "translated = `POST /v1/messages` on `flash` -> Gemini `:streamGenerateContent?alt=sse` / "
        "`:generateContent` (mock, events ending CRLF CRLF as Vertex's) -> Anthropic events"
    )
    L.append("")
    L.append("### Throughput, same run")
    L.append("")
    L.append(
        "| route | kind | req/s median | req/s best | p50 ms | p99 ms | errors | CPU-ms/req median | best "
        "| bytes/resp | other load |"
    )
    L.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for kind in args.kinds:
        for route in ROUTES:
            cs = res.cells.get((route, kind), [])
            if not cs:
                continue
            L.append(
                f"| {route} | {kind} | {med([c.rps for c in cs]):,.0f} | {max(c.rps for c in cs):,.0f} | "
                f"{med([c.p50_ms for c in cs]):.2f} | {med([c.p99_ms for c in cs]):.2f} | "
                f"{sum(c.errors for c in cs)} | {med([c.cpu_ms for c in cs]):.4f} | "
                f"{min(c.cpu_ms for c in cs):.4f} | {med([c.bytes_per for c in cs]):,.0f} | "
                f"{med([c.other for c in cs]):.0%} |"
            )
    L.append("")
    L.append(
        "| kind | translated / passthrough, req/s (median of rounds) | per round | by CPU per request (median) "
        "| best vs best | added CPU per request | per chunk |"
    )
    L.append("|---|---:|---|---:|---:|---:|---:|")
    for kind in args.kinds:
        by_rps, by_cpu = ratios(res, kind)
        if not by_rps:
            continue
        p, t = res.cells[("passthrough", kind)], res.cells[("translated", kind)]
        best = min(c.cpu_ms for c in p) / min(c.cpu_ms for c in t)
        added = med([c.cpu_ms for c in t]) - med([c.cpu_ms for c in p])
        per_chunk = f"{added / args.chunks * 1000:.1f} us" if kind == "stream" else "-"
        L.append(
            f"| {kind} | **{med(by_rps):.2f}x** | {', '.join(f'{r:.2f}' for r in by_rps)} | {med(by_cpu):.2f}x | "
            f"{best:.2f}x | {added * 1000:+.1f} us | {per_chunk} |"
        )
    L.append("")
    if res.direct:
        L.append("Straight at the mock (wrk on CPU 1, one cell each): what each upstream format costs the mock.")
        L.append("")
        L.append("| upstream API | kind | req/s | bytes/resp | mock CPU-ms/req |")
        L.append("|---|---|---:|---:|---:|")
        for (route, kind), d in res.direct.items():
            api = "Vertex chat (OpenAI)" if route == "passthrough" else "Gemini native"
            L.append(f"| {api} | {kind} | {d['rps']:,.0f} | {d['bytes_per']:,.0f} | {d['cpu_ms']:.4f} |")
        L.append("")
    if res.chunks:
        L.append("### Per-chunk added delay")
        L.append("")
        L.append(
            "| route | layout | gateway p50 | p99 | direct p50 | p99 | added p50 (ms) | added p99 (ms) "
            "| quiet rounds: added p50, p99 | added p99, median of rounds | chunks "
            "| other load, both CPUs: median, max of rounds |"
        )
        L.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for layout, label in (("own", "gateway on its own core"), ("same", "all on one core")):
            for route in ROUTES:
                c = res.chunks.get(layout, {}).get(route)
                if not c:
                    continue
                L.append(
                    f"| {route} | {label} | {c['gw_p50'] / 1000:.3f} | {c['gw_p99'] / 1000:.3f} | "
                    f"{c['d_p50'] / 1000:.3f} | {c['d_p99'] / 1000:.3f} | **{c['added_p50'] / 1000:.3f}** | "
                    f"**{c['added_p99'] / 1000:.3f}** | {c['quiet_added_p50'] / 1000:.3f}, "
                    f"**{c['quiet_added_p99'] / 1000:.3f}** ({c['quiet_rounds']} of {args.chunk_rounds}) | "
                    f"{c['median_round_added_p99'] / 1000:.3f} | {c['n']:,} | "
                    f"{c['other_median']:.2f}, {c['other_max']:.2f} |"
                )
        for layout, label in (("own", "gateway on its own core"), ("same", "all on one core")):
            c = res.chunks.get(layout, {})
            if "translated" in c and "passthrough" in c:
                t, p = c["translated"], c["passthrough"]
                L.append(
                    f"| translated minus passthrough | {label} | {(t['gw_p50'] - p['gw_p50']) / 1000:+.3f} | "
                    f"{(t['gw_p99'] - p['gw_p99']) / 1000:+.3f} | | | "
                    f"{(t['added_p50'] - p['added_p50']) / 1000:+.3f} | "
                    f"{(t['added_p99'] - p['added_p99']) / 1000:+.3f} | "
                    f"{(t['quiet_added_p50'] - p['quiet_added_p50']) / 1000:+.3f}, "
                    f"{(t['quiet_added_p99'] - p['quiet_added_p99']) / 1000:+.3f} | "
                    f"{(t['median_round_added_p99'] - p['median_round_added_p99']) / 1000:+.3f} | | |"
                )
        crossed = res.chunks.get("own", {}).get("crossed")
        if crossed:
            L.append(
                f"| control: direct, client on the other vCPU (no gateway) | one vCPU crossing | | | "
                f"{crossed['p50'] / 1000:.3f} | {crossed['p99'] / 1000:.3f} | | | | | {crossed['n']:,} | |"
            )
        L.append("")
        L.append(
            f"{args.chunk_rounds} alternating rounds per layout; each: {args.chunk_streams} concurrent streams x 25 "
            "chunks 20 ms apart per route, arrival minus the mock's send stamp, direct (chat for passthrough, native "
            "Gemini for translated) then via the gateway. 'added' = gateway minus direct, over all rounds' chunks; "
            "'median of rounds' = the median of each round's own added p99 (a burst of other work spoils one round, "
            f"not the figure); 'quiet rounds' = only the rounds with other load under {args.quiet_other:g} CPUs. "
            "'Own core': mock and client on CPU 0, gateway on CPU 1. 'One core': all on CPU 1 (the "
            "gateway's own work without cross-vCPU wake-ups; see 'Cross-vCPU wake-ups' above). 'Other load': busy "
            "time of both CPUs not spent by the mock, the gateway or the clients, in CPUs (of 2)."
        )
        L.append("")
    if res.micro:
        m = res.micro
        n = args.chunks
        L.append("### In-process: the translator alone")
        L.append("")
        L.append(
            f"One {n}-chunk stream of the mock's bytes, best of 7 x {args.micro_reps} (thread CPU time) in a fresh "
            "interpreter on CPU 1: what the gateway does to the stream body beyond relaying it."
        )
        L.append("")
        L.append("| route | work | bytes in -> out | stream in one read | per event | event by event | per event |")
        L.append("|---|---|---|---:|---:|---:|---:|")
        L.append(
            f"| passthrough | `UsageSniffer.feed` | {m['chat_bytes']:,} -> {m['chat_bytes']:,} | "
            f"{m['passthrough_whole_us']:.1f} us | {m['passthrough_whole_us'] / (n + 1):.2f} us | "
            f"{m['passthrough_events_us']:.1f} us | {m['passthrough_events_us'] / (n + 1):.2f} us |"
        )
        L.append(
            f"| translated | `MessagesAnswer.chunk` + `end` | {m['gemini_bytes']:,} -> {m['anthropic_bytes']:,} | "
            f"{m['translated_whole_us']:.1f} us | {m['translated_whole_us'] / (n + 1):.2f} us | "
            f"{m['translated_events_us']:.1f} us | {m['translated_events_us'] / (n + 1):.2f} us |"
        )
        L.append("")
    L.append("### Goal (issue 12)")
    L.append("")
    L.append("| target | measured | met |")
    L.append("|---|---|---|")
    for name, measured, ok in goals(res):
        L.append(f"| {name} | {measured} | {'yes' if ok else '**no**'} |")
    L.append("")
    return "\n".join(L)


def write_results(path: Path, text: str) -> None:
    """Replace this script's block in RESULTS.md (or add the section), keeping everything else."""
    block = f"{MARK_START}\n{text}\n{MARK_END}"
    old = path.read_text() if path.exists() else "# Benchmark results\n"
    pattern = re.compile(re.escape(MARK_START) + r".*?" + re.escape(MARK_END), re.S)
    if pattern.search(old):
        path.write_text(pattern.sub(lambda _: block, old))
    else:
        path.write_text(old.rstrip() + f"\n\n{SECTION}\n\n{block}\n")


# --------------------------------------------------------------------------- main


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5, help="interleaved throughput rounds (1-20)")
    p.add_argument("--seconds", type=int, default=4, help="seconds per route and kind in a round (1-30)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--chunks", type=int, default=20, help="chunks per stream in the throughput cells")
    p.add_argument("--kinds", default="stream,json", help="stream, json or both")
    p.add_argument("--chunk-rounds", type=int, default=10, help="per-chunk delay rounds per layout (0: skip)")
    p.add_argument("--chunk-streams", type=int, default=8, help="concurrent paced streams per route in a round")
    p.add_argument(
        "--quiet-other",
        type=float,
        default=0.10,
        help="a per-chunk round is 'quiet' when other work used less than this many CPUs during it",
    )
    p.add_argument("--skip-one-core", action="store_true", help="per-chunk delay with the gateway on its own core only")
    p.add_argument("--skip-direct", action="store_true", help="skip the wrk cells straight at the mock")
    p.add_argument("--micro-reps", type=int, default=2000, help="in-process timing repetitions (0: skip)")
    p.add_argument("--output", type=Path, default=procs.BENCH / "RESULTS.md")
    p.add_argument("--no-write", action="store_true", help="print only, leave RESULTS.md alone")
    p.add_argument("--app-root", type=Path, default=procs.ROOT, help="tree holding app/ and gunicorn.conf.py")
    p.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        help="before each phase, wait up to this many seconds for both CPUs to be under 25%% busy (shared machine)",
    )
    p.add_argument("--keep-logs", action="store_true")
    args = p.parse_args()
    args.wait_quiet = max(0.0, min(args.wait_quiet, 600.0))
    args.rounds = max(1, min(args.rounds, 20))
    args.seconds = max(1, min(args.seconds, 30))
    args.chunk_rounds = max(0, min(args.chunk_rounds, 20))
    args.chunk_streams = max(1, min(args.chunk_streams, 64))
    args.kinds = [k for k in ("stream", "json") if k in args.kinds.split(",")]
    procs.APP_ROOT = args.app_root.resolve()
    command = shlex.join([".venv/bin/python", "bench/translate_bench.py", *sys.argv[1:]])

    tmp = Path(tempfile.mkdtemp(prefix="gw-translate-"))
    files: dict[tuple[str, str], Path] = {}
    for (target, kind), body in bodies(args.chunks).items():
        files[(target, kind)] = tmp / f"{target}-{kind}.json"
        files[(target, kind)].write_text(json.dumps(body))
    info = procs.machine_info()
    res = Results()
    mock_port, gw_port = procs.free_port(), procs.free_port()
    procs.log(f"work dir {tmp}")
    mock = procs.spawn_mock(tmp, mock_port, "--chunks", str(args.chunks))
    try:
        procs.wait_ready(mock, "/computeMetadata/v1/project/project-id", timeout=10)
        if not args.skip_direct:
            for kind in args.kinds:
                for route in ROUTES:
                    body = files[("direct-translated" if route == "translated" else "passthrough", kind)]
                    path = DIRECT_PATH[(route, kind)]
                    cpu0 = procs.cpu_seconds([mock.pid])
                    r = measure.wrk(mock_port, path, body, "", procs.CPU_SERVER, args.connections, args.seconds)
                    n = max(1, r["requests"])
                    res.direct[(route, kind)] = {
                        "rps": r["rps"],
                        "bytes_per": r["bytes"] / n,
                        "cpu_ms": (procs.cpu_seconds([mock.pid]) - cpu0) / n * 1000,
                        "errors": r["errors"],
                    }
                    procs.log(f"direct {route:11} {kind:6} {r['rps']:8.0f} req/s  errors {r['errors']}")
        with procs.running(procs.start_gateway(tmp, gw_port, mock_port, "gateway.log")) as gw:
            procs.wait_ready(gw, "/healthz", timeout=30)
            sanity(gw_port, mock_port, args.chunks)
            pids = procs.tree(gw.pid)
            for kind in args.kinds:
                for route in ROUTES:
                    measure.wrk(
                        gw_port, GATEWAY_PATH[route], files[(route, kind)], procs.GATEWAY_KEY, procs.CPU_MOCK,
                        args.connections, args.warmup,
                    )  # fmt: skip
            for i in range(args.rounds):
                wait_quiet(args.wait_quiet)
                for kind in args.kinds:
                    for route in ROUTES if i % 2 == 0 else ROUTES[::-1]:
                        cell = measure_cell(gw_port, route, kind, files[(route, kind)], pids, args)
                        res.cells.setdefault((route, kind), []).append(cell)
            if args.chunk_rounds:
                res.chunks["own"] = chunk_rounds(gw_port, mock_port, args, procs.CPU_MOCK, [*pids, mock.pid])
                if not args.skip_one_core:
                    procs.repin(mock.pid, procs.CPU_SERVER)
                    try:
                        res.chunks["same"] = chunk_rounds(gw_port, mock_port, args, procs.CPU_SERVER, [*pids, mock.pid])
                    finally:
                        procs.repin(mock.pid, procs.CPU_MOCK)
        if args.micro_reps > 0:
            res.micro = micro(args.chunks, args.micro_reps)
    finally:
        mock.stop()
    info["load average at the end (1 min)"] = f"{os.getloadavg()[0]:.2f}"
    text = report(res, info, args, command)
    print(text)
    if not args.no_write:
        write_results(args.output, text)
    if args.keep_logs:
        procs.log(f"logs kept in {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
