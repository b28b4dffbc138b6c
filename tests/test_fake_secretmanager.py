"""The Secret Manager fake speaks the real clients' wire format: the Python client
(REST transport) and the real gcloud CLI."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.api_core import exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import secretmanager

from tests.fakes.secretmanager import FakeSecretManager, crc32c

SECRET = "projects/test-project/secrets/llm-gateway-keys"


@pytest.fixture
def fake() -> Iterator[FakeSecretManager]:
    with FakeSecretManager() as server:
        yield server


@pytest.fixture
def client(fake: FakeSecretManager) -> secretmanager.SecretManagerServiceClient:
    return secretmanager.SecretManagerServiceClient(
        transport="rest",
        client_options={"api_endpoint": fake.url},
        credentials=AnonymousCredentials(),
    )


def gcloud(
    fake: FakeSecretManager, tmp_path: Path, *args: str, stdin: bytes = b""
) -> subprocess.CompletedProcess[bytes]:
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    env.update(fake.gcloud_env(str(tmp_path / "gcloud")))
    return subprocess.run(["gcloud", *args], input=stdin, env=env, capture_output=True, timeout=120, check=False)


def test_crc32c_matches_the_standard_check_values() -> None:
    # RFC 3720 / iSCSI check value, and proof that it is not zlib's CRC-32.
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0
    assert crc32c(b"123456789") != zlib.crc32(b"123456789")


def test_python_client_round_trip(fake: FakeSecretManager, client: secretmanager.SecretManagerServiceClient) -> None:
    client.create_secret(
        request={
            "parent": "projects/test-project",
            "secret_id": "llm-gateway-keys",
            "secret": {"replication": {"automatic": {}}},
        }
    )
    added = client.add_secret_version(
        request={"parent": SECRET, "payload": {"data": b"[1]", "data_crc32c": crc32c(b"[1]")}}
    )
    assert added.name == f"{SECRET}/versions/1"
    assert added.client_specified_payload_checksum
    client.add_secret_version(request={"parent": SECRET, "payload": {"data": b"[2]"}})

    latest = client.access_secret_version(name=f"{SECRET}/versions/latest")
    assert (latest.name, latest.payload.data) == (f"{SECRET}/versions/2", b"[2]")
    assert latest.payload.data_crc32c == crc32c(b"[2]")
    assert client.access_secret_version(name=f"{SECRET}/versions/1").payload.data == b"[1]"
    assert [v.name for v in client.list_secret_versions(parent=SECRET)] == [
        f"{SECRET}/versions/2",
        f"{SECRET}/versions/1",
    ]

    client.disable_secret_version(name=f"{SECRET}/versions/1")
    with pytest.raises(exceptions.BadRequest, match="DISABLED state"):
        client.access_secret_version(name=f"{SECRET}/versions/1")
    client.enable_secret_version(name=f"{SECRET}/versions/1")
    client.destroy_secret_version(name=f"{SECRET}/versions/1")
    assert fake.versions("llm-gateway-keys")[0].state == "DESTROYED"
    with pytest.raises(exceptions.NotFound):
        client.access_secret_version(name="projects/test-project/secrets/other/versions/latest")


def test_add_version_rejects_a_wrong_checksum(
    fake: FakeSecretManager, client: secretmanager.SecretManagerServiceClient
) -> None:
    fake.create_secret("llm-gateway-keys")
    with pytest.raises(exceptions.BadRequest, match="Checksum"):
        client.add_secret_version(
            request={"parent": SECRET, "payload": {"data": b"[]", "data_crc32c": zlib.crc32(b"[]")}}
        )
    assert fake.versions("llm-gateway-keys") == []


def test_down_and_garbage_controls(fake: FakeSecretManager, client: secretmanager.SecretManagerServiceClient) -> None:
    fake.create_secret("llm-gateway-keys")
    fake.add_version("llm-gateway-keys", "[]")
    fake.down = True
    with pytest.raises(exceptions.InternalServerError):
        client.access_secret_version(name=f"{SECRET}/versions/latest")
    fake.down = False
    fake.garbage = True
    with pytest.raises(Exception) as caught:  # the client cannot parse the body, whatever it raises
        client.access_secret_version(name=f"{SECRET}/versions/latest")
    assert not isinstance(caught.value, AssertionError)
    fake.garbage = False
    assert client.access_secret_version(name=f"{SECRET}/versions/latest").payload.data == b"[]"


def test_before_reply_lands_between_two_calls(
    fake: FakeSecretManager, client: secretmanager.SecretManagerServiceClient
) -> None:
    fake.create_secret("llm-gateway-keys")
    fake.add_version("llm-gateway-keys", "[]")
    fake.before_reply = lambda method, path: (
        fake.add_version("llm-gateway-keys", "[9]") if path.endswith(":access") else None
    )
    first = client.access_secret_version(name=f"{SECRET}/versions/latest")
    fake.before_reply = None
    assert first.name.endswith("/versions/1")  # the reply was fixed before the write
    assert client.access_secret_version(name=f"{SECRET}/versions/latest").payload.data == b"[9]"


def test_real_gcloud_round_trip(fake: FakeSecretManager, tmp_path: Path) -> None:
    created = gcloud(fake, tmp_path, "secrets", "create", "llm-gateway-keys", "--replication-policy=automatic")
    assert created.returncode == 0, created.stderr.decode()
    added = gcloud(
        fake, tmp_path, "secrets", "versions", "add", "llm-gateway-keys", "--data-file=-", stdin=b'[{"id":"a"}]'
    )
    assert added.returncode == 0, added.stderr.decode()
    assert fake.latest_data("llm-gateway-keys") == b'[{"id":"a"}]'

    access = gcloud(
        fake, tmp_path, "secrets", "versions", "access", "latest", "--secret=llm-gateway-keys", "--format=json"
    )
    assert access.returncode == 0, access.stderr.decode()
    reply = json.loads(access.stdout)
    assert reply["name"] == f"{SECRET}/versions/1"
    assert base64.b64decode(reply["payload"]["data"]) == b'[{"id":"a"}]'

    for verb in ("disable", "enable", "destroy"):
        done = gcloud(fake, tmp_path, "secrets", "versions", verb, "1", "--secret=llm-gateway-keys")
        assert done.returncode == 0, done.stderr.decode()
    listed = gcloud(fake, tmp_path, "secrets", "versions", "list", "llm-gateway-keys", "--format=json")
    assert [v["state"] for v in json.loads(listed.stdout)] == ["DESTROYED"]

    missing = gcloud(fake, tmp_path, "secrets", "describe", "nope")
    assert missing.returncode != 0
    assert b"NOT_FOUND" in missing.stderr
    # Every call carried the token from the token file, and nothing else was contacted.
    assert {r["authorization"] for r in fake.requests} == {"Bearer test-token"}
