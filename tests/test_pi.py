"""End to end: the pi coding agent CLI (`pi -p`), configured as the runbook says, on Gemini 3 (issue 12).

pi is pinned in tests/node_pi (npm ci'd here when missing). Its `openai-completions` API sends Chat
Completions to the provider's baseUrl; it keeps a tool call's id but not Vertex's `extra_content`, so on
Gemini 3 the second turn reaches Vertex with the signature only because the gateway carried it in the id.
Without npm, or when the pinned pi does not run here, these tests skip and say why.
"""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.thought_signatures import split
from tests.conftest import ALIASES, API_KEYS, CHAT_UPSTREAM_PATH, KEY_IDS
from tests.fakes.vertex import FakeVertex, Recorded
from tests.harness import Gateway
from tests.node_cli import npm_ci

# The first test may include `npm ci` of the pinned package.
pytestmark = [pytest.mark.e2e, pytest.mark.node, pytest.mark.timeout(600)]

NODE_PI = Path(__file__).parent / "node_pi"
PI_BIN = NODE_PI / "node_modules" / ".bin" / "pi"
RUN_TIMEOUT = 120
# The provider name the runbook's models.json snippet defines.
PROVIDER = "gateway"


def _base_env() -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        # No update check (pi.dev/api/latest-version), package update checks or install telemetry
        # (pi.dev/api/report-install): pi's README, "Telemetry and update checks".
        "PI_OFFLINE": "1",
        "PI_SKIP_VERSION_CHECK": "1",
        "PI_TELEMETRY": "0",
        "TERM": "dumb",
        "NO_COLOR": "1",
    }


def _install() -> str | None:
    """Install the pinned CLI if needed; return why it cannot run, or None."""
    why = npm_ci(NODE_PI, PI_BIN, timeout=600)
    if why:
        return why
    pinned = json.loads((NODE_PI / "package.json").read_text())["dependencies"]["@mariozechner/pi-coding-agent"]
    with tempfile.TemporaryDirectory(prefix="pi-home-") as home:
        try:
            version = subprocess.run(
                [str(PI_BIN), "--version"],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
                env={**_base_env(), "HOME": home},
            )
        except OSError as exc:
            return f"{PI_BIN} does not run on this machine ({exc})"
    # pi prints its version on stderr.
    if version.returncode != 0 or (version.stdout + version.stderr).strip() != pinned:
        return f"{PI_BIN} --version failed ({version.returncode}): {(version.stdout + version.stderr)[-400:]}"
    return None


@pytest.fixture(scope="module")
def pi_cli() -> Path:
    why = _install()
    if why:
        pytest.skip(why)
    return PI_BIN


def runbook_models_json(gateway: Gateway) -> dict[str, Any]:
    """The `~/.pi/agent/models.json` the gateway's runbook (/docs) gives, its base URL this gateway's."""
    with urllib.request.urlopen(gateway.url + "/docs", timeout=10) as page:
        text = page.read().decode("utf-8")
    found = re.search(r"<h3>pi coding agent</h3>.*?<pre>(.*?)</pre>", text, re.S)
    assert found, "the runbook has no pi section with a models.json snippet"
    return json.loads(html.unescape(found[1]))  # type: ignore[no-any-return]


@pytest.fixture
def pi_home(gateway: Gateway) -> Iterator[Path]:
    # A fresh HOME: no auth.json, settings, sessions or extensions from the machine's user; the
    # runbook's provider entry as ~/.pi/agent/models.json.
    with tempfile.TemporaryDirectory(prefix="pi-home-") as home:
        agent = Path(home) / ".pi" / "agent"
        agent.mkdir(parents=True)
        (agent / "models.json").write_text(json.dumps(runbook_models_json(gateway), indent=2))
        (Path(home) / "work").mkdir()
        yield Path(home)


def run_pi(cli: Path, home: Path, key: str, prompt: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**_base_env(), "HOME": str(home), "GATEWAY_API_KEY": key}
    command = [
        str(cli),
        "-p",
        prompt,
        *args,
        "--offline",
        # The session (pi's record of what it saw, tool call ids included) in HOME, which the test reads.
        "--session-dir",
        str(home / "sessions"),
        # Nothing but pi itself: no extensions, skills, prompt templates, themes or AGENTS.md found on disk.
        "--no-extensions",
        "--no-skills",
        "--no-prompt-templates",
        "--no-themes",
        "--no-context-files",
    ]
    return subprocess.run(
        command,
        cwd=home / "work",
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )


