"""The pinned Node CLIs the end-to-end tests run (Claude Code in tests/node_claude, pi in tests/node_pi)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def npm_ci(folder: Path, binary: Path, timeout: float = 900) -> str | None:
    """`npm ci` the pinned package in `folder` when `binary` is missing; why it cannot run, or None."""
    if binary.exists():
        return None
    npm = shutil.which("npm")
    if npm is None:
        return f"npm is not installed: tests/{folder.name} cannot be installed"
    done = subprocess.run(
        [npm, "ci", "--prefix", str(folder), "--no-audit", "--no-fund", "--loglevel=error"],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0 or not binary.exists():
        return f"npm ci --prefix tests/{folder.name} failed ({done.returncode}): {done.stderr.strip()[-600:]}"
    return None
