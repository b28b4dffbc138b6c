"""deploy.sh against fake gcloud/terraform/git/curl that record every call."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHA = "0123456789ab"
PROJECT = "demo-project-1"
REGION = "us-central1"
IMAGE = f"{REGION}-docker.pkg.dev/{PROJECT}/llm-gateway/llm-gateway:{SHA}"
URL = "https://llm-gateway-123456789.us-central1.run.app"

# One script stands in for all four tools; it knows which one it is by its name.
# Behaviour knobs come from FAKE_* variables; every call is appended to FAKE_LOG.
FAKE = r"""
import json, os, sys
from pathlib import Path

tool = Path(sys.argv[0]).name
args = sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps([tool, *args]) + "\n")
env = os.environ.get

def counter(name):
    path = Path(env("FAKE_LOG") + "." + name)
    n = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(n))
    return n

if tool == "git":
    if args[2:4] == ["rev-parse", "--short=12"]:
        print(env("FAKE_SHA"))
    elif args[2:3] == ["status"]:
        print(env("FAKE_GIT_STATUS", ""), end="")
elif tool == "terraform":
    sub = args[1:]
    if sub[:1] == ["state"]:
        print(env("FAKE_TF_STATE", ""), end="")
    elif sub[:2] == ["output", "-raw"]:
        if env("FAKE_NO_STATE"):  # what terraform really does: a warning on stdout, exit 0
            print("Warning: No outputs found\n\nThe state file either has no outputs defined")
        else:
            print(env("FAKE_URL") if sub[2] == "service_url" else "", end="")
elif tool == "gcloud":
    line = " ".join(args)
    if line.startswith("config get-value project"):
        print(env("FAKE_CONFIG_PROJECT", ""))
    elif line.startswith("artifacts repositories describe"):
        sys.exit(1 if env("FAKE_REPO_MISSING") else 0)
    elif line.startswith("artifacts docker images describe"):
        sys.exit(0 if env("FAKE_IMAGE_EXISTS") else 1)
    elif line.startswith("secrets versions list"):
        if not env("FAKE_NO_KEY"):
            print("projects/p/secrets/s/versions/1")
    elif line.startswith("run services describe"):
        if "status.url" in line:
            print(env("FAKE_URL"))
        else:
            ready_after = int(env("FAKE_READY_AFTER", "1"))
            ready = "rev-2" if 0 < ready_after <= counter("describe") else "rev-1"
            print(f"rev-2\t{ready}")
elif tool == "curl":
    if counter("curl") <= int(env("FAKE_CURL_FAILURES", "0")):
        sys.exit(22)
    print('{"ok": true}')
