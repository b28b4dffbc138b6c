"""`make run` on a machine without Google credentials: scripts/dev-run starts the local stand-in for
Vertex beside the gateway, and the README's clients get (canned) answers from it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anthropic
import openai
import pytest

from tests.fakes import free_port
from tests.harness import REPO

pytestmark = pytest.mark.e2e

START_TIMEOUT = 60.0


@dataclass
class DevRun:
    proc: subprocess.Popen[str]
    url: str
    key: str
    standin_pid: int
    stderr_path: Path


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=2) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


@pytest.fixture
def dev_run(tmp_path: Path) -> Iterator[DevRun]:
    port = free_port()
    keys = tmp_path / "keys.json"
    env = {
        "PATH": os.environ["PATH"],
        "LANG": "C.UTF-8",
        "HOME": str(tmp_path),  # no ADC file here, and no GOOGLE_APPLICATION_CREDENTIALS
        "CLOUDSDK_CONFIG": str(tmp_path / "gcloud"),
        "PORT": str(port),
        "API_KEYS_FILE": str(keys),
    }
    stderr_path = tmp_path / "dev-run.err"
    with stderr_path.open("w") as err:
        proc = subprocess.Popen(
            [str(REPO / "scripts" / "dev-run")], cwd=REPO, env=env, stdout=err, stderr=err, text=True
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT
    while not _healthy(url):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"make run did not come up: {stderr_path.read_text()[-2000:]}")
        time.sleep(0.2)
    ready = json.loads((tmp_path / "standin.json").read_text())
    key = json.loads(keys.read_text())[0]["key"]
    run = DevRun(proc, url, key, int(ready["pid"]), stderr_path)
    yield run
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)


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
