"""`make run` on a machine without Google credentials: scripts/dev-run starts the local stand-in for
Vertex beside the gateway, and the README's clients get (canned) answers from it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anthropic
import openai
import pytest

from tests.test_readme import start_make_run

pytestmark = pytest.mark.e2e


@dataclass
class DevRun:
    proc: subprocess.Popen[str]
    url: str
    key: str
    standin_pid: int
    stderr_path: Path


@pytest.fixture
def dev_run(tmp_path: Path) -> Iterator[DevRun]:
    run = start_make_run(tmp_path)
    ready = json.loads((tmp_path / "standin.json").read_text())
    yield DevRun(run.proc, run.url, run.key, int(ready["pid"]), run.log)
    run.stop()


def test_without_credentials_the_clients_get_answers(dev_run: DevRun) -> None:
    banner = dev_run.stderr_path.read_text()
    assert "canned" in banner and "gcloud auth application-default login" in banner
    assert dev_run.key.startswith("sk_dev_") and dev_run.key in banner

    with openai.OpenAI(api_key=dev_run.key, base_url=dev_run.url + "/v1", max_retries=0) as sdk:
        chat = sdk.chat.completions.create(model="flash", messages=[{"role": "user", "content": "Say hi"}])
        assert chat.choices[0].message.content
        stream = sdk.chat.completions.create(
            model="flash", messages=[{"role": "user", "content": "Count"}], stream=True
        )
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

    claude = anthropic.Anthropic(api_key=dev_run.key, base_url=dev_run.url, max_retries=0)
    message = claude.messages.create(model="sonnet", max_tokens=50, messages=[{"role": "user", "content": "Hi"}])
    assert message.content[0].type == "text" and message.content[0].text
    assert claude.messages.count_tokens(model="sonnet", messages=[{"role": "user", "content": "Hi"}]).input_tokens


def test_the_stand_in_leaves_with_the_gateway(dev_run: DevRun) -> None:
    dev_run.proc.send_signal(signal.SIGTERM)
    assert dev_run.proc.wait(20) == 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(dev_run.standin_pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.kill(dev_run.standin_pid, signal.SIGKILL)
    pytest.fail("the stand-in outlived the gateway it served")


DIGEST = {"id": "ci", "sha256": "0" * 64}


@pytest.mark.parametrize(
    ("document", "says"),
    [
        # scripts/keys --file writes digests: the dev key is found by its id, not by its place in the list.
        ([DIGEST, {"id": "dev", "key": "sk_dev_kept_0123456789"}], "dev key: sk_dev_kept_0123456789"),
        ([DIGEST], "holds no plain-text key (only sha256 digests?): issue one with 'scripts/keys --file"),
    ],
)
def test_a_key_file_made_by_scripts_keys_still_starts(
    tmp_path: Path, document: list[dict[str, str]], says: str
) -> None:
    run = start_make_run(tmp_path, document)
    try:
        log = run.log.read_text()
        assert says in log, log[-2000:]
        assert "Traceback" not in log
    finally:
        run.stop()