def session_tool_calls(home: Path) -> list[dict[str, Any]]:
    """The tool calls pi recorded in its session, as it received them (docs/session-format.md)."""
    (session,) = (home / "sessions").glob("*.jsonl")
    entries = [json.loads(line) for line in session.read_text().splitlines() if line.strip()]
    messages = [e["message"] for e in entries if e.get("type") == "message"]
    return [b for m in messages if m.get("role") == "assistant" for b in m["content"] if b.get("type") == "toolCall"]


def chat_turns(fake_vertex: FakeVertex, since: int, vertex_model: str) -> list[Recorded]:
    return [
        r
        for r in fake_vertex.requests[since:]
        if r.path == CHAT_UPSTREAM_PATH and isinstance(r.json, dict) and r.json.get("model") == vertex_model
    ]


def test_pi_reads_a_file_with_its_read_tool_on_gemini_3(
    pi_cli: Path, pi_home: Path, gateway: Gateway, fake_vertex: FakeVertex
) -> None:
    """`pi -p` with the runbook's provider entry: Gemini 3 calls pi's read tool, pi runs it and sends the
    result back (without Vertex's extra_content), and prints the answer Gemini derives from it. The fake
    refuses the second turn unless the gateway restored the thought signature it issued."""
    vertex_model = ALIASES["pro-preview"]
    secret = f"marmalade-{os.urandom(4).hex()}"
    hello = pi_home / "work" / "hello.txt"
    hello.write_text(f"the secret word is {secret}\n")
    seen, logged = len(fake_vertex.requests), len(gateway.request_logs())
    # pi's read tool: name "read", parameters {path, offset?, limit?} (dist/core/tools/read.js).
    fake_vertex.push({"call": {"name": "read", "args": {"path": str(hello)}}}, path_contains=CHAT_UPSTREAM_PATH)
    done = run_pi(
        pi_cli,
        pi_home,
        API_KEYS["full"],
        "What does hello.txt say?",
        "--provider",
        PROVIDER,
        "--model",
        "pro-preview",
    )
    detail = (
        f"exit {done.returncode}\nstdout: {done.stdout[-2000:]}\nstderr: {done.stderr[-2000:]}\nlog: {gateway.log_path}"
    )
    assert fake_vertex.pending_scripts() == 0, "pi's request never reached the fake\n" + detail
    turns = chat_turns(fake_vertex, seen, vertex_model)
    assert done.returncode == 0, f"{detail}\nupstream statuses: {[r.status for r in turns]}"
    assert "tool said:" in done.stdout and secret in done.stdout, detail

    assert len(turns) >= 2 and all(r.status == 200 for r in turns), [(r.path, r.status) for r in turns]
    call_turn = turns[0]
    assert call_turn.json["stream"] is True
    declared = {t["function"]["name"] for t in call_turn.json["tools"]}
    assert {"read", "bash"} <= declared, declared
    issued = call_turn.issued_signature
    assert issued and issued in fake_vertex.signatures_issued, "the fake signs the tool call it makes"

    # pi kept the id the gateway handed out (Vertex's id carrying the signature), not the signature itself...
    (seen_call,) = session_tool_calls(pi_home)
    vertex_id, carried = split(seen_call["id"])
    assert carried == issued and "thoughtSignature" not in seen_call, seen_call
    assert seen_call["name"] == "read" and seen_call["arguments"] == {"path": str(hello)}

    # ...and echoed the call (id, name, arguments) without extra_content; the gateway put the signature back
    # and gave Vertex the id it issued, not the one carrying the signature.
    answered = turns[1].json["messages"]
    assistant = [m for m in answered if m.get("role") == "assistant" and m.get("tool_calls")]
    call = assistant[-1]["tool_calls"][0]
    assert call["function"]["name"] == "read" and json.loads(call["function"]["arguments"]) == {"path": str(hello)}
    assert call["extra_content"]["google"]["thought_signature"] == issued
    assert issued in fake_vertex.signatures_returned
    assert call["id"] == vertex_id and call["id"].startswith("call_") and "__t" not in call["id"]
    tool = [m for m in answered if m.get("role") == "tool"]
    assert tool and tool[-1]["tool_call_id"] == call["id"] and secret in json.dumps(tool[-1]["content"])

    entries = [e for e in gateway.request_logs()[logged:] if e["httpRequest"]["requestUrl"] == "/v1/chat/completions"]
    assert len(entries) == len(turns), [e["httpRequest"] for e in entries]
    assert all(e["httpRequest"]["status"] == 200 and e["alias"] == "pro-preview" for e in entries)
    assert all(e["key_id"] == KEY_IDS["full"] and e["stream"] is True for e in entries)
    assert "thought_signatures" not in entries[0]
    assert entries[1]["thought_signatures"] == {"restored": 1}
