"""End to end: the real Claude Code CLI, run non-interactively, through the gateway to the Vertex fake.

Claude Code is pinned in tests/node_claude (npm ci'd here when missing). It talks
to ANTHROPIC_BASE_URL exactly as it would to api.anthropic.com: POST
/v1/messages?beta=true, a comma list of betas in `anthropic-beta`, its own model ids.
Without npm, or without a Claude Code build for this platform, these tests skip
and say why; every other test runs everywhere.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import API_KEYS, KEY_IDS, LOCATION, PROJECT
from tests.fakes.metadata import FakeMetadata
from tests.fakes.vertex import FakeVertex, Recorded
from tests.harness import Gateway, start_gateway
from tests.node_cli import npm_ci

# The first test may include `npm ci` of a ~360 MB native package.
pytestmark = [pytest.mark.e2e, pytest.mark.node, pytest.mark.timeout(900)]

NODE_CLAUDE = Path(__file__).parent / "node_claude"
CLAUDE_BIN = NODE_CLAUDE / "node_modules" / ".bin" / "claude"
# The model Claude Code asks for when given none; it changes with the pinned version
# (package.json), and an operator must map it (MODEL_ALIASES) for a bare `claude` to work.
CLAUDE_CODE_DEFAULT_MODEL = "claude-opus-5-5"
CLAUDE_PREFIX = f"/v1/projects/{PROJECT}/locations/{LOCATION}/publishers/anthropic/models/"
PROMPT = "say hi"
RUN_TIMEOUT = 120


def _install() -> str | None:
    """Install the pinned CLI if needed; return why it cannot run, or None."""
    why = npm_ci(NODE_CLAUDE, CLAUDE_BIN)
    if why:
        return why
    try:
        version = subprocess.run(
            [str(CLAUDE_BIN), "--version"], capture_output=True, text=True, timeout=60, check=False, env=_base_env()
        )
    except OSError as exc:
        # e.g. the placeholder left when npm skipped the postinstall that puts the native binary in place
        return f"{CLAUDE_BIN} does not run on this machine ({exc})"
    if version.returncode != 0 or "Claude Code" not in version.stdout:
        return f"{CLAUDE_BIN} --version failed ({version.returncode}): {(version.stdout + version.stderr)[-400:]}"
    return None


def _base_env() -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"), "LANG": "C.UTF-8"}


@pytest.fixture(scope="module")
def claude_cli() -> Path:
    why = _install()
    if why:
        pytest.skip(why)
    return CLAUDE_BIN


@pytest.fixture
def claude_home() -> Iterator[Path]:
    # A fresh HOME: no login, no settings, no history from the machine's user.
    with tempfile.TemporaryDirectory(prefix="claude-home-") as home:
        (Path(home) / "work").mkdir()
        yield Path(home)


def run_claude(
    cli: Path,
    home: Path,
    gateway: Gateway,
    auth: dict[str, str],
    *args: str,
    env: dict[str, str] | None = None,
    prompt: str = PROMPT,
    tools: list[str] | None = None,
) -> subprocess.CompletedProcess[str]:
    full_env = {
        **_base_env(),
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": gateway.url,
        # No telemetry, error reports, update checks or other calls beside the model's own.
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "TERM": "dumb",
        "NO_COLOR": "1",
        **auth,
        **(env or {}),
    }
    # --tools "" unless a test wants tools: the fake answers any request that offers tools with a tool
    # call, and a plain text answer is what most tests want to see printed.
    tool_args = ["--tools", ""] if tools is None else tools
    command = [str(cli), "-p", prompt, *tool_args, "--no-session-persistence", *args]
    return subprocess.run(
        command,
        cwd=home / "work",
        env=full_env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )


def assert_printed_fake_answer(done: subprocess.CompletedProcess[str], gateway: Gateway) -> None:
    detail = (
        f"exit {done.returncode}\nstdout: {done.stdout[-2000:]}\nstderr: {done.stderr[-2000:]}\n"
        f"gateway log: {gateway.log_path}"
    )
    assert done.returncode == 0, detail
    out = done.stdout.strip()
    # The fake echoes the last user turn; Claude Code puts its own context blocks before the prompt.
    assert out.startswith("echo:") and out.endswith(PROMPT), detail


def claude_code_requests(fake_vertex: FakeVertex, since: int) -> list[Recorded]:
    return [r for r in fake_vertex.requests[since:] if r.path.startswith(CLAUDE_PREFIX)]


def assert_reached_vertex(records: list[Recorded], vertex_model: str, fake_metadata: FakeMetadata) -> None:
    assert records, "Claude Code's request never reached the Vertex fake"
    for rec in records:
        assert rec.path == f"{CLAUDE_PREFIX}{vertex_model}:streamRawPredict", rec.path
        assert rec.status == 200
        body = rec.json
        assert "model" not in body and body["anthropic_version"] == "vertex-2023-10-16"
        assert body["stream"] is True
        assert rec.query == ""
        assert (rec.header("Authorization") or "").removeprefix("Bearer ") in fake_metadata.issued
        seen = " ".join(v for _, v in rec.headers) + rec.body.decode("utf-8", "replace")
        assert not any(key in seen for key in API_KEYS.values()), "a gateway key leaked upstream"


def message_logs(gateway: Gateway, since: int) -> list[dict[str, object]]:
    return [e for e in gateway.request_logs()[since:] if e["httpRequest"]["requestUrl"] == "/v1/messages"]  # type: ignore[index]


def test_claude_code_with_api_key_and_anthropic_model_id(
    claude_cli: Path, claude_home: Path, gateway: Gateway, fake_vertex: FakeVertex, fake_metadata: FakeMetadata
) -> None:
    # The shared gateway runs the default aliases; Claude Code's own id for Haiku 4.5 must map to Vertex's.
    seen, logged = len(fake_vertex.requests), len(gateway.request_logs())
    key = {"ANTHROPIC_API_KEY": API_KEYS["full"]}
    done = run_claude(claude_cli, claude_home, gateway, key, "--model", "claude-haiku-4-5-20251001")
    assert_printed_fake_answer(done, gateway)
    assert_reached_vertex(claude_code_requests(fake_vertex, seen), "claude-haiku-4-5@20251001", fake_metadata)
    entries = message_logs(gateway, logged)
    assert entries and all(e["httpRequest"]["status"] == 200 for e in entries)  # type: ignore[index]
    for entry in entries:
        assert entry["key_id"] == KEY_IDS["full"] and entry["alias"] == "haiku" and entry["stream"] is True
        assert str(entry["httpRequest"]["userAgent"]).startswith("claude-cli/")  # type: ignore[index]
        assert isinstance(entry["usage"], dict) and entry["usage"]["output_tokens"] > 0


def test_claude_code_with_auth_token_and_anthropic_model_env(
    claude_cli: Path, claude_home: Path, gateway: Gateway, fake_vertex: FakeVertex, fake_metadata: FakeMetadata
) -> None:
    # ANTHROPIC_AUTH_TOKEN is sent as `Authorization: Bearer`; ANTHROPIC_MODEL picks the model.
    seen, logged = len(fake_vertex.requests), len(gateway.request_logs())
    done = run_claude(
        claude_cli,
        claude_home,
        gateway,
        {"ANTHROPIC_AUTH_TOKEN": API_KEYS["hashed"], "ANTHROPIC_MODEL": "claude-sonnet-4-6"},
    )
    assert_printed_fake_answer(done, gateway)
    assert_reached_vertex(claude_code_requests(fake_vertex, seen), "claude-sonnet-4-6", fake_metadata)
    entries = message_logs(gateway, logged)
    assert entries and {e["key_id"] for e in entries} == {KEY_IDS["hashed"]}


def test_claude_code_default_model_when_mapped(
    claude_cli: Path,
    claude_home: Path,
    gateway_env: dict[str, str | None],
    fake_vertex: FakeVertex,
    fake_metadata: FakeMetadata,
) -> None:
    # A bare `claude` asks for its default model by its Anthropic id; an operator who maps that
    # id's Vertex model gets Claude Code working with no model settings on the user's side.
    aliases = {"opus": f"anthropic/{CLAUDE_CODE_DEFAULT_MODEL}", "haiku": "anthropic/claude-haiku-4-5@20251001"}
    gateway = start_gateway({**gateway_env, "MODEL_ALIASES": json.dumps(aliases)})
    try:
        seen = len(fake_vertex.requests)
        done = run_claude(claude_cli, claude_home, gateway, {"ANTHROPIC_API_KEY": API_KEYS["full"]})
        assert_printed_fake_answer(done, gateway)
        records = claude_code_requests(fake_vertex, seen)
        assert_reached_vertex(records, CLAUDE_CODE_DEFAULT_MODEL, fake_metadata)
        # Betas arrive as Claude Code's header list, filtered to what Vertex takes, in the body.
        betas = records[0].json.get("anthropic_beta", [])
        assert "claude-code-20250219" not in betas
    finally:
        assert gateway.stop() == 0


# Client-side settings that make Claude Code's own model names send the gateway's aliases.
ALIAS_ENV = {
    "ANTHROPIC_DEFAULT_OPUS_MODEL": "opus",
    "ANTHROPIC_DEFAULT_SONNET_MODEL": "sonnet",
    "ANTHROPIC_DEFAULT_HAIKU_MODEL": "haiku",
}
# The shared gateway's default aliases.
DEFAULT_VERTEX = {"opus": "claude-opus-4-6", "sonnet": "claude-sonnet-4-6", "haiku": "claude-haiku-4-5@20251001"}


@pytest.mark.parametrize(("flag", "alias"), [(None, "opus"), ("sonnet", "sonnet"), ("haiku", "haiku")])
def test_claude_code_model_names_mapped_to_gateway_aliases(
    flag: str | None,
    alias: str,
    claude_cli: Path,
    claude_home: Path,
    gateway: Gateway,
    fake_vertex: FakeVertex,
    fake_metadata: FakeMetadata,
) -> None:
    # Claude Code resolves `opus`/`sonnet`/`haiku` (and its default, an opus) to its own newest ids,
    # which the gateway need not serve; ANTHROPIC_DEFAULT_*_MODEL makes it send the gateway's aliases.
    # CLAUDE_CODE_DISABLE_EXPERIMENTAL_BETAS is the runbook's advice for Vertex: it must not get in the way.
    seen, logged = len(fake_vertex.requests), len(gateway.request_logs())
    env = {**ALIAS_ENV, "CLAUDE_CODE_DISABLE_EXPERIMENTAL_BETAS": "1"}
    args = ["--model", flag] if flag else []
    done = run_claude(claude_cli, claude_home, gateway, {"ANTHROPIC_API_KEY": API_KEYS["full"]}, *args, env=env)
    assert_printed_fake_answer(done, gateway)
    assert_reached_vertex(claude_code_requests(fake_vertex, seen), DEFAULT_VERTEX[alias], fake_metadata)
    assert {e["alias"] for e in message_logs(gateway, logged)} == {alias}


@pytest.mark.parametrize("block", ["claude", "claude-gemini"])
def test_claude_code_as_the_readme_says_against_make_run(
    block: str, claude_cli: Path, claude_home: Path, tmp_path: Path
) -> None:
    # README's Claude Code block, run as written by bash (the pinned `claude` first on PATH), against
    # `make run` without Google credentials: scripts/dev-run and its local stand-in for Vertex.
    # tests/test_readme.py says which two substitutions make it runnable (URL and dev key).
    from tests.test_readme import localize, readme_examples, start_make_run

    run = start_make_run(tmp_path)
    try:
        _, code = readme_examples()[block]
        env = {
            **_base_env(),
            "PATH": f"{claude_cli.parent}{os.pathsep}{_base_env()['PATH']}",
            "HOME": str(claude_home),
            # The same quiet settings as every run here; the README's block sets the rest.
            "DISABLE_AUTOUPDATER": "1",
            "DISABLE_TELEMETRY": "1",
            "DISABLE_ERROR_REPORTING": "1",
            "TERM": "dumb",
            "NO_COLOR": "1",
        }
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", localize(code, run.url, run.key)],
            cwd=claude_home / "work",
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
            check=False,
        )
        detail = f"exit {done.returncode}\nstdout: {done.stdout[-2000:]}\nstderr: {done.stderr[-2000:]}\nlog: {run.log}"
        assert done.returncode == 0 and done.stdout.strip(), detail
        # The stand-in's canned answer to a plain prompt is text (it calls a tool only when the prompt names one).
        assert done.stdout.lstrip().startswith("echo:"), detail
        lines = [json.loads(line) for line in run.log.read_text().splitlines() if line.startswith("{")]
        served = [e for e in lines if e.get("httpRequest", {}).get("requestUrl") == "/v1/messages"]
        assert served and all(e["httpRequest"]["status"] == 200 and e["key_id"] == "dev" for e in served), detail
        if block == "claude":
            # No tier settings: Claude Code's own ids passed through to (the stand-in's) Claude on Vertex.
            assert all(str(e["alias"]).startswith("claude-") for e in served), detail
        else:
            assert {e["alias"] for e in served} == {"flash"}, detail
            assert all(e["upstream_api"] == "gemini" for e in served), detail
    finally:
        run.stop()


GEMINI_PREFIX = f"/v1/projects/{PROJECT}/locations/{LOCATION}/publishers/google/models/"


@pytest.mark.parametrize(
    ("alias", "vertex_model"), [("flash", "gemini-2.5-flash"), ("pro-preview", "gemini-3.1-pro-preview")]
)
def test_claude_code_on_gemini_reads_a_file_with_its_read_tool(
    alias: str,
    vertex_model: str,
    claude_cli: Path,
    claude_home: Path,
    gateway: Gateway,
    fake_vertex: FakeVertex,
) -> None:
    """Only ANTHROPIC_BASE_URL, a key and ANTHROPIC_MODEL: Gemini calls Claude Code's Read tool, Claude Code
    runs it and sends the result, and prints the answer Gemini derives from it. gemini-3.1-pro-preview makes
    the fake enforce Gemini 3's thought-signature rule on the second turn."""
    secret = f"marmalade-{os.urandom(4).hex()}"
    hello = claude_home / "work" / "hello.txt"
    hello.write_text(f"the secret word is {secret}\n")
    seen = len(fake_vertex.requests)
    fake_vertex.push(
        {"call": {"name": "Read", "args": {"file_path": str(hello)}}},
        path_contains=f"{vertex_model}:streamGenerateContent",
    )
    done = run_claude(
        claude_cli,
        claude_home,
        gateway,
        {"ANTHROPIC_API_KEY": API_KEYS["full"]},
        env={"ANTHROPIC_MODEL": alias},
        prompt="What does hello.txt say?",
        tools=[],  # Claude Code's own tool set, every schema translated for Gemini
    )
    detail = (
        f"exit {done.returncode}\nstdout: {done.stdout[-2000:]}\nstderr: {done.stderr[-2000:]}\nlog: {gateway.log_path}"
    )
    assert done.returncode == 0, detail
    assert secret in done.stdout and "tool said:" in done.stdout, detail
    turns = [r for r in fake_vertex.requests[seen:] if r.path == f"{GEMINI_PREFIX}{vertex_model}:streamGenerateContent"]
    assert len(turns) >= 2 and all(r.status == 200 for r in turns), [(r.path, r.status) for r in turns]
    call_turn = next(r for r in turns if r.issued_signature)
    declared = {d["name"] for d in call_turn.json["tools"][0]["functionDeclarations"]}
    assert {"Read", "Bash"} <= declared
    # Claude Code echoed the tool_use block; the gateway put Gemini's signature back on the function call.
    answered = turns[turns.index(call_turn) + 1].json["contents"]
    calls = [p for c in answered if c["role"] == "model" for p in c["parts"] if "functionCall" in p]
    assert calls[-1]["functionCall"] == {"name": "Read", "args": {"file_path": str(hello)}}
    assert calls[-1]["thoughtSignature"] == call_turn.issued_signature
    results = [p["functionResponse"] for c in answered for p in c["parts"] if "functionResponse" in p]
    assert results[-1]["name"] == "Read" and secret in json.dumps(results[-1])
    lines = [e for e in message_logs(gateway, 0) if e.get("alias") == alias]
    assert lines and lines[-1]["upstream_api"] == "gemini" and lines[-1]["thought_signatures"] == {"restored": 1}


