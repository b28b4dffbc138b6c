"""pytest plugin for `make test-fast`: in-process unit tests only, no processes, in seconds.

Loaded only by `make test-fast` (`-p tests.tools.fast -m "not e2e and not node and not slow"`);
`make test` runs everything and never loads it. It marks `slow` what starts a program (a gateway
process, gcloud, terraform, deploy.sh, linters, pip-audit) or spends seconds of wall-clock time
on real deadlines, whichever module the test is in. Modules that are ours mark themselves with
`pytestmark`; the rest are named here, so no other file needs to know about this run.

And it enforces the rule instead of trusting the lists: in this run, starting a process fails
the test with a message that says to mark it slow, so a new process-starting test cannot slip in.
"""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

# Fixtures that start a gateway (gunicorn) or Claude Code: any test using one is slow.
PROCESS_FIXTURES = frozenset({"gateway", "gateway_env", "gateway_factory", "claude_cli", "dev_run", "readme_run"})
# Modules whose tests run programs: deploy.sh and terraform, gunicorn's container command, the real
# gcloud, pip-audit, the terraform-evaluated variables behind the docs checks, and the upstream client's
# socket tests, which wait out real deadlines (about 12 s together).
SLOW_MODULES = frozenset(
    {
        "test_audit",
        "test_container_cmd",
        "test_deploy",
        "test_docs_agree",
        "test_fake_secretmanager",
        "test_upstream_client",
    }
)
# Single tests in otherwise in-process modules.
SLOW_TESTS = frozenset({"tests/test_fakes.py::test_google_auth_default_gets_tokens_from_fake_metadata"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        module = item.nodeid.split("::", 1)[0].rsplit("/", 1)[-1].removesuffix(".py")
        if (
            module in SLOW_MODULES
            or item.nodeid.split("[", 1)[0] in SLOW_TESTS
            or PROCESS_FIXTURES & set(getattr(item, "fixturenames", ()))
        ):
            item.add_marker(pytest.mark.slow)


_execute_child = subprocess.Popen._execute_child  # type: ignore[attr-defined]


def _refuse(self: subprocess.Popen[Any], args: Any, *rest: Any, **kwargs: Any) -> None:
    raise AssertionError(
        f"make test-fast runs no processes, but this test started {args!r}: "
        "mark it slow (pytestmark, or tests/tools/fast.py for a module that is not ours)"
    )


def pytest_configure(config: pytest.Config) -> None:
    # Every way Python starts a program (subprocess.run, Popen, asyncio's subprocesses) goes through here.
    subprocess.Popen._execute_child = _refuse  # type: ignore[attr-defined]


def pytest_unconfigure(config: pytest.Config) -> None:
    subprocess.Popen._execute_child = _execute_child  # type: ignore[attr-defined]
