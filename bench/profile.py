"""Profile the gateway's worker under wrk load with py-spy (sampling, no code change).

Usage: .venv/bin/python bench/profile.py [--kind json|stream] [--route passthrough|translated] [--seconds 15]
       [--py-spy PATH]
--route translated drives `POST /v1/messages` on `flash` (Anthropic Messages translated to Gemini and
back, issue 12) instead of `POST /v1/chat/completions`.
Writes collapsed stacks (and a flame graph SVG) to bench/profiles/ and prints the
functions with the most own and total samples. py-spy is not a project dependency:
`pip install py-spy` into any virtualenv and pass --py-spy, or have it on PATH.
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import measure
import procs


def _function(frame: str) -> str:
    """'send (uvicorn/x.py:524)' -> 'send (uvicorn/x.py)': line numbers split one function."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit(':', 1)[0]})" if where else name


def summarize(collapsed: Path, top: int) -> str:
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        samples += n
        frames = [_function(f) for f in stack.split(";")]
        own[frames[-1]] += n
        for frame in set(frames):
            total[frame] += n
    out = [f"{samples} samples", "", "own time:"]
    out += [f"  {n / samples:6.1%}  {frame}" for frame, n in own.most_common(top)]
    out += ["", "total time (frame anywhere on the stack):"]
    out += [f"  {n / samples:6.1%}  {frame}" for frame, n in total.most_common(top * 2)]
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kind", choices=("json", "stream"), default="json")
    p.add_argument("--route", choices=("passthrough", "translated"), default="passthrough")
    p.add_argument("--seconds", type=int, default=15)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    p.add_argument("--py-spy", default=shutil.which("py-spy") or "py-spy")
    p.add_argument("--native", action="store_true", help="include C frames (slower sampling)")
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args()

    out_dir = procs.BENCH / "profiles"
    out_dir.mkdir(exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="gw-profile-"))
    body = tmp / "body.json"
    if args.route == "translated":
        # 20 chunks, as the chat stream: the mock takes a Gemini stream's length from max_tokens.
        messages = {"model": "flash", "max_tokens": 20 if args.kind == "stream" else 64, "messages": [
            {"role": "user", "content": "Say hello in one short sentence."}]}  # fmt: skip
        body.write_text(json.dumps({**messages, "stream": args.kind == "stream"}))
    else:
        body.write_text(json.dumps({**measure.JSON_BODY, "stream": args.kind == "stream"}))
    mock_port, gw_port = procs.free_port(), procs.free_port()
    mock = procs.spawn_mock(tmp, mock_port)
    try:
        procs.wait_ready(mock, "/computeMetadata/v1/project/project-id", timeout=10)
        with procs.running(procs.start_gateway(tmp, gw_port, mock_port)) as gw:
            procs.wait_ready(gw, "/healthz", timeout=30)
            worker = gw.worker()
            path = "/v1/messages" if args.route == "translated" else "/v1/chat/completions"
            measure.wrk(gw_port, path, body, procs.GATEWAY_KEY, procs.CPU_MOCK, args.connections, 2)
            name = args.kind if args.route == "passthrough" else f"{args.route}-{args.kind}"
            raw = out_dir / f"{name}.collapsed.txt"
            svg = out_dir / f"{name}.svg"
            result: dict[str, object] = {}

            def load() -> None:
                result.update(
                    measure.wrk(
                        gw_port, path, body, procs.GATEWAY_KEY, procs.CPU_MOCK, args.connections, args.seconds + 2
                    )
                )

            t = threading.Thread(target=load)
            t.start()
            common = ["--pid", str(worker), "--duration", str(args.seconds), "--rate", str(args.rate), "--nonblocking"]
            if args.native:
                common.append("--native")
            # py-spy on the load generator's CPU, so sampling does not steal the worker's core.
            spy = ["taskset", "-c", procs.CPU_MOCK, args.py_spy, "record", *common]
            subprocess.run([*spy, "--format", "raw", "-o", str(raw)], check=True)
            t.join()
            # A flame graph of the same kind of load, for reading by eye.
            t = threading.Thread(target=load)
            t.start()
            subprocess.run([*spy, "-o", str(svg)], check=True)
            t.join()
    finally:
        mock.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"rps during profile: {result.get('requests', 0) / (float(result.get('duration_us', 1)) / 1e6):,.0f}")
    print(summarize(raw, args.top))
    print(f"\nwrote {raw} and {svg}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
