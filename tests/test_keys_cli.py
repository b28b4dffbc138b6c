"""scripts/keys, driven through the real gcloud CLI against the Secret Manager fake."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from app.key_ring import parse_key_document
from tests.fakes.secretmanager import FakeSecretManager

REPO = Path(__file__).resolve().parent.parent
KEYS = REPO / "scripts" / "keys"
SECRET = "llm-gateway-keys"
KEY_LINE = re.compile(r"sk_live_[A-Za-z0-9_-]{43,}")

# Runs scripts/keys and the real gcloud: `make test` only, not `make test-fast`.
pytestmark = pytest.mark.slow


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    @property
    def key(self) -> str:
        """The key, which must be the last line of stdout."""
        lines = self.stdout.splitlines()
        assert lines, f"no stdout; stderr: {self.stderr}"
        assert KEY_LINE.fullmatch(lines[-1]), lines[-1]
        return lines[-1]


def run_keys(env: dict[str, str], *args: str) -> Run:
    # Executed through its shebang, as a user runs it.
    done = subprocess.run([str(KEYS), *args], env=env, capture_output=True, text=True, timeout=120, check=False)
    return Run(done.returncode, done.stdout, done.stderr)


def keys_env(fake: FakeSecretManager, home: Path, **extra: str) -> dict[str, str]:
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "LANG": "C.UTF-8", "GOOGLE_CLOUD_PROJECT": "test-project"}
    env.update(fake.gcloud_env(str(home / "gcloud")))
    env.update(extra)
    return env


def document(fake: FakeSecretManager, version: int | None = None) -> list[dict[str, Any]]:
    versions = fake.versions(SECRET)
    raw = versions[-1 if version is None else version - 1].data
    return json.loads(raw)


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def seed(fake: FakeSecretManager, *ids: str, **fields: Any) -> int:
    """Write a document directly (as an earlier run of the tool would have)."""
    records = [{"id": i, "sha256": sha(i), "enabled": True, "created": "2025-01-01T00:00:00Z", **fields} for i in ids]
    return fake.add_version(SECRET, json.dumps(records))


class Cli:
    def __init__(self, fake: FakeSecretManager, home: Path) -> None:
        self.fake = fake
        self.env = keys_env(fake, home)

    def __call__(self, *args: str) -> Run:
        return run_keys(self.env, *args)

    def ok(self, *args: str) -> Run:
        result = self(*args)
        assert result.code == 0, result.stderr
        return result


@pytest.fixture
def fake() -> Iterator[FakeSecretManager]:
    with FakeSecretManager() as server:
        server.create_secret(SECRET)
        yield server


@pytest.fixture
def keys(fake: FakeSecretManager, tmp_path: Path) -> Cli:
    return Cli(fake, tmp_path)


def test_issue_stores_only_a_digest_and_prints_the_key_last(keys: Cli, fake: FakeSecretManager) -> None:
    result = keys.ok("issue", "alice", "--models", "flash,pro-preview", "--expires", "30d")
    key = result.key
    assert result.stdout == key + "\n"  # nothing else on stdout
    assert "alice" in result.stderr
    [record] = document(fake)
    assert record["id"] == "alice"
    assert record["sha256"] == sha(key)
    assert record["enabled"] is True
    assert record["models"] == ["flash", "pro-preview"]
    assert "key" not in record
    expires = datetime.fromisoformat(record["expires"].replace("Z", "+00:00"))
    assert timedelta(days=29) < expires - datetime.now(UTC) <= timedelta(days=30)
    datetime.fromisoformat(record["created"].replace("Z", "+00:00"))
    assert key not in fake.latest_data(SECRET).decode()


def test_issue_takes_glob_patterns_the_gateway_matches(keys: Cli, fake: FakeSecretManager) -> None:
    from app.aliases import Model

    keys.ok("issue", "claude-team", "--models", "sonnet, claude-opus-*,gemini-2.?-*")
    [record] = document(fake)
    assert record["models"] == ["sonnet", "claude-opus-*", "gemini-2.?-*"]
    records, problems = parse_key_document(fake.latest_data(SECRET))
    assert problems == []
    [parsed] = records.values()
    assert parsed.may_use(Model("sonnet", "anthropic/claude-sonnet-4-6"))
    assert parsed.may_use(Model("claude-opus-5", "anthropic/claude-opus-5", passthrough=True))
    assert not parsed.may_use(Model("opus", "anthropic/claude-opus-4-6"))
    assert "claude-* or gemini-2.5-*" in " ".join(keys.ok("issue", "--help").stdout.split())


def test_issue_refuses_an_existing_id(keys: Cli, fake: FakeSecretManager) -> None:
    keys.ok("issue", "alice")
    again = keys("issue", "alice")
    assert again.code == 1
    assert "already exists" in again.stderr
    assert again.stdout == ""
    assert len(fake.versions(SECRET)) == 1


def test_issue_validates_its_arguments_before_touching_the_secret(keys: Cli, fake: FakeSecretManager) -> None:
    for args, message in (
        (("issue", "has space"), "id 'has space'"),
        (("issue", "bob", "--expires", "tomorrow"), "--expires"),
        (("issue", "bob", "--expires", "2001-01-01T00:00:00Z"), "already past"),
        (("issue", "bob", "--models", ","), "--models"),
        (("issue", "bob", "--models", "flash,claude {opus}"), "--models: 'claude {opus}' is not an alias or pattern"),
    ):
        result = keys(*args)
        assert result.code == 1, args
        assert message in result.stderr
    assert fake.requests == []


def test_rotate_without_grace_replaces_the_digest(keys: Cli, fake: FakeSecretManager) -> None:
    old = keys.ok("issue", "alice", "--models", "flash").key
    new = keys.ok("rotate", "alice").key
    assert new != old
    [record] = document(fake)
    assert record["sha256"] == sha(new)
    assert record["models"] == ["flash"]
    assert "rotated" in record
    assert sha(old) not in fake.latest_data(SECRET).decode()


def test_rotate_with_grace_keeps_the_old_digest_until_the_grace_ends(keys: Cli, fake: FakeSecretManager) -> None:
    old = keys.ok("issue", "alice", "--models", "flash").key
    before = datetime.now(UTC).replace(microsecond=0)
    new = keys.ok("rotate", "alice", "--grace", "24h").key
    current, grace = document(fake)
    assert (current["id"], current["sha256"], current["enabled"]) == ("alice", sha(new), True)
    assert grace["id"].startswith("alice@rotated-")
    assert (grace["sha256"], grace["enabled"], grace["grace_for"]) == (sha(old), True, "alice")
    assert grace["models"] == ["flash"]
    until = datetime.fromisoformat(grace["expires"].replace("Z", "+00:00"))
    assert before + timedelta(hours=24) <= until <= datetime.now(UTC) + timedelta(hours=24)


def test_grace_records_whose_time_is_up_are_removed_on_the_next_write(keys: Cli, fake: FakeSecretManager) -> None:
    fake.add_version(
        SECRET,
        json.dumps(
            [
                {"id": "alice", "sha256": "a" * 64, "enabled": True},
                {
                    "id": "alice@rotated-x",
                    "sha256": "b" * 64,
                    "enabled": True,
                    "grace_for": "alice",
                    "expires": "2001-01-01T00:00:00Z",
                },
                {"id": "carol@hand-made", "sha256": "c" * 64, "enabled": True, "expires": "2001-01-01T00:00:00Z"},
            ]
        ),
    )
    keys.ok("issue", "bob")
    assert [r["id"] for r in document(fake)] == ["alice", "carol@hand-made", "bob"]


def test_revoke_disables_the_key_and_its_old_keys_in_grace(keys: Cli, fake: FakeSecretManager) -> None:
    seed(fake, "alice", "bob")
    keys.ok("rotate", "alice", "--grace", "1h")
    revoked = keys.ok("revoke", "alice")
    assert revoked.stdout == ""
    states = {r["id"].split("@")[0] + ("@" if "@" in r["id"] else ""): r["enabled"] for r in document(fake)}
    assert states == {"alice": False, "alice@": False, "bob": True}
    versions = len(fake.versions(SECRET))
    again = keys.ok("revoke", "alice")
    assert "already revoked" in again.stderr
    assert len(fake.versions(SECRET)) == versions


def test_rotate_re_enables_a_revoked_key_without_grace_for_the_old_one(keys: Cli, fake: FakeSecretManager) -> None:
    seed(fake, "alice", enabled=False)
    new = keys.ok("rotate", "alice", "--grace", "24h").key
    [record] = document(fake)
    assert (record["sha256"], record["enabled"]) == (sha(new), True)


def test_delete_removes_the_record_and_its_old_keys(keys: Cli, fake: FakeSecretManager) -> None:
    seed(fake, "alice", "bob")
    keys.ok("rotate", "alice", "--grace", "1h")
    keys.ok("delete", "alice")
    assert [r["id"] for r in document(fake)] == ["bob"]


def test_list_shows_the_table_and_never_a_key_or_digest(keys: Cli, fake: FakeSecretManager) -> None:
    first = keys.ok("issue", "alice", "--models", "flash", "--expires", "2099-01-02T03:04:05Z").key
    second = keys.ok("rotate", "alice", "--grace", "1h").key
    third = keys.ok("issue", "bob").key
    table = keys.ok("list")
    as_json = keys.ok("list", "--json")
    secrets = [first, second, third, *[r["sha256"] for r in document(fake)]]
    for output in (table.stdout, table.stderr, as_json.stdout, as_json.stderr):
        for secret in secrets:
            assert secret not in output
            assert secret[:16] not in output
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["ID", "ENABLED", "MODELS", "CREATED", "EXPIRES", "LAST", "ROTATED"]
    assert rows[0].split()[:3] == ["alice", "yes", "flash"]
    assert "2099-01-02T03:04:05Z" in rows[0]
    assert rows[1].startswith("alice@rotated-")
    assert rows[2].split()[:3] == ["bob", "yes", "-"]
    parsed = json.loads(as_json.stdout)
    assert [r["id"] for r in parsed] == ["alice", rows[1].split()[0], "bob"]
    assert set(parsed[0]) == {"id", "enabled", "models", "created", "expires", "rotated"}


def test_the_secret_never_holds_a_plaintext_key(keys: Cli, fake: FakeSecretManager) -> None:
    # A hand-written record with a plaintext key is hashed on the next write.
    fake.add_version(SECRET, json.dumps([{"id": "legacy", "key": "sk_legacy_plaintext_123", "enabled": True}]))
    issued = [
        keys.ok("issue", "alice").key,
        keys.ok("rotate", "alice", "--grace", "1h").key,
        keys.ok("issue", "bob").key,
    ]
    keys.ok("revoke", "bob")
    keys.ok("delete", "alice")
    written = fake.versions(SECRET)[1:]
    assert len(written) == 5
    for version in written:
        text = version.data.decode()
        assert "sk_" not in text
        for record in json.loads(text):
            assert "key" not in record
    assert document(fake)[0] == {"id": "legacy", "sha256": sha("sk_legacy_plaintext_123"), "enabled": True}
    assert all(key not in v.data.decode() for key in issued for v in written)


def test_unknown_id_is_named(keys: Cli, fake: FakeSecretManager) -> None:
    seed(fake, "alice")
    for command in ("rotate", "revoke", "delete"):
        result = keys(command, "nobody")
        assert result.code == 1
        assert "no key with id 'nobody'" in result.stderr
    assert len(fake.versions(SECRET)) == 1


def test_malformed_document_names_the_entry_and_writes_nothing(keys: Cli, fake: FakeSecretManager) -> None:
    fake.add_version(
        SECRET,
        json.dumps([{"id": "ok", "sha256": "a" * 64, "enabled": True}, {"id": "broken", "sha256": "xyz"}, "junk"]),
    )
    result = keys("issue", "alice")
    assert result.code == 1
    assert "entry #1 (id 'broken')" in result.stderr
    assert "entry #2 is not an object" in result.stderr
    not_json = fake.add_version(SECRET, "{not json")
    listed = keys("list")
    assert listed.code == 1
    assert f"version {not_json} is not valid JSON" in listed.stderr
    assert len(fake.versions(SECRET)) == 2


def test_missing_secret_says_how_to_create_it(tmp_path: Path) -> None:
    with FakeSecretManager() as empty:
        result = run_keys(keys_env(empty, tmp_path), "issue", "alice")
    assert result.code == 1
    assert "does not exist" in result.stderr
    assert "./deploy.sh" in result.stderr
    assert (
        "gcloud secrets create llm-gateway-keys --replication-policy=automatic --project=test-project" in result.stderr
    )


def test_gcloud_missing_is_explained(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(sys.executable)
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path), "GOOGLE_CLOUD_PROJECT": "test-project"}
    result = run_keys(env, "list")
    assert result.code == 1
    assert "gcloud not found" in result.stderr


def test_unauthenticated_gcloud_is_explained(fake: FakeSecretManager, tmp_path: Path) -> None:
    env = keys_env(fake, tmp_path)
    del env["CLOUDSDK_AUTH_ACCESS_TOKEN_FILE"]
    result = run_keys(env, "list")
    assert result.code == 1
    assert "not authenticated" in result.stderr
    assert "gcloud auth login" in result.stderr


def test_a_rejected_token_is_explained(tmp_path: Path) -> None:
    with FakeSecretManager(require_token="the-right-token") as strict:
        strict.create_secret(SECRET)
        env = keys_env(strict, tmp_path)
        Path(env["CLOUDSDK_AUTH_ACCESS_TOKEN_FILE"]).write_text("a-stale-token")
        result = run_keys(env, "list")
    assert result.code == 1
    assert "not authenticated" in result.stderr


def test_a_broken_secret_manager_reply_fails_cleanly_without_writing(keys: Cli, fake: FakeSecretManager) -> None:
    seed(fake, "alice")
    # Not `down`: gcloud retries a 500 or a refused connection for about 30 s first.
    fake.garbage = True
    result = keys("issue", "bob")
    fake.garbage = False
    assert result.code == 1
    assert result.stderr.startswith("error: gcloud failed")
    assert result.stdout == ""
    assert [r["id"] for r in document(fake)] == ["alice"]


def test_project_and_secret_from_api_keys_secret_and_gcloud_config(fake: FakeSecretManager, tmp_path: Path) -> None:
    fake.create_secret("other-keys", project="other-project")
    env = keys_env(fake, tmp_path, API_KEYS_SECRET="projects/other-project/secrets/other-keys")
    run_keys(env, "issue", "alice").key  # noqa: B018 (asserts the key line)
    assert json.loads(fake.latest_data("other-keys", project="other-project"))[0]["id"] == "alice"
    # No GOOGLE_CLOUD_PROJECT: gcloud's own configuration names the project.
    env = keys_env(fake, tmp_path)
    del env["GOOGLE_CLOUD_PROJECT"]
    run_keys(env, "issue", "bob").key  # noqa: B018
    assert [r["id"] for r in document(fake)] == ["bob"]


def test_keep_versions_disables_older_versions(keys: Cli, fake: FakeSecretManager) -> None:
    for count in range(1, 4):
        seed(fake, *"abc"[:count])
    keys.ok("issue", "d", "--keep-versions", "2")
    assert [v.state for v in fake.versions(SECRET)] == ["DISABLED", "DISABLED", "ENABLED", "ENABLED"]
    assert [r["id"] for r in document(fake)] == ["a", "b", "c", "d"]


def test_two_writers_racing_one_is_told_to_retry(keys: Cli, fake: FakeSecretManager) -> None:
    seed(fake, "alice")
    results: list[Run] = []

    def second_writer(method: str, path: str) -> None:
        # Runs once, right after the first writer read the document and before it
        # receives that read: the second writer completes a whole change meanwhile.
        if path.endswith(":access") and not results:
            results.append(Run(-1, "", ""))
            results.append(keys("issue", "bob"))

    fake.before_reply = second_writer
    first = keys("issue", "carol")
    fake.before_reply = None
    second = results[1]
    assert second.code == 0, second.stderr
    assert first.code == 3
    assert "secret changed concurrently" in first.stderr
    assert "re-run" in first.stderr
    assert first.stdout == ""
    assert [r["id"] for r in document(fake)] == ["alice", "bob"]  # the winner's change survives
    keys.ok("issue", "carol")  # and the retry succeeds on top of it
    assert [r["id"] for r in document(fake)] == ["alice", "bob", "carol"]


def test_a_writer_slipping_in_after_the_check_is_reported(keys: Cli, fake: FakeSecretManager) -> None:
    seed(fake, "alice")
    results: list[Run] = []

    def late_writer(method: str, path: str) -> None:
        # The pre-write check (describe latest) answers "unchanged", then bob lands.
        if method == "GET" and path.endswith("/versions/latest") and not results:
            results.append(Run(-1, "", ""))
            results.append(keys("issue", "bob"))

    fake.before_reply = late_writer
    first = keys("issue", "carol")
    fake.before_reply = None
    assert results[1].code == 0, results[1].stderr
    assert first.code == 3
    assert "another writer added version(s) 2..2" in first.stderr
    first.key  # noqa: B018 (the written key is live, so it is still shown once)
    assert [r["id"] for r in document(fake)] == ["alice", "carol"]


def test_documents_whose_base64_differs_between_alphabets_are_read(keys: Cli, fake: FakeSecretManager) -> None:
    # gcloud prints payload.data URL-safe (`-`, `_`); these fields make the standard alphabet's `+` and `/`
    # appear, so a decoder of the wrong alphabet fails on them.
    note = "why? >>> ~~~ ünïcödé ???"
    fake.add_version(SECRET, json.dumps([{"id": "alice", "sha256": sha("alice"), "note": note}], ensure_ascii=False))
    standard = base64.b64encode(fake.latest_data(SECRET)).decode()
    assert "+" in standard or "/" in standard, "the fixture must exercise the alphabet difference"
    keys.ok("issue", "bob")
    records = {r["id"]: r for r in document(fake)}
    assert records["alice"]["note"] == note and "bob" in records


def test_issue_sets_limits_and_rotation_keeps_them(keys: Cli, fake: FakeSecretManager) -> None:
    keys.ok("issue", "alice", "--rpm", "60", "--max-concurrent", "2", "--allow-resources")
    [record] = document(fake)
    assert (record["rpm"], record["max_concurrent"], record["allow_resources"]) == (60, 2, True)
    keys.ok("issue", "bob")
    bob = document(fake)[1]
    assert not {"rpm", "max_concurrent", "allow_resources"} & set(bob)  # absent means the defaults
    keys.ok("rotate", "alice", "--grace", "1h")
    alice, _, grace = document(fake)
    for kept in (alice, grace):
        assert (kept["rpm"], kept["max_concurrent"], kept["allow_resources"]) == (60, 2, True), kept["id"]
    listed = {r["id"]: r for r in json.loads(keys.ok("list", "--json").stdout)}
    assert listed["alice"]["rpm"] == 60 and listed["alice"]["allow_resources"] is True
    assert "rpm" not in listed["bob"]
    header, *rows = keys.ok("list").stdout.splitlines()
    assert header.split()[-1] == "LIMITS"
    assert rows[0].split()[-1] == "rpm=60,max_concurrent=2,allow_resources"
    assert rows[1].split()[-1] == "-"


def test_set_changes_and_removes_limits_on_a_key_and_its_grace_records(keys: Cli, fake: FakeSecretManager) -> None:
    keys.ok("issue", "alice", "--rpm", "10")
    keys.ok("rotate", "alice", "--grace", "1h")
    keys.ok("set", "alice", "--max-concurrent", "3", "--allow-resources")
    for record in document(fake):
        assert (record["rpm"], record["max_concurrent"], record["allow_resources"]) == (10, 3, True)
    keys.ok("set", "alice", "--rpm", "none", "--no-allow-resources")
    for record in document(fake):
        assert "rpm" not in record and "allow_resources" not in record and record["max_concurrent"] == 3
    versions = len(fake.versions(SECRET))
    same = keys.ok("set", "alice", "--max-concurrent", "3")
    assert "nothing to write" in same.stderr and len(fake.versions(SECRET)) == versions
    assert keys("set", "alice").code == 1
    assert keys("set", "nobody", "--rpm", "5").code == 1
    for bad in (("--rpm", "0"), ("--rpm", "1.5"), ("--max-concurrent", "-1"), ("--rpm", "1000001")):
        assert keys("set", "alice", *bad).code == 2, bad
        assert keys("issue", "carol", *bad).code == 2, bad
    assert len(fake.versions(SECRET)) == versions


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("rpm", 0),
        ("rpm", 1.5),
        ("rpm", "60"),
        ("rpm", True),
        ("max_concurrent", -1),
        ("max_concurrent", 1_000_001),
        ("allow_resources", "yes"),
        ("allow_resources", 1),
    ],
)
def test_a_bad_limit_is_refused_by_the_tool_as_the_gateway_skips_it(
    field: str, value: Any, keys: Cli, fake: FakeSecretManager
) -> None:
    entry = {"id": "bob", "sha256": sha("bob"), "enabled": True, field: value}
    # The gateway skips the entry (and keeps the rest)...
    records, problems = parse_key_document(json.dumps([entry, {"id": "ok", "sha256": "a" * 64}]))
    assert [r.id for r in records.values()] == ["ok"] and field in problems[0]
    # ...and the tool writes nothing until it is fixed.
    fake.add_version(SECRET, json.dumps([entry]))
    result = keys("issue", "alice")
    assert result.code == 1
    assert f"entry #0 (id 'bob'): \"{field}\"" in result.stderr
    assert len(fake.versions(SECRET)) == 1


def test_good_limits_written_by_hand_are_kept_by_every_write(keys: Cli, fake: FakeSecretManager) -> None:
    seed(fake, "bob", rpm=1, max_concurrent=1_000_000, allow_resources=False)
    keys.ok("issue", "alice")
    keys.ok("revoke", "alice")
    bob = document(fake)[0]
    assert (bob["rpm"], bob["max_concurrent"], bob["allow_resources"]) == (1, 1_000_000, False)


# -- global options and the local key file (--file) ------------------------------------------

DEV_KEY_LINE = re.compile(r"sk_dev_[A-Za-z0-9_-]{43,}")


def test_global_options_come_before_or_after_the_command(fake: FakeSecretManager, tmp_path: Path) -> None:
    fake.create_secret(SECRET, project="named-project")
    env = keys_env(fake, tmp_path)
    del env["GOOGLE_CLOUD_PROJECT"]
    env["CLOUDSDK_CORE_PROJECT"] = ""  # only the flag names the project
    before = run_keys(env, "--project", "named-project", "issue", "alice")
    after = run_keys(env, "issue", "bob", "--project", "named-project", "--secret", SECRET)
    assert before.code == after.code == 0, before.stderr + after.stderr
    ids = [r["id"] for r in json.loads(fake.latest_data(SECRET, project="named-project"))]
    assert ids == ["alice", "bob"]
    listed = run_keys(env, "list", "--json", "--project=named-project")
    assert [r["id"] for r in json.loads(listed.stdout)] == ["alice", "bob"]


def test_no_project_names_the_project_flag(fake: FakeSecretManager, tmp_path: Path) -> None:
    env = keys_env(fake, tmp_path)
    del env["GOOGLE_CLOUD_PROJECT"]
    env["CLOUDSDK_CORE_PROJECT"] = ""
    result = run_keys(env, "list")
    assert result.code == 1
    assert "no project" in result.stderr and "--project" in result.stderr and "--file" in result.stderr
    assert fake.requests == []


def file_env(home: Path) -> dict[str, str]:
    # No gcloud configuration and no project at all: --file needs neither.
    return {"PATH": os.environ["PATH"], "HOME": str(home), "LANG": "C.UTF-8", "CLOUDSDK_CONFIG": str(home / "nope")}


def file_stamp(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_mtime_ns, stat.st_size


def test_file_mode_manages_the_local_key_file_the_gateway_reads(tmp_path: Path) -> None:
    from app.key_ring import KeyRing
    from app.key_sources import FileSource

    path = tmp_path / ".local" / "keys.json"
    env = file_env(tmp_path)
    # As scripts/dev-run leaves it: one plaintext dev key.
    path.parent.mkdir()
    path.write_text(json.dumps([{"id": "dev", "key": "sk_dev_" + "d" * 43, "enabled": True}]))
    path.chmod(0o600)
    source = FileSource(str(path))
    assert source.fetch() is not None

    issued = run_keys(env, "--file", str(path), "issue", "alice", "--models", "flash", "--expires", "1h")
    assert issued.code == 0, issued.stderr
    alice = issued.stdout.splitlines()[-1]
    assert DEV_KEY_LINE.fullmatch(alice) and issued.stdout == alice + "\n"
    assert str(path) in issued.stderr and "API_KEYS_FILE" in issued.stderr
    assert path.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["keys.json"]  # no temporary file left behind
    doc = json.loads(path.read_text())
    # The dev key stays first and in plaintext: scripts/dev-run prints it from there.
    assert doc[0] == {"id": "dev", "key": "sk_dev_" + "d" * 43, "enabled": True}
    assert doc[1]["sha256"] == sha(alice) and "key" not in doc[1] and alice not in path.read_text()

    # The gateway's file source sees the change and its ring takes the new key with its limits.
    fetched = source.fetch()
    assert fetched is not None
    ring = KeyRing()
    assert ring.load_document(fetched[0]) == []
    record = ring.lookup(alice)
    assert record is not None and record.models == frozenset({"flash"}) and record.expires is not None

    stamp = file_stamp(path)
    set_limits = run_keys(env, "set", "alice", "--rpm", "5", "--file", str(path))
    assert set_limits.code == 0, set_limits.stderr
    assert file_stamp(path) != stamp and source.fetch() is not None
    listed = run_keys(env, "list", "--json", "--file", str(path))
    assert [(r["id"], r.get("rpm")) for r in json.loads(listed.stdout)] == [("dev", None), ("alice", 5)]

    rotated = run_keys(env, "--file", str(path), "rotate", "dev", "--grace", "1h")
    assert rotated.code == 0, rotated.stderr
    new_dev = rotated.stdout.splitlines()[-1]
    doc = json.loads(path.read_text())
    assert doc[0]["id"] == "dev" and doc[0]["key"] == new_dev and "sha256" not in doc[0]
    assert doc[-1]["grace_for"] == "dev" and doc[-1]["sha256"] == sha("sk_dev_" + "d" * 43)

    assert run_keys(env, "--file", str(path), "revoke", "alice").code == 0
    assert run_keys(env, "--file", str(path), "delete", "alice").code == 0
    records, problems = parse_key_document(path.read_bytes())
    assert problems == [] and sorted(r.id for r in records.values()) == ["dev", doc[-1]["id"]]
    assert path.stat().st_mode & 0o777 == 0o600


def test_file_mode_creates_the_file_and_refuses_what_the_gateway_would_skip(tmp_path: Path) -> None:
    env = file_env(tmp_path)
    path = tmp_path / "new" / "keys.json"
    first = run_keys(env, "issue", "carol", "--file", str(path))
    assert first.code == 0, first.stderr
    assert path.stat().st_mode & 0o777 == 0o600
    assert [r["id"] for r in json.loads(path.read_text())] == ["carol"]

    # A key under 8 characters: the gateway skips it, so the tool neither hashes nor keeps it.
    bad = [{"id": "ok", "sha256": "a" * 64}, {"id": "short", "key": "abc"}]
    path.write_text(json.dumps(bad))
    refused = run_keys(env, "--file", str(path), "issue", "dave")
    assert refused.code == 1
    assert "entry #1 (id 'short')" in refused.stderr and "at least 8 characters" in refused.stderr
    assert json.loads(path.read_text()) == bad
    # `list` shows what the gateway serves, and says what it skips.
    listed = run_keys(env, "--file", str(path), "list")
    assert listed.code == 0 and "ok" in listed.stdout and "short" not in listed.stdout
    assert "the gateway skips entry #1 (id 'short')" in listed.stderr


def test_file_mode_refuses_secret_manager_options(tmp_path: Path) -> None:
    env = file_env(tmp_path)
    path = tmp_path / "keys.json"
    for args, message in (
        (("--file", str(path), "--project", "p", "list"), "takes no --project or --secret"),
        (("issue", "erin", "--file", str(path), "--keep-versions", "2"), "--keep-versions"),
    ):
        result = run_keys(env, *args)
        assert result.code == 1 and message in result.stderr, result.stderr
    assert not path.exists()


def test_file_mode_a_concurrent_change_is_a_conflict(tmp_path: Path) -> None:
    from tests.test_key_schema_contract import keys_tool

    tool = keys_tool()
    path = tmp_path / "keys.json"
    path.write_text(json.dumps([{"id": "ok", "sha256": "a" * 64}]))
    session = tool.FileStore(str(path)).session()
    path.write_text(json.dumps([{"id": "other", "sha256": "b" * 64}]))  # someone else, meanwhile
    with pytest.raises(tool.KeysError) as raised:
        session.write([*session.records, {"id": "new", "sha256": "c" * 64}], None)
    assert raised.value.code == 3 and "nothing was written" in str(raised.value)
    assert [r["id"] for r in json.loads(path.read_text())] == ["other"]