"""


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str
    calls: list[list[str]]

    def find(self, *prefix: str) -> list[list[str]]:
        return [c for c in self.calls if c[: len(prefix)] == list(prefix)]

    def tf(self, sub: str) -> list[list[str]]:
        return [c for c in self.calls if c[0] == "terraform" and c[2:3] == [sub]]

    def index(self, call: list[str]) -> int:
        return self.calls.index(call)


@pytest.fixture
def deploy(tmp_path: Path):
    # A copy of the script in a scratch root, so a developer's own infra/terraform.tfvars
    # or infra/.terraform never leaks into the test.
    root = tmp_path / "repo"
    (root / "infra").mkdir(parents=True)
    shutil.copy2(ROOT / "deploy.sh", root / "deploy.sh")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "fake.py"
    script.write_text(f"#!{sys.executable}\n{FAKE}")
    script.chmod(0o755)
    for tool in ("gcloud", "terraform", "git", "curl"):
        (bin_dir / tool).symlink_to(script)
    log = tmp_path / "calls.jsonl"

    def run(*args: str, **knobs: str) -> Result:
        log.write_text("")
        env = {
            "PATH": f"{bin_dir}:/usr/bin:/bin",
            "HOME": str(tmp_path),
            "FAKE_LOG": str(log),
            "FAKE_SHA": SHA,
            "FAKE_URL": URL,
            "DEPLOY_POLL_SECONDS": "0",
            **{f"FAKE_{k.upper()}": v for k, v in knobs.items()},
        }
        proc = subprocess.run(
            ["bash", str(root / "deploy.sh"), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        calls = [json.loads(line) for line in log.read_text().splitlines()]
        return Result(proc.returncode, proc.stdout, proc.stderr, calls)

    run.root = root  # type: ignore[attr-defined]
    return run


FLAGS = ("--project", PROJECT, "--region", REGION)


def test_full_deploy_builds_applies_waits_smokes_and_prints_url(deploy) -> None:
    r = deploy(*FLAGS, repo_missing="1", ready_after="3")
    assert r.code == 0, r.stderr
    assert r.stdout == URL + "\n"  # the URL, and nothing else, on stdout

    root = str(deploy.root)
    enable = r.find("gcloud", "services", "enable")
    assert len(enable) == 1 and "cloudbuild.googleapis.com" in enable[0]
    create = r.find("gcloud", "artifacts", "repositories", "create")
    assert create and create[0][4] == "llm-gateway" and "docker" in create[0]
    build = ["gcloud", "builds", "submit", root, "--tag", IMAGE, "--project", PROJECT]
    assert r.find(*build)
    applies = r.tf("apply")
    assert len(applies) == 1
    apply = applies[0]
    assert f"image={IMAGE}" in apply and "-auto-approve" in apply
    assert f"project_id={PROJECT}" in apply and f"region={REGION}" in apply
    assert not any(a.startswith("-target") for a in apply)
    imports = r.tf("import")
    assert imports and imports[0][-1] == (f"projects/{PROJECT}/locations/{REGION}/repositories/llm-gateway")

    waits = r.find("gcloud", "run", "services", "describe", "llm-gateway")
    assert len(waits) == 3  # polled until the created revision is the ready one
    curls = r.find("curl")
    assert len(curls) == 1 and curls[0][-1] == f"{URL}/healthz"

    order = [
        r.index(create[0]),
        r.index(r.find(*build)[0]),
        r.index(r.tf("init")[0]),
        r.index(imports[0]),
        r.index(apply),
        r.index(waits[-1]),
        r.index(curls[0]),
    ]
    assert order == sorted(order)


def test_rerun_reuses_registry_state_and_built_image(deploy) -> None:
    r = deploy(
        *FLAGS,
        image_exists="1",
        tf_state="google_artifact_registry_repository.images\n",
    )
    assert r.code == 0, r.stderr
    assert not r.find("gcloud", "artifacts", "repositories", "create")
    assert not r.find("gcloud", "builds", "submit")
    assert not r.tf("import")
    assert f"image={IMAGE}" in r.tf("apply")[0]
    assert r.stdout.splitlines()[-1] == URL


def test_dry_run_prints_commands_and_runs_none(deploy) -> None:
    r = deploy(*FLAGS, "--dry-run", repo_missing="1")
    assert r.code == 0, r.stderr
    assert r.stdout.splitlines()[-1] == URL
    # Only read-only look-ups ran.
    assert not r.find("gcloud", "builds")
    assert not r.find("gcloud", "services", "enable")
    assert not r.find("gcloud", "artifacts", "repositories", "create")
    assert not [c for c in r.calls if c[0] == "terraform" and c[2] not in ("state", "output")]
    assert not r.find("curl")
    printed = [line for line in r.stderr.splitlines() if line.startswith("would run")]
    build = [p for p in printed if "builds submit" in p]
    assert build and f"--tag {IMAGE}" in build[0]
    apply = [p for p in printed if " apply " in p]
    assert len(apply) == 1 and f"image={IMAGE}" in apply[0]
    assert any(f"{URL}/healthz" in p for p in printed)
    assert any("services describe" in p for p in printed)


def test_plan_shows_plan_and_changes_nothing(deploy) -> None:
    r = deploy(*FLAGS, "--plan")
    assert r.code == 0, r.stderr
    plans = r.tf("plan")
    assert len(plans) == 1 and f"image={IMAGE}" in plans[0]
    assert r.tf("init")
    assert not r.tf("apply") and not r.tf("import")
    assert not r.find("gcloud", "builds") and not r.find("gcloud", "services")
    assert not r.find("curl")
    assert r.stdout == ""


def test_image_flag_deploys_existing_image_without_building(deploy) -> None:
    old = f"{REGION}-docker.pkg.dev/{PROJECT}/llm-gateway/llm-gateway:fedcba987654"
    # A dirty tree does not matter for a rollback: nothing is built from it.
    r = deploy(*FLAGS, "--image", old, git_status=" M app/main.py\n")
    assert r.code == 0, r.stderr
    assert not r.find("gcloud", "builds")
    assert not r.find("git")
    assert f"image={old}" in r.tf("apply")[0]
    assert r.stdout.splitlines()[-1] == URL


def test_dirty_tree_is_refused(deploy) -> None:
    r = deploy(*FLAGS, git_status=" M app/main.py\n")
    assert r.code != 0
    assert "--allow-dirty" in r.stderr
    assert not r.find("gcloud", "builds") and not r.tf("apply")
    assert r.stdout == ""


def test_allow_dirty_builds_a_distinct_tag(deploy) -> None:
    r = deploy(*FLAGS, "--allow-dirty", git_status="?? notes.txt\n")
    assert r.code == 0, r.stderr
    tag = r.find("gcloud", "builds", "submit")[0][5]
    assert tag.startswith(f"{IMAGE}-dirty-")
    assert f"image={tag}" in r.tf("apply")[0]


def test_first_deploy_without_a_key_creates_the_secret_and_stops(deploy) -> None:
    r = deploy(*FLAGS, no_key="1")
    assert r.code != 0
    applies = r.tf("apply")
    assert len(applies) == 1
    assert "-target=google_secret_manager_secret_iam_member.runtime_keys" in applies[0]
    assert "scripts/keys" in r.stderr and "llm-gateway-keys" in r.stderr
    assert not r.find("curl") and r.stdout == ""


def test_revision_never_ready_fails_without_url(deploy) -> None:
    r = deploy(*FLAGS, ready_after="0")
    assert r.code != 0
    assert "not ready" in r.stderr
    assert not r.find("curl") and r.stdout == ""


def test_failed_smoke_test_fails_after_bounded_retries(deploy) -> None:
    r = deploy(*FLAGS, curl_failures="1000")
    assert r.code != 0
    assert len(r.find("curl")) == 10
    assert r.stdout == ""


def test_smoke_test_retries_until_healthy(deploy) -> None:
    r = deploy(*FLAGS, curl_failures="2")
    assert r.code == 0, r.stderr
    assert len(r.find("curl")) == 3
    assert r.stdout.splitlines()[-1] == URL


def test_tfvars_supplies_project_region_and_names(deploy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tfvars = tmp_path / "prod.tfvars"
    tfvars.write_text(
        'project_id = "tfvars-project"\n'
        'region     = "europe-west1" # EU\n'
        'service_name = "gw"\n'
        'artifact_repository_id = "images"\n'
    )
    monkeypatch.chdir(tmp_path)  # a relative --tfvars must survive terraform -chdir
    r = deploy("--tfvars", "prod.tfvars")
    assert r.code == 0, r.stderr
    image = "europe-west1-docker.pkg.dev/tfvars-project/images/llm-gateway:" + SHA
    apply = r.tf("apply")[0]
    assert f"image={image}" in apply and f"-var-file={tfvars}" in apply
    assert "project_id=tfvars-project" in apply
    assert r.find("gcloud", "run", "services", "describe", "gw")


def test_project_falls_back_to_gcloud_config(deploy) -> None:
    r = deploy("--region", REGION, config_project=PROJECT)
    assert r.code == 0, r.stderr
    assert f"project_id={PROJECT}" in r.tf("apply")[0]


def test_missing_project_is_an_error(deploy) -> None:
    r = deploy("--region", REGION)
    assert r.code != 0 and "--project" in r.stderr
    assert not r.tf("apply")


@pytest.mark.parametrize("args", [["--bogus"], ["--project"], ["--image", "--plan"]])
def test_bad_arguments_fail_with_usage(deploy, args: list[str]) -> None:
    r = deploy(*args)
    assert r.code != 0 and r.calls == []
    assert "error" in r.stderr


def test_help(deploy) -> None:
    r = deploy("-h")
    assert r.code == 0 and "--dry-run" in r.stdout and "--image" in r.stdout
    assert r.calls == []


def test_dry_run_before_first_deploy_prints_a_placeholder_url(deploy) -> None:
    r = deploy(*FLAGS, "--dry-run", no_state="1")
    assert r.code == 0, r.stderr
    assert r.stdout == f"https://llm-gateway-PROJECT_NUMBER.{REGION}.run.app\n"
    assert "Warning" not in "".join(c for c in r.stderr.splitlines() if "curl" in c)


def test_missing_outputs_after_apply_fail_the_deploy(deploy) -> None:
    r = deploy(*FLAGS, no_state="1")
    assert r.code != 0 and "service_url" in r.stderr
    assert not r.find("curl") and r.stdout == ""
