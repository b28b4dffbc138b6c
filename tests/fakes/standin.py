"""A local stand-in for Vertex AI and the metadata server, for `make run` without Google credentials.

It is the test suite's own fakes (canned Gemini chat and Claude answers, streaming, tool calls,
count tokens) run as one process. scripts/dev-run starts it only when no Application Default
Credentials exist; the container never does. It writes its addresses as JSON to --ready-file and
exits when --parent-pid (the gateway it serves) is gone.

    python -m tests.fakes.standin --ready-file .local/standin.json --parent-pid 1234
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path

from tests.fakes.metadata import FakeMetadata
from tests.fakes.vertex import FakeVertex

PARENT_POLL_SECONDS = 1.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ready-file", required=True, type=Path, help="where to write the addresses (JSON)")
    parser.add_argument("--parent-pid", type=int, help="exit once this process is gone")
    args = parser.parse_args(argv)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    tokens: set[str] = set()
    with FakeMetadata(tokens) as metadata, FakeVertex(tokens) as vertex:
        vertex.tools_only_when_named = True  # an agent's plain prompt gets text, not a tool call
        ready = {"vertex_base_url": vertex.url, "metadata_host": metadata.host_port, "pid": os.getpid()}
        partial = args.ready_file.with_suffix(".tmp")
        partial.write_text(json.dumps(ready))
        partial.replace(args.ready_file)  # the reader never sees half a file
        while not stop.wait(PARENT_POLL_SECONDS):
            if args.parent_pid is not None and not _alive(args.parent_pid):
                break
            vertex.clear()  # the fakes keep every request for tests to inspect; a dev session need not
    args.ready_file.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
