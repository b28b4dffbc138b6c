"""README's examples, exactly as written, against `make run` on a machine without Google credentials.

The examples are read from README.md itself: each fenced block right after a `<!-- readme-test: NAME -->`
marker. So an edit to the README is an edit to this test, and the README cannot drift from what works.
Two substitutions make a README example runnable here, and only these: `http://localhost:8080` becomes the
free port this test started scripts/dev-run on (as `127.0.0.1`, since gunicorn listens on IPv4 and
`localhost` may resolve to `::1` first), and the `sk_dev_...` placeholder becomes the dev key scripts/dev-run
created (the key `make run` prints). scripts/dev-run runs as `make run` runs it, with a clean HOME (no
Application Default Credentials, so it starts the local stand-in for Vertex) and its key file in a temporary
directory (API_KEYS_FILE), never the developer's .local/.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fakes import free_port
from tests.harness import REPO

README = REPO / "README.md"
RUNBOOK = REPO / "app" / "templates" / "runbook.html"
CLAUDE_DOC = REPO / "docs" / "claude.md"
LOCAL_URL = "http://localhost:8080"
KEY_PLACEHOLDER = "sk_dev_..."
START_TIMEOUT = 60.0
RUN_TIMEOUT = 60

_BLOCK = re.compile(r"^<!-- readme-test: ([a-z-]+) -->\n```([a-z]+)\n(.*?)^```$", re.M | re.S)


def readme_examples() -> dict[str, tuple[str, str]]:
    """{name: (language, code)} for every marked block in README.md."""
    found: dict[str, tuple[str, str]] = {}
    for name, language, code in _BLOCK.findall(README.read_text()):
        assert name not in found, f"two README blocks marked {name!r}"
        found[name] = (language, code)
    return found


def localize(code: str, url: str, key: str) -> str:
    # Both placeholders must be there: the README's local examples all use localhost and the dev key.
    assert LOCAL_URL in code and KEY_PLACEHOLDER in code, code
    return code.replace(LOCAL_URL, url).replace(KEY_PLACEHOLDER, key)


@dataclass
class MakeRun:
    proc: subprocess.Popen[str]
    url: str
    key: str
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=2) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


def start_make_run(workdir: Path, keys_document: list[dict[str, object]] | None = None) -> MakeRun:
    """scripts/dev-run (what `make run` runs once the venv exists), set up as tests/test_dev_run.py does: with
    no key file (it makes one with a dev key), or with `keys_document` written there first."""
    port = free_port()
    keys = workdir / "keys.json"
    if keys_document is not None:
        keys.write_text(json.dumps(keys_document))
    env = {
        "PATH": os.environ["PATH"],
        "LANG": "C.UTF-8",
        "HOME": str(workdir),  # no ADC file here, and no GOOGLE_APPLICATION_CREDENTIALS
        "CLOUDSDK_CONFIG": str(workdir / "gcloud"),
        "PORT": str(port),
        "API_KEYS_FILE": str(keys),
    }
    log = workdir / "make-run.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(REPO / "scripts" / "dev-run")], cwd=REPO, env=env, stdout=out, stderr=out, text=True
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT
    while not _healthy(url):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait(5)
            pytest.fail(f"make run did not come up: {log.read_text()[-2000:]}")
        time.sleep(0.2)
    if keys_document is not None:
        return MakeRun(proc, url, "", log)
    key = json.loads(keys.read_text())[0]["key"]
    assert key.startswith("sk_dev_") and key in log.read_text(), "make run prints the sk_dev_ key"
    return MakeRun(proc, url, key, log)


@pytest.fixture(scope="module")
def readme_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MakeRun]:
    run = start_make_run(tmp_path_factory.mktemp("make-run"))
    yield run
    run.stop()


def run_example(name: str, run: MakeRun) -> str:
    language, code = readme_examples()[name]
    code = localize(code, run.url, run.key)
    command = {"bash": ["bash", "-euo", "pipefail", "-c", code], "python": [sys.executable, "-c", code]}[language]
    env = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8", "HOME": str(run.log.parent)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False)
    assert done.returncode == 0, f"{name}: {done.stdout[-1000:]}\n{done.stderr[-2000:]}\nlog: {run.log}"
    return done.stdout


def test_readme_marks_the_examples_this_file_runs() -> None:
    examples = readme_examples()
    assert {"curl", "openai", "anthropic", "claude"} <= set(examples)
    for name, (_, code) in examples.items():
        assert LOCAL_URL in code and KEY_PLACEHOLDER in code, name
        assert "sk_live_" not in code and "127.0.0.1" not in code, name


@pytest.mark.e2e
def test_readme_curl_gets_an_answer(readme_run: MakeRun) -> None:
    reply = json.loads(run_example("curl", readme_run))
    assert reply["object"] == "chat.completion" and reply["choices"][0]["message"]["content"]


@pytest.mark.e2e
def test_readme_openai_snippet_gets_an_answer(readme_run: MakeRun) -> None:
    assert run_example("openai", readme_run).strip()


@pytest.mark.e2e
def test_readme_anthropic_snippet_gets_an_answer(readme_run: MakeRun) -> None:
    assert run_example("anthropic", readme_run).strip().startswith("echo:")  # the stand-in's canned Claude


def claude_settings(text: str) -> list[str]:
    """The `export ANTHROPIC_…` / `CLAUDE_CODE_…` assignments of a Claude Code setup, comments dropped."""
    settings = []
    for line in re.findall(r"^export (.+)$", text, re.M):
        settings += [w for w in line.split("#", 1)[0].split() if re.match(r"(ANTHROPIC|CLAUDE_CODE)_[A-Z_]+=", w)]
    return settings


def test_readme_runbook_and_claude_doc_set_claude_code_up_alike() -> None:
    # The same model mapping and traffic setting everywhere; only the URL and key differ by place.
    names = {s.split("=", 1)[0]: s for s in claude_settings(readme_examples()["claude"][1])}
    assert set(names) >= {"ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"}
    fixed = {s for n, s in names.items() if n not in ("ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY")}
    for doc in (RUNBOOK, CLAUDE_DOC):
        assert fixed <= set(claude_settings(doc.read_text())), doc.name
