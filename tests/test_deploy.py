"""deploy.sh against fake gcloud/terraform/git/curl that record every call.

Where the platform's behaviour is the point, the fakes are backed by the real thing: the smoke
check runs real curl over TLS through a fake of Cloud Run's front end to a real gateway, the
argument order is replayed against the real terraform binary, and the taint mark the fake
terraform reports is what the real `terraform show -json` prints for a tainted resource.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fakes.frontend import FakeFrontend, self_signed_tls
from tests.harness import Gateway

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
    elif sub[:2] == ["show", "-json"]:
        print(env("FAKE_TF_SHOW", '{"format_version":"1.0"}'))
    elif sub[:2] == ["output", "-raw"]:
        if env("FAKE_NO_STATE"):  # what terraform really does: a warning on stdout, exit 0
            print("Warning: No outputs found\n\nThe state file either has no outputs defined")
        else:
            outputs = {"service_url": env("FAKE_URL"), "dashboard_url": env("FAKE_DASHBOARD_URL", "")}
            print(outputs.get(sub[2], ""), end="")
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
    if env("FAKE_REAL_CURL"):  # the real curl, with deploy.sh's own arguments
        os.execv(env("FAKE_REAL_CURL"), ["curl", *args])
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

    def run(*args: str, env: dict[str, str] | None = None, **knobs: str) -> Result:
        log.write_text("")
        env = {
            "PATH": f"{bin_dir}:/usr/bin:/bin",
            "HOME": str(tmp_path),
            "FAKE_LOG": str(log),
            "FAKE_SHA": SHA,
            "FAKE_URL": URL,
            "DEPLOY_POLL_SECONDS": "0",
            **{f"FAKE_{k.upper()}": v for k, v in knobs.items()},
            **(env or {}),
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
    assert len(curls) == 1 and curls[0][-1] == f"{URL}/health"

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
    assert not [c for c in r.calls if c[0] == "terraform" and c[2] not in ("state", "output", "show")]
    assert not r.find("curl")
    printed = [line for line in r.stderr.splitlines() if line.startswith("would run")]
    build = [p for p in printed if "builds submit" in p]
    assert build and f"--tag {IMAGE}" in build[0]
    apply = [p for p in printed if " apply " in p]
    assert len(apply) == 1 and f"image={IMAGE}" in apply[0]
    assert any(p.endswith(f" {URL}/health") for p in printed)
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


DASHBOARD = f"https://console.cloud.google.com/monitoring/dashboards/builder/0f1e2d3c-4b5a?project={PROJECT}"


def test_dashboard_url_is_said_on_stderr_at_the_end_and_stdout_stays_the_url(deploy) -> None:
    r = deploy(*FLAGS, dashboard_url=DASHBOARD)
    assert r.code == 0, r.stderr
    assert r.stdout == URL + "\n"  # stdout is still only the service URL
    assert r.stderr.splitlines()[-1] == f"deploy: dashboard {DASHBOARD}"
    # Read once, after the revision passed its smoke check.
    (read,) = [c for c in r.tf("output") if c[-1] == "dashboard_url"]
    assert r.index(read) > r.index(r.find("curl")[-1])


def test_no_dashboard_line_without_an_https_dashboard_output(deploy) -> None:
    # An older state without the output, or no state at all (terraform then prints a warning on stdout).
    r = deploy(*FLAGS)
    assert r.code == 0, r.stderr
    assert "deploy: dashboard" not in r.stderr and r.stdout == URL + "\n"
    r = deploy(*FLAGS, "--dry-run", no_state="1")
    assert r.code == 0, r.stderr
    assert not [line for line in r.stderr.splitlines() if line.startswith("deploy: dashboard")]


# -- the smoke check through Cloud Run's front end ------------------------------------


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, Path]:
    return self_signed_tls(tmp_path_factory.mktemp("frontend-tls"))


@pytest.fixture
def frontend(gateway: Gateway, tls: tuple[ssl.SSLContext, Path]) -> Iterator[FakeFrontend]:
    with FakeFrontend(gateway.url, tls=tls[0]) as fake:
        yield fake


def through_frontend(deploy, frontend: FakeFrontend, cert: Path, *args: str) -> Result:
    curl = shutil.which("curl")
    if not curl:
        pytest.fail("curl is not installed (deploy.sh needs it too)")
    # The service URL Terraform reports is the front end's; real curl trusts its certificate.
    return deploy(*FLAGS, *args, url=frontend.url, real_curl=curl, env={"CURL_CA_BUNDLE": str(cert)})


def test_front_end_fake_answers_reserved_paths_itself(gateway: Gateway, frontend: FakeFrontend, tls) -> None:
    context = ssl.create_default_context(cafile=str(tls[1]))

    def get(url: str) -> tuple[int, str, str]:
        try:
            with urllib.request.urlopen(url, timeout=10, context=context) as r:
                return r.status, r.headers.get("Content-Type", ""), r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.headers.get("Content-Type", ""), e.read().decode()

    for path in ("/healthz", "/_ah/health", "/eventlogs", "/v1/modelz", "/health%7A"):
        status, ctype, body = get(frontend.url + path)
        assert status == 404 and ctype.startswith("text/html"), path
        assert "That\u2019s an error." in body and "was not found on this server" in body
    assert frontend.refused == ["/healthz", "/_ah/health", "/eventlogs", "/v1/modelz", "/healthz"]
    assert frontend.forwarded == []
    # The gateway itself serves the alias; only the front end stands in the way.
    with urllib.request.urlopen(gateway.url + "/healthz", timeout=10) as r:
        assert r.status == 200

    status, ctype, body = get(frontend.url + "/health?probe=1")
    assert status == 200 and ctype.startswith("application/json") and json.loads(body)["ok"] is True
    status, _, body = get(frontend.url + "/v1/models")
    assert status == 401 and "missing_api_key" in body  # the gateway's own answer, passed through
    assert frontend.forwarded == ["/health", "/v1/models"]


def test_smoke_check_passes_through_cloud_runs_front_end(deploy, frontend: FakeFrontend, tls) -> None:
    r = through_frontend(deploy, frontend, tls[1])
    assert r.code == 0, r.stderr
    assert r.stdout == frontend.url + "\n"
    assert [c[-1] for c in r.find("curl")] == [f"{frontend.url}/health"]
    assert frontend.forwarded == ["/health"] and frontend.refused == []
    assert "health ok" in r.stderr


def test_a_healthz_smoke_check_fails_behind_the_front_end(deploy, frontend: FakeFrontend, tls) -> None:
    # deploy.sh as it was: the same check against /healthz never reaches the gateway.
    script = deploy.root / "deploy.sh"
    text = script.read_text()
    assert text.count('"$1/health"') == 1
    script.write_text(text.replace('"$1/health"', '"$1/healthz"'))
    r = through_frontend(deploy, frontend, tls[1])
    assert r.code != 0 and "did not answer 200" in r.stderr
    assert "404" in r.stderr  # curl -f names the front end's status
    assert len(r.find("curl")) == 10
    assert frontend.refused == ["/healthz"] * 10 and frontend.forwarded == []
    assert r.stdout == ""


# -- flags win over the tfvars file, with the real terraform binary ----------------------


def real_terraform() -> str:
    terraform = shutil.which("terraform")
    if not terraform:
        pytest.fail("terraform is not installed (README: needed for the infra tests)")
    return terraform


def terraform_env(home: Path) -> dict[str, str]:
    # Offline and quiet: no update check, no user CLI config.
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "CHECKPOINT_DISABLE": "1",
        "TF_IN_AUTOMATION": "1",
        "TF_CLI_CONFIG_FILE": os.devnull,
    }


def replay(call: list[str], module: Path) -> dict[str, str]:
    """Run a recorded `terraform apply` call's arguments with the real binary on `module`.

    The module holds infra/variables.tf (every variable, validated as in a real run) and outputs,
    no resources: a local-state apply needs no provider, so this runs offline.
    """
    assert call[:1] == ["terraform"] and call[1].startswith("-chdir=") and call[2] == "apply"
    args = [a for a in call[3:] if not a.startswith("-target")]
    proc = subprocess.run(
        [real_terraform(), f"-chdir={module}", "apply", *args],
        env=terraform_env(module),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = subprocess.run(
        [real_terraform(), f"-chdir={module}", "output", "-json"],
        env=terraform_env(module),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return {name: o["value"] for name, o in json.loads(out.stdout).items()}


def test_flags_win_over_the_tfvars_file_in_real_terraform(deploy, tmp_path: Path) -> None:
    tfvars = tmp_path / "prod.tfvars"
    tfvars.write_text('project_id = "tfvars-project"\nregion     = "europe-west1"\nmin_instances = 1\n')
    r = deploy("--tfvars", str(tfvars), *FLAGS)
    assert r.code == 0, r.stderr
    apply = r.tf("apply")[0]
    for call in r.tf("apply") + r.tf("import") + r.tf("plan"):
        assert call.index(f"-var-file={tfvars}") < call.index("-var"), call

    module = tmp_path / "module"
    module.mkdir()
    shutil.copy2(ROOT / "infra" / "variables.tf", module / "variables.tf")
    (module / "outputs.tf").write_text(
        "\n".join(f'output "{v}" {{\n  value = var.{v}\n}}' for v in ("project_id", "region", "image", "min_instances"))
    )
    got = replay(apply, module)
    # The image was built in the flag's region, and Terraform applies to that same region.
    assert got == {"project_id": PROJECT, "region": REGION, "image": IMAGE, "min_instances": 1}

    # The order matters: with the file last (deploy.sh before the fix), the file wins.
    i = apply.index(f"-var-file={tfvars}")
    old_order = apply[:i] + apply[i + 1 :] + [apply[i]]
    assert replay(old_order, module)["region"] == "europe-west1"


# -- a service whose create failed is tainted; deletion_protection refuses its replacement ----

SERVICE = "google_cloud_run_v2_service.gateway"


@pytest.fixture(scope="module")
def show_json(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """What the real `terraform show -json` prints for a state with a tainted resource.

    terraform_data is built into terraform (no provider download); the gateway's address is
    then put in place of terraform_data.gateway, the rest of the bytes left as terraform wrote them.
    """
    module = tmp_path_factory.mktemp("taint")
    (module / "main.tf").write_text(
        'resource "terraform_data" "gateway" {\n  input = "a"\n}\n\n'
        'resource "terraform_data" "other" {\n  input = "b"\n}\n'
    )

    def tf(*args: str) -> str:
        proc = subprocess.run(
            [real_terraform(), f"-chdir={module}", *args],
            env=terraform_env(module),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    def as_service(text: str) -> str:
        old = '"address":"terraform_data.gateway","mode":"managed","type":"terraform_data"'
        assert text.count(old) == 1, text
        return text.replace(old, f'"address":"{SERVICE}","mode":"managed","type":"google_cloud_run_v2_service"')

    tf("apply", "-auto-approve", "-input=false")
    shows = {"clean": as_service(tf("show", "-json"))}
    tf("taint", "terraform_data.other")
    shows["other"] = as_service(tf("show", "-json"))
    tf("untaint", "terraform_data.other")
    tf("taint", "terraform_data.gateway")
    shows["service"] = as_service(tf("show", "-json"))
    assert '"tainted":true' not in shows["clean"]
    for name in ("other", "service"):
        assert shows[name].count('"tainted":true') == 1
    return shows


def test_tainted_service_is_untainted_before_the_apply(deploy, show_json: dict[str, str]) -> None:
    r = deploy(*FLAGS, tf_show=show_json["service"])
    assert r.code == 0, r.stderr
    untaint = r.tf("untaint")
    assert len(untaint) == 1 and untaint[0][3:] == [SERVICE]
    assert r.index(untaint[0]) < r.index(r.tf("apply")[0])
    assert f"{SERVICE} is tainted" in r.stderr and "untainting" in r.stderr
    assert r.stdout.splitlines()[-1] == URL


@pytest.mark.parametrize("state", ["clean", "other"])
def test_untainted_service_is_left_alone(deploy, show_json: dict[str, str], state: str) -> None:
    # Terraform replaces another tainted resource itself; only the protected service needs help.
    r = deploy(*FLAGS, tf_show=show_json[state])
    assert r.code == 0, r.stderr
    assert not r.tf("untaint") and " is tainted" not in r.stderr


def test_plan_with_a_tainted_service_names_the_command_and_changes_nothing(deploy, show_json) -> None:
    r = deploy(*FLAGS, "--plan", tf_show=show_json["service"])
    assert r.code == 0, r.stderr
    assert not r.tf("untaint") and r.tf("plan")
    assert f"terraform -chdir=infra untaint {SERVICE}" in r.stderr


def test_dry_run_with_a_tainted_service_prints_the_untaint(deploy, show_json: dict[str, str]) -> None:
    r = deploy(*FLAGS, "--dry-run", tf_show=show_json["service"])
    assert r.code == 0, r.stderr
    assert not r.tf("untaint")
    assert any(line.startswith("would run") and line.endswith(f" untaint {SERVICE}") for line in r.stderr.splitlines())
