"""The key lifecycle end to end: scripts/keys (real gcloud) writes the secret, a
running gateway (gunicorn) reads the same Secret Manager fake and follows along
without a restart (issue 4)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import GatewayFactory
from tests.fakes.secretmanager import FakeSecretManager
from tests.faultkit import assert_openai_error, chat_body, eventually, get, post
from tests.harness import Gateway
from tests.test_keys_cli import SECRET, Cli

pytestmark = pytest.mark.e2e

# Polls are bounded well above KEYS_REFRESH_SECONDS=1 so a slow machine does not flake.
FOLLOW = 20.0


@pytest.fixture
def fake() -> Iterator[FakeSecretManager]:
    with FakeSecretManager() as server:
        server.create_secret(SECRET)
        server.add_version(SECRET, "[]")  # an empty document, as a fresh deploy leaves it
        yield server


@pytest.fixture
def keys(fake: FakeSecretManager, tmp_path: Path) -> Cli:
    return Cli(fake, tmp_path)


@pytest.fixture
def start(gateway_factory: GatewayFactory, fake: FakeSecretManager) -> Callable[..., Gateway]:
    def make(refresh: str = "1") -> Gateway:
        return gateway_factory(
            {
                "API_KEYS_JSON": None,
                "API_KEYS_SECRET": f"projects/test-project/secrets/{SECRET}",
                "SECRET_MANAGER_ENDPOINT": fake.url,
                "KEYS_REFRESH_SECONDS": refresh,
            }
        )

    return make


def status(gw: Gateway, key: str) -> int:
    return get(gw, "/v1/models", key).status


def accepted(gw: Gateway, key: str, what: str) -> None:
    eventually(lambda: status(gw, key) == 200, FOLLOW, what)


def refused(gw: Gateway, key: str, what: str) -> None:
    eventually(lambda: status(gw, key) == 401, FOLLOW, what)


def accesses(fake: FakeSecretManager) -> int:
    return sum(1 for r in fake.requests if r["path"].endswith(":access"))


def test_issued_key_is_accepted_within_the_refresh_interval(
    keys: Cli, start: Callable[..., Gateway], marker: str
) -> None:
    gw = start()
    key = keys.ok("issue", "alice", "--models", "flash").key
    accepted(gw, key, "the gateway picks up a newly issued key")
    assert post(gw, chat_body(marker), key=key).status == 200
    denied = post(gw, {**chat_body(marker), "model": "pro-preview"}, key=key)
    assert_openai_error(denied, 403, "model_not_allowed")
    assert status(gw, key + "x") == 401


def test_rotate_without_grace_stops_the_old_key(keys: Cli, start: Callable[..., Gateway]) -> None:
    gw = start()
    old = keys.ok("issue", "alice").key
    accepted(gw, old, "issued key")
    new = keys.ok("rotate", "alice").key
    accepted(gw, new, "rotated key")
    assert status(gw, old) == 401  # same secret version as the new key: already gone


def test_rotate_with_grace_keeps_the_old_key_until_the_grace_ends(keys: Cli, start: Callable[..., Gateway]) -> None:
    gw = start()
    old = keys.ok("issue", "alice").key
    accepted(gw, old, "issued key")
    new = keys.ok("rotate", "alice", "--grace", "1h").key
    accepted(gw, new, "rotated key")
    assert status(gw, old) == 200
    keys.ok("revoke", "alice")
    refused(gw, new, "revoked key")
    assert status(gw, old) == 401  # revoking a key also ends its old key's grace


def test_grace_period_end_refuses_the_old_key(keys: Cli, start: Callable[..., Gateway]) -> None:
    gw = start()
    old = keys.ok("issue", "alice").key
    accepted(gw, old, "issued key")
    new = keys.ok("rotate", "alice", "--grace", "5s").key
    accepted(gw, new, "rotated key")
    refused(gw, old, "the old key after its grace period")
    assert status(gw, new) == 200


def test_revoked_key_is_refused(keys: Cli, start: Callable[..., Gateway]) -> None:
    gw = start()
    alice = keys.ok("issue", "alice").key
    bob = keys.ok("issue", "bob").key
    accepted(gw, alice, "alice's key")
    accepted(gw, bob, "bob's key")
    keys.ok("revoke", "alice")
    refused(gw, alice, "revoked key")
    error = assert_openai_error(get(gw, "/v1/models", alice), 401, "invalid_api_key")
    assert "revoked" in error["message"]
    assert status(gw, bob) == 200
    keys.ok("delete", "bob")
    refused(gw, bob, "deleted key")


def test_expiry_takes_effect_at_the_moment_not_at_the_next_refresh(
    keys: Cli, fake: FakeSecretManager, start: Callable[..., Gateway]
) -> None:
    # Far enough ahead to outlast gateway start-up on a slow machine.
    expires = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=25)
    key = keys.ok("issue", "alice", "--expires", expires.strftime("%Y-%m-%dT%H:%M:%SZ")).key
    gw = start(refresh="3600")
    assert datetime.now(UTC) < expires, "setup outlasted the expiry; raise the margin"
    assert status(gw, key) == 200
    loads = accesses(fake)
    time.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.2)
    error = assert_openai_error(get(gw, "/v1/models", key), 401, "expired_api_key")
    assert "expired" in error["message"]
    assert accesses(fake) == loads, "no refresh happened: the gateway checked the expiry itself"


@pytest.mark.parametrize("fault", ["garbage", "down"])
def test_secret_manager_fault_keeps_the_last_good_keys(
    fault: str, keys: Cli, fake: FakeSecretManager, start: Callable[..., Gateway]
) -> None:
    gw = start()
    key = keys.ok("issue", "alice").key
    accepted(gw, key, "issued key")
    setattr(fake, fault, True)
    seen = accesses(fake)
    eventually(lambda: accesses(fake) >= seen + 2, FOLLOW, "two refreshes during the fault")
    assert status(gw, key) == 200
    assert get(gw, "/healthz").status == 200
    setattr(fake, fault, False)
    keys.ok("revoke", "alice")
    refused(gw, key, "a change after the fault is followed again")


def test_a_malformed_document_keeps_the_last_good_keys(
    keys: Cli, fake: FakeSecretManager, start: Callable[..., Gateway]
) -> None:
    gw = start()
    key = keys.ok("issue", "alice").key
    accepted(gw, key, "issued key")
    seen = accesses(fake)
    fake.add_version(SECRET, json.dumps({"not": "an array"}))
    eventually(lambda: accesses(fake) >= seen + 2, FOLLOW, "two refreshes of the bad version")
    assert status(gw, key) == 200
    # The tool refuses to build on the bad version and names the problem.
    result = keys("issue", "bob")
    assert result.code == 1
    assert "must be a JSON array" in result.stderr