def test_claude_code_with_its_defaults(
    claude_cli: Path, claude_home: Path, gateway: Gateway, fake_vertex: FakeVertex, fake_metadata: FakeMetadata
) -> None:
    """`claude -p "hi" --model sonnet` with no ANTHROPIC_DEFAULT_* variables: Claude Code's own id for its
    newest Sonnet passes through to Vertex (MODEL_PASSTHROUGH's default)."""
    seen, logged = len(fake_vertex.requests), len(gateway.request_logs())
    done = run_claude(claude_cli, claude_home, gateway, {"ANTHROPIC_API_KEY": API_KEYS["full"]}, "--model", "sonnet")
    assert_printed_fake_answer(done, gateway)
    records = claude_code_requests(fake_vertex, seen)
    assert records and all(r.status == 200 for r in records)
    models = {r.path.removeprefix(CLAUDE_PREFIX).split(":")[0] for r in records}
    assert any(m.startswith("claude-sonnet-") for m in models), models
    assert not models & {"claude-sonnet-4-6"}, "not the gateway's `sonnet` alias: Claude Code's own id"
    entries = message_logs(gateway, logged)
    assert entries and all(e["httpRequest"]["status"] == 200 for e in entries)  # type: ignore[index]
    assert any(str(e["alias"]).startswith("claude-sonnet-") for e in entries)
    # Claude Code names its session (X-Claude-Code-Session-Id): one conversation, one session on every line.
    sessions = {e.get("session") for e in entries}
    assert len(sessions) == 1 and None not in sessions, sessions


def test_claude_code_names_its_session_as_the_docs_say(
    claude_cli: Path, claude_home: Path, gateway: Gateway, fake_vertex: FakeVertex
) -> None:
    # docs/usage.md: ANTHROPIC_CUSTOM_HEADERS sets X-Proxy-Chat-Session, which wins over Claude Code's own id.
    logged = len(gateway.request_logs())
    env = {"ANTHROPIC_MODEL": "haiku", "ANTHROPIC_CUSTOM_HEADERS": "X-Proxy-Chat-Session: ticket-4711"}
    done = run_claude(claude_cli, claude_home, gateway, {"ANTHROPIC_API_KEY": API_KEYS["full"]}, env=env)
    assert_printed_fake_answer(done, gateway)
    entries = message_logs(gateway, logged)
    assert entries and {e.get("session") for e in entries} == {"ticket-4711"}
