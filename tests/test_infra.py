"""infra/, Dockerfile and shell scripts: structure asserted offline, plus the linters.

Terraform providers cannot be downloaded here, so `terraform validate`/`plan` cannot run on
infra/ itself; these tests parse the HCL (python-hcl2) and assert what issue 3 asks of it.
Variables, their validations and the locals need no provider, though: copied into a scratch
module (with the one resource reference replaced by a literal), the real terraform binary
evaluates them offline.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import hcl2
import pytest

ROOT = Path(__file__).resolve().parent.parent
INFRA = ROOT / "infra"
VENV_BIN = Path(sys.executable).parent
SKIP_DIRS = {".git", ".terraform", "node_modules", "__pycache__", ".pytest_cache", ".ruff_cache"}

Body = dict[str, Any]

# Runs terraform, checkov, shellcheck and hadolint: `make test` only, not `make test-fast`.
pytestmark = pytest.mark.slow


def _clean(node: Any) -> Any:
    """hcl2 keeps HCL quotes on labels and string literals; drop them and its markers."""
    if isinstance(node, dict):
        return {_clean(k): _clean(v) for k, v in node.items() if k not in ("__is_block__", "__comments__")}
    if isinstance(node, list):
        return [_clean(v) for v in node]
    if isinstance(node, str) and len(node) >= 2 and node[0] == node[-1] == '"':
        return node[1:-1]
    return node


@cache
def documents() -> dict[str, Body]:
    parsed = {}
    for f in sorted(INFRA.glob("*.tf")):
        with f.open() as fh:
            parsed[f.name] = _clean(hcl2.load(fh))
    return parsed


def blocks(kind: str) -> list[tuple[str, Body]]:
    return [(f, b) for f, doc in documents().items() for b in doc.get(kind, [])]


@cache
def resources() -> dict[tuple[str, str], Body]:
    found: dict[tuple[str, str], Body] = {}
    for _, block in blocks("resource") + blocks("data"):
        for rtype, instances in block.items():
            for name, body in instances.items():
                assert (rtype, name) not in found, f"duplicate {rtype}.{name}"
                found[(rtype, name)] = body
    return found


def resource(rtype: str, name: str) -> Body:
    return resources()[(rtype, name)]


def one(body: Body, key: str) -> Body:
    value = body[key]
    assert isinstance(value, list) and len(value) == 1, f"{key}: expected one block"
    return value[0]


@cache
def variables() -> dict[str, Body]:
    return {name: body for _, b in blocks("variable") for name, body in b.items()}


@cache
def locals_() -> Body:
    merged: Body = {}
    for _, block in blocks("locals"):
        merged.update(block)
    return merged


def tool(name: str) -> str:
    path = VENV_BIN / name
    found = str(path) if path.exists() else shutil.which(name)
    if not found:
        pytest.fail(f"{name} not found: install requirements-dev.txt into the venv")
    return found


# -- layout and versions ----------------------------------------------------------


def test_one_file_per_entity_and_no_main_tf() -> None:
    names = set(documents())
    for expected in (
        "versions.tf",
        "variables.tf",
        "outputs.tf",
        "apis.tf",
        "iam.tf",
        "secrets.tf",
        "registry.tf",
        "service.tf",
        "domain.tf",
        "dns.tf",
    ):
        assert expected in names
    assert "main.tf" not in names
    assert (INFRA / "terraform.tfvars.example").is_file()
    assert 'backend "gcs"' in (INFRA / "backend.tf.example").read_text()


def test_terraform_and_provider_versions_are_bounded() -> None:
    (_, terraform), *rest = blocks("terraform")
    assert not rest
    assert terraform["required_version"].startswith(">= 1.")
    google = one(terraform, "required_providers")["google"]
    assert google == {"source": "hashicorp/google", "version": ">= 6.50, < 8"}


def test_for_each_never_count() -> None:
    for (rtype, name), body in resources().items():
        assert "count" not in body, f"{rtype}.{name} uses count; use for_each over a map or set"
    for f in INFRA.glob("*.tf"):
        assert not re.search(r"^\s*count\s*=", f.read_text(), re.M), f.name


# -- what the service needs ----------------------------------------------------------


def test_apis_enabled_and_kept_on_destroy() -> None:
    apis = resource("google_project_service", "enabled")
    assert apis["for_each"] == "${local.apis}"
    assert apis["disable_on_destroy"] is False
    expression = locals_()["apis"]
    for api in ("run", "aiplatform", "secretmanager", "artifactregistry", "cloudbuild", "iam", "logging"):
        assert f'"{api}.googleapis.com"' in expression
    # dns only when Terraform manages the record.
    assert re.search(r'var\.dns_managed_zone == "" \? \[\] : \["dns\.googleapis\.com"\]', expression)


def test_runtime_service_account_has_least_privilege() -> None:
    sa = resource("google_service_account", "runtime")
    assert sa["account_id"] == "${var.service_name}-run"
    project_roles = resource("google_project_iam_member", "runtime")
    assert project_roles["for_each"] == "${local.runtime_project_roles}"
    assert project_roles["member"] == "${google_service_account.runtime.member}"
    roles = set(re.findall(r'"(roles/[^"]+)"', locals_()["runtime_project_roles"]))
    assert roles == {"roles/aiplatform.user", "roles/logging.logWriter"}
    # Secret access on the one secret, never project-wide.
    for (rtype, _), body in resources().items():
        if rtype == "google_project_iam_member":
            assert "secretmanager" not in json.dumps(body)
    accessor = resource("google_secret_manager_secret_iam_member", "runtime_keys")
    assert accessor["role"] == "roles/secretmanager.secretAccessor"
    assert accessor["secret_id"] == "${google_secret_manager_secret.keys.secret_id}"
    assert accessor["member"] == "${google_service_account.runtime.member}"


def test_key_secret_has_auto_replication_and_no_versions_in_terraform() -> None:
    secret = resource("google_secret_manager_secret", "keys")
    assert secret["secret_id"] == "${var.keys_secret_id}"
    assert one(secret, "replication") == {"auto": [{}]}
    assert not [r for r in resources() if r[0].startswith("google_secret_manager_secret_version")]
    for f in INFRA.glob("*.tf"):
        assert "secret_data" not in f.read_text(), f"{f.name}: key material would land in state"


def test_registry_is_docker_with_cleanup_keeping_recent_images() -> None:
    repo = resource("google_artifact_registry_repository", "images")
    assert repo["format"] == "DOCKER"
    assert repo["repository_id"] == "${var.artifact_repository_id}"
    assert repo["cleanup_policy_dry_run"] is False
    policies = {p["action"]: p for p in repo["cleanup_policies"]}
    assert one(policies["KEEP"], "most_recent_versions")["keep_count"] == "${var.keep_image_count}"
    assert one(policies["DELETE"], "condition")["tag_state"] == "ANY"


def test_cloud_run_service_settings() -> None:
    svc = resource("google_cloud_run_v2_service", "gateway")
    assert svc["name"] == "${var.service_name}"
    assert svc["deletion_protection"] == "${var.deletion_protection}"
    assert svc["invoker_iam_disabled"] == "${!var.invoker_all_users}"
    template = one(svc, "template")
    assert template["service_account"] == "${google_service_account.runtime.email}"
    assert template["timeout"] == "${var.request_timeout_seconds}s"
    assert template["max_instance_request_concurrency"] == "${var.concurrency}"
    scaling = one(template, "scaling")
    assert scaling == {
        "min_instance_count": "${var.min_instances}",
        "max_instance_count": "${var.max_instances}",
    }
    container = one(template, "containers")
    assert container["image"] == "${var.image}"
    resources_ = one(container, "resources")
    assert resources_["cpu_idle"] is True and resources_["startup_cpu_boost"] is True
    # Not /healthz: Cloud Run's front end answers some paths ending in "z" itself (SPEC.md).
    for probe in ("startup_probe", "liveness_probe"):
        assert one(one(container, probe), "http_get")["path"] == "/health"


# -- variables and locals evaluated by the real terraform binary -----------------------

SECRET_ID = "projects/p-evaluated/secrets/s-evaluated"


def terraform_bin() -> str:
    found = shutil.which("terraform")
    if not found:
        pytest.fail("terraform is not installed (README: needed for the infra tests)")
    return found


def terraform_run(module: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(module),
        "CHECKPOINT_DISABLE": "1",  # offline: no version check
        "TF_IN_AUTOMATION": "1",
        "TF_CLI_CONFIG_FILE": os.devnull,
    }
    return subprocess.run(
        [terraform_bin(), f"-chdir={module}", *args], env=env, capture_output=True, text=True, timeout=60
    )


def scratch_module(folder: Path, with_locals: bool = False) -> Path:
    """infra/variables.tf (and locals.tf) in a module with no resources, so no provider.

    locals.tf refers to one resource, the key secret's id; it becomes a literal here.
    """
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy2(INFRA / "variables.tf", folder / "variables.tf")
    if with_locals:
        text = (INFRA / "locals.tf").read_text()
        assert text.count("google_secret_manager_secret.keys.id") == 1
        text = text.replace("google_secret_manager_secret.keys.id", json.dumps(SECRET_ID))
        assert not re.search(r"\b(google_\w+|data)\.\w+", text), "locals.tf refers to another resource"
        (folder / "locals.tf").write_text(text)
        (folder / "outputs.tf").write_text('output "service_env" {\n  value = local.service_env\n}\n')
    return folder


REQUIRED = ("-var", "project_id=my-project-123", "-var", "image=europe-west1-docker.pkg.dev/p/r/i:0123456789ab")


def service_env(folder: Path, *args: str) -> dict[str, str]:
    """local.service_env as terraform evaluates it for these -var arguments."""
    module = scratch_module(folder, with_locals=True)
    proc = terraform_run(module, "apply", "-auto-approve", "-input=false", *REQUIRED, *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = terraform_run(module, "output", "-json", "service_env")
    assert out.returncode == 0, out.stderr
    env: dict[str, str] = json.loads(out.stdout)
    return env


def test_service_environment(tmp_path: Path) -> None:
    svc = one(one(resource("google_cloud_run_v2_service", "gateway"), "template"), "containers")
    (dynamic,) = svc["dynamic"]
    assert dynamic["env"]["for_each"] == "${local.service_env}"
    # The default deploy: no MODEL_ALIASES, so the gateway's own default aliases apply.
    assert service_env(tmp_path / "default") == {
        "API_KEYS_SECRET": SECRET_ID,
        "GOOGLE_CLOUD_PROJECT": "my-project-123",
        "KEYS_REFRESH_SECONDS": "60",
        "VERTEX_LOCATION": "global",
        "WEB_CONCURRENCY": "1",
    }
    aliases = {"fast": "google/gemini-2.5-flash", "claude": "anthropic/claude-sonnet-4-6"}
    env = service_env(
        tmp_path / "set",
        "-var",
        "cpu=4",
        "-var",
        "memory=2Gi",
        "-var",
        f"model_aliases={json.dumps(aliases)}",
        "-var",
        "vertex_location=us-east5",
    )
    assert json.loads(env.pop("MODEL_ALIASES")) == aliases
    assert env["WEB_CONCURRENCY"] == "4"  # one gunicorn worker per vCPU
    assert env["VERTEX_LOCATION"] == "us-east5"
    assert "MODEL_PASSTHROUGH" not in env  # null: the gateway's own default patterns
    # MODEL_PASSTHROUGH: a list becomes the gateway's comma list; [] an empty value, which passes no id.
    patterns = ["claude-opus-*", "gemini-2.5-*"]
    env = service_env(tmp_path / "passthrough", "-var", f"model_passthrough={json.dumps(patterns)}")
    assert env["MODEL_PASSTHROUGH"] == "claude-opus-*,gemini-2.5-*"
    assert "MODEL_ALIASES" not in env
    assert service_env(tmp_path / "no-passthrough", "-var", "model_passthrough=[]")["MODEL_PASSTHROUGH"] == ""


CPU_MEMORY = [
    # (cpu, memory, accepted): Cloud Run's table, https://cloud.google.com/run/docs/configuring/services/cpu
    ("1", "512Mi", True),
    ("1", "4Gi", True),
    ("1", "4097Mi", False),
    ("2", "8Gi", True),
    ("2", "9Gi", False),
    ("4", "1Gi", False),
    ("4", "2047Mi", False),
    ("4", "2Gi", True),
    ("4", "2048Mi", True),
    ("4", "16Gi", True),
    ("4", "17Gi", False),
    ("6", "2Gi", False),
    ("6", "4Gi", True),
    ("6", "24Gi", True),
    ("8", "2Gi", False),
    ("8", "4Gi", True),
    ("8", "32Gi", True),
    ("8", "40Gi", False),
]


@pytest.mark.parametrize(("cpu", "memory", "accepted"), CPU_MEMORY)
def test_cpu_and_memory_are_validated_together(tmp_path: Path, cpu: str, memory: str, accepted: bool) -> None:
    module = scratch_module(tmp_path)
    proc = terraform_run(module, "plan", "-input=false", *REQUIRED, "-var", f"cpu={cpu}", "-var", f"memory={memory}")
    output = proc.stdout + proc.stderr
    if accepted:
        assert proc.returncode == 0, output
    else:
        assert proc.returncode != 0 and "memory does not fit cpu" in output, output


@pytest.mark.parametrize(("cpu", "memory", "message"), [("3", "2Gi", "cpu must be"), ("4", "lots", "memory must be")])
def test_a_malformed_cpu_or_memory_is_reported_by_its_own_rule(
    tmp_path: Path, cpu: str, memory: str, message: str
) -> None:
    proc = terraform_run(
        scratch_module(tmp_path), "plan", "-input=false", *REQUIRED, "-var", f"cpu={cpu}", "-var", f"memory={memory}"
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0 and message in output and "memory does not fit cpu" not in output, output


def test_all_users_invoker_only_as_opt_in() -> None:
    public = resource("google_cloud_run_v2_service_iam_member", "public")
    assert public["role"] == "roles/run.invoker"
    assert public["for_each"] == "${local.public_invokers}"
    assert locals_()["public_invokers"] == ('${var.invoker_all_users ? toset(["allUsers"]) : toset([])}')
    assert variables()["invoker_all_users"]["default"] is False


def test_domain_mapping_and_dns_record_are_optional() -> None:
    mapping = resource("google_cloud_run_domain_mapping", "gateway")
    assert mapping["for_each"] == "${local.domains}"
    assert one(mapping, "spec")["route_name"] == "${google_cloud_run_v2_service.gateway.name}"
    assert one(mapping, "metadata")["namespace"] == "${var.project_id}"
    assert locals_()["domains"].startswith('${var.domain == "" ? toset([])')
    record = resource("google_dns_record_set", "domain")
    assert record["for_each"] == "${local.managed_records}"
    assert record["type"] == "CNAME" and record["rrdatas"] == ["ghs.googlehosted.com."]
    assert 'var.dns_managed_zone != ""' in locals_()["managed_records"]


# -- variables and outputs -----------------------------------------------------------


def test_variables_sorted_described_typed_validated() -> None:
    names = [name for _, b in blocks("variable") for name in b]
    assert names == sorted(names)
    for name, body in variables().items():
        assert body.get("description", "").endswith("."), name
        assert "type" in body, name
        validations = body.get("validation", [])
        assert validations, f"{name} has no validation"
        for v in validations:
            assert len(v["error_message"]) > 30, f"{name}: say how to fix the input"


def test_variable_defaults() -> None:
    v = variables()
    assert v["keys_secret_id"]["default"] == "llm-gateway-keys"  # scripts/keys' default
    assert v["service_name"]["default"] == "llm-gateway"
    assert v["artifact_repository_id"]["default"] == "llm-gateway"
    assert v["deletion_protection"]["default"] is True
    assert v["concurrency"]["default"] > 80
    assert v["min_instances"]["default"] == 0
    assert v["request_timeout_seconds"]["default"] == 3600
    # Empty: MODEL_ALIASES stays unset and the gateway's DEFAULT_ALIASES apply (test_docs_agree.py).
    assert v["model_aliases"]["default"] == {}
    # Null: MODEL_PASSTHROUGH stays unset and the gateway's DEFAULT_PASSTHROUGH applies.
    assert v["model_passthrough"]["default"] is None
    assert "default" not in v["project_id"] and "default" not in v["image"]


def _pattern(name: str) -> re.Pattern[str]:
    conditions = " ".join(x["condition"] for x in variables()[name]["validation"])
    match = re.search(r'regex\("((?:[^"\\]|\\.)*)", var\.' + name + r"\)", conditions)
    assert match, f"{name}: no regex validation"
    return re.compile(json.loads(f'"{match.group(1)}"'))


@pytest.mark.parametrize(
    ("name", "good", "bad"),
    [
        ("project_id", ["my-project-123", "abcdef"], ["My_Project", "abc", "1project", "proj-"]),
        ("region", ["europe-west1", "us-central1", "northamerica-northeast2"], ["europe-west1-b", "global", "EU"]),
        (
            "image",
            [
                "europe-west1-docker.pkg.dev/p-1/llm-gateway/llm-gateway:0123456789ab",
                "europe-west1-docker.pkg.dev/p-1/r/i@sha256:" + "a" * 64,
                "localhost:5000/gw:latest-dirty-20250101",
            ],
            ["llm-gateway", "europe-west1-docker.pkg.dev/p/r/i", "https://x/y:z"],
        ),
        (
            "domain",
            ["llm.example.com", "a.b.co.uk"],
            ["https://llm.example.com", "llm.example.com.", "LLM.example.com"],
        ),
        ("service_name", ["llm-gateway", "gw1"], ["-gw", "gw-", "a" * 27, "Gateway"]),
        ("keys_secret_id", ["llm-gateway-keys", "k_1"], ["projects/p/secrets/s", "bad key"]),
        ("alert_email", ["oncall@example.com", "a.b+c@x.co.uk"], ["oncall", "a@b", "a b@c.d", "@example.com"]),
    ],
)
def test_validation_patterns(name: str, good: list[str], bad: list[str]) -> None:
    pattern = _pattern(name)
    for value in good:
        assert pattern.search(value), f"{name} should accept {value!r}"
    for value in bad:
        assert not pattern.search(value), f"{name} should reject {value!r}"


def test_outputs_sorted_and_complete() -> None:
    names = [name for _, b in blocks("output") for name in b]
    assert names == sorted(names)
    assert {
        "custom_domain_url",
        "domain_dns_records",
        "image_repository",
        "keys_secret_id",
        "service_account_email",
        "service_url",
    } <= set(names)
    for _, b in blocks("output"):
        for name, body in b.items():
            assert body.get("description"), name


# -- linters -----------------------------------------------------------------------


def test_infra_matches_the_google_provider_schema(tmp_path: Path) -> None:
    # Providers cannot be downloaded here, so `terraform validate` cannot run; this checks every google_*
    # resource, argument and nested block against the provider's schema from a pinned npm package.
    from tests.tools import tf_schema

    tf_schema.fetch()  # `make setup` has done it; a bare pytest on a fresh clone does it here
    schema = tf_schema.load_schema()
    pinned = tuple(int(n) for n in schema["provider_version"].split("."))
    assert (6, 50) <= pinned[:2] < (8,), "the lock must pin a provider that infra/versions.tf allows"
    checked, findings = tf_schema.check(INFRA, schema)
    assert findings == []
    assert checked == sum(1 for (rtype, _) in resources() if rtype.startswith("google")), (
        "every google_* block was checked"
    )

    # The checker itself: it does see a wrong type, a typo, a missing required argument and block.
    (tmp_path / "bad.tf").write_text(
        'resource "google_cloud_run_v2_service" "s" {\n  name = "x"\n  locaton = "y"\n}\n'
        'resource "google_secret_manager_secret_versions" "v" {}\n'
        'resource "google_secret_manager_secret" "k" {\n  secret_id = "k"\n'
        "  replication {\n    auto {}\n    bogus = 1\n  }\n}\n"
    )
    _, bad = tf_schema.check(tmp_path, schema)
    assert any("unknown argument or block 'locaton'" in f for f in bad), bad
    assert any("missing required argument 'location'" in f for f in bad), bad
    assert any("missing required block 'template'" in f for f in bad), bad
    assert any("unknown resource type" in f and "secret_versions" in f for f in bad), bad
    assert any("replication: unknown argument or block 'bogus'" in f for f in bad), bad


def test_terraform_fmt() -> None:
    terraform = shutil.which("terraform")
    if not terraform:
        pytest.skip("terraform is not installed")
    proc = subprocess.run(
        [terraform, "fmt", "-check", "-recursive", "-diff", "infra"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_checkov_has_no_failed_checks() -> None:
    checkov = os.environ.get("CHECKOV") or str(ROOT / ".venv-checkov" / "bin" / "checkov")
    if not Path(checkov).exists():
        # `make test` installs it; in CI a missing checkov is a failure, not a skip.
        assert not os.environ.get("CI"), f"checkov missing at {checkov} in CI"
        pytest.skip(f"checkov not at {checkov}: make .venv-checkov (requirements-checkov.txt)")
    proc = subprocess.run(
        [checkov, "-d", "infra", "--framework", "terraform", "--skip-download", "-o", "json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = json.loads(proc.stdout)
    summary = report["summary"]
    failed = [f"{c['check_id']} {c['resource']}: {c['check_name']}" for c in report["results"]["failed_checks"]]
    assert summary["failed"] == 0 and not failed, failed
    assert summary["parsing_errors"] == 0
    assert summary["passed"] > 0
    assert proc.returncode == 0
    # Every skip carries its reason inline in the .tf file.
    for skipped in report["results"]["skipped_checks"]:
        assert len(skipped["check_result"].get("suppress_comment", "")) > 20, skipped["check_id"]


def shell_scripts() -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS and not d.startswith(".venv")]
        for filename in filenames:
            path = Path(dirpath) / filename
            if filename.endswith(".sh"):
                found.append(path)
                continue
            try:
                with path.open("rb") as fh:
                    first = fh.readline(100)
            except OSError:
                continue
            if re.match(rb"#!\s*/(usr/)?bin/(env\s+)?(ba|da)?sh\b", first):
                found.append(path)
    return sorted(found)


def test_shell_scripts_are_shellcheck_clean() -> None:
    scripts = shell_scripts()
    assert ROOT / "deploy.sh" in scripts
    proc = subprocess.run(
        [tool("shellcheck"), "--severity=style", *map(str, scripts)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dockerfile_is_hadolint_clean() -> None:
    proc = subprocess.run([tool("hadolint"), "Dockerfile"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dockerfile_shape() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^USER\s+(?!root|0\b)\S+", text, re.M), "run as a non-root user"
    # Dependencies install before the app is copied, so code changes reuse that layer.
    assert text.index("requirements.txt") < text.index("COPY app")
    final_stage = text.rsplit("\nFROM ", 1)[1]
    assert "tests" not in final_stage and "pip install" not in final_stage
    # .dockerignore is an allow-list: everything out, then only what the image needs back in.
    rules = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and line[0] != "#"]
    assert rules[0] == "*"
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    assert allowed == {"app", "gunicorn.conf.py", "requirements.txt"}


def test_model_alias_validation_matches_the_gateway() -> None:
    from app.config import ALIAS_RE, VERTEX_ID_RE

    condition = variables()["model_aliases"]["validation"][0]["condition"]
    found = {
        target: json.loads(f'"{pattern}"')
        for pattern, target in re.findall(r'regex\("((?:[^"\\]|\\.)*)", (alias|model)\)', condition)
    }
    # Terraform rejects at plan time exactly what the gateway would refuse at start-up.
    assert found == {"alias": ALIAS_RE.pattern, "model": VERTEX_ID_RE.pattern}


def test_model_passthrough_validation_matches_the_gateway(tmp_path: Path) -> None:
    from app.config import PASSTHROUGH_PATTERN_RE, ConfigError, load_settings

    condition = variables()["model_passthrough"]["validation"][0]["condition"]
    (pattern,) = re.findall(r'regex\("((?:[^"\\]|\\.)*)", pattern\)', condition)
    assert json.loads(f'"{pattern}"') == PASSTHROUGH_PATTERN_RE.pattern
    # And terraform itself: what it refuses at plan time the gateway would refuse at start-up, and the reverse.
    module = scratch_module(tmp_path / "passthrough")
    for patterns, accepted in (
        (["claude-*", "gemini-2.5-*", "claude-[!h]*@2025*"], True),
        ([], True),
        (["gpt-*"], False),
        (["anthropic/claude-*"], False),
        (["claude-a b"], False),
        (["gemini-" + "x" * 122], False),
    ):
        proc = terraform_run(
            module, "plan", "-input=false", *REQUIRED, "-var", f"model_passthrough={json.dumps(patterns)}"
        )
        assert (proc.returncode == 0) is accepted, (patterns, proc.stdout + proc.stderr)
        try:
            load_settings({"MODEL_PASSTHROUGH": ",".join(patterns)})
        except ConfigError:
            assert not accepted, patterns
        else:
            assert accepted, patterns


# -- monitoring: log-based metrics, dashboard, alerts (issue 14) ------------------------------------------
# The metrics' filters and extractors are checked against real gateway lines in tests/test_usage.py.


def _expression(path: Path, pattern: str) -> str:
    match = re.search(pattern, path.read_text(), re.S)
    assert match, f"{path.name}: {pattern}"
    return match.group(1)


DASHBOARD_ID = "projects/123456789/dashboards/0f1e2d3c-4b5a-6789"


@cache
def monitoring_outputs(alert_email: str) -> dict[str, Any]:
    """The dashboard JSON, the alert policies' for_each and the dashboard_url output, as the real terraform
    evaluates the expressions in infra/ (copied verbatim; the dashboard's id becomes a literal)."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="tf-monitoring-"))
    module = scratch_module(folder, with_locals=True)
    shutil.copy2(INFRA / "dashboard.json.tftpl", module / "dashboard.json.tftpl")
    dashboard = _expression(INFRA / "dashboard.tf", r"dashboard_json = (templatefile\(.*?\n  \}\))")
    policies = _expression(
        INFRA / "alerts.tf", r'resource "google_monitoring_alert_policy" "gateway" \{\s*for_each = (.*?)\n'
    )
    url = _expression(INFRA / "outputs.tf", r'output "dashboard_url" \{.*?value += (.*?)\n')
    assert url.count("google_monitoring_dashboard.gateway.id") == 1
    url = url.replace("google_monitoring_dashboard.gateway.id", json.dumps(DASHBOARD_ID))
    (module / "outputs.tf").write_text(
        f'output "dashboard" {{\n  value = {dashboard}\n}}\n'
        f'output "policies" {{\n  value = {policies}\n}}\n'
        f'output "dashboard_url" {{\n  value = {url}\n}}\n'
        'output "channels" {\n  value = local.alert_emails\n}\n'
    )
    proc = terraform_run(
        module, "apply", "-auto-approve", "-input=false", *REQUIRED, "-var", f"alert_email={alert_email}"
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = terraform_run(module, "output", "-json")
    assert out.returncode == 0, out.stderr
    values: dict[str, Any] = {name: o["value"] for name, o in json.loads(out.stdout).items()}
    values["dashboard"] = json.loads(values["dashboard"])
    shutil.rmtree(folder, ignore_errors=True)
    return values


def _metric_value_types() -> dict[str, str]:
    from tests.test_usage import metrics

    return {name: metric.value_type for name, metric in metrics().items()}


_PROMQL_METRIC = re.compile(r"\b(logging_googleapis_com:user_llm_gateway_|run_googleapis_com:)(\w+)\{")
# Cloud Run's own metrics: instance count (a gauge), CPU and memory utilizations (distributions).
RUN_METRICS = {"container_instance_count", "container_cpu_utilizations_bucket", "container_memory_utilizations_bucket"}


def _check_promql(query: str, value_types: dict[str, str]) -> None:
    found = _PROMQL_METRIC.findall(query)
    assert found, query
    for prefix, name in found:
        if prefix.startswith("run_"):
            assert name in RUN_METRICS, query
            continue
        assert 'monitored_resource="cloud_run_revision"' in query, "log-based metrics map to several resources"
        if name in value_types:
            assert value_types[name] != "DISTRIBUTION", f"a distribution is read as _bucket, _sum or _count: {query}"
            continue
        # A distribution is queried as a histogram: NAME_bucket, NAME_sum, NAME_count.
        base, _, suffix = name.rpartition("_")
        assert suffix in ("bucket", "sum", "count") and value_types.get(base) == "DISTRIBUTION", (
            f"{name}: no such log-based metric ({query})"
        )


def test_dashboard_is_one_page_of_the_issues_tiles() -> None:
    board = monitoring_outputs("")["dashboard"]
    assert board["displayName"].startswith("llm-gateway: ")
    layout = board["mosaicLayout"]
    columns = layout["columns"]
    assert columns == 48
    cells: set[tuple[int, int]] = set()
    value_types = _metric_value_types()
    titles = []
    for tile in layout["tiles"]:
        assert tile["xPos"] + tile["width"] <= columns
        covered = {
            (x, y)
            for x in range(tile["xPos"], tile["xPos"] + tile["width"])
            for y in range(tile["yPos"], tile["yPos"] + tile["height"])
        }
        assert not covered & cells, f"{tile['widget']['title']} overlaps another tile"
        cells |= covered
        widget = tile["widget"]
        titles.append(widget["title"])
        data_sets = widget["xyChart"]["dataSets"]
        assert data_sets
        for data_set in data_sets:
            assert set(data_set) == {"timeSeriesQuery", "plotType"} and data_set["plotType"] == "LINE"
            _check_promql(data_set["timeSeriesQuery"]["prometheusQuery"], value_types)
    # One page: five rows of two tiles at most.
    assert max(t["yPos"] + t["height"] for t in layout["tiles"]) <= 80
    wanted = (
        "Requests per minute by model",
        "Error rate by status class",
        "Latency p50 and p95",
        "Time to first byte p50 and p95",
        "Tokens per day by key",
        "Vertex AI 429s",
        "Cloud Run instances",
        "CPU utilization",
        "Memory utilization",
    )
    for words in wanted:
        assert any(title.startswith(words) for title in titles), words
    # docs/usage.md describes every tile, by its title.
    guide = (ROOT / "docs" / "usage.md").read_text()
    for title in titles:
        assert f"**{title}**" in guide, f"docs/usage.md does not describe the tile {title!r}"


def test_dashboard_url_output() -> None:
    assert monitoring_outputs("")["dashboard_url"] == (
        "https://console.cloud.google.com/monitoring/dashboards/builder/0f1e2d3c-4b5a-6789?project=my-project-123"
    )


def test_alerts_exist_only_with_an_email_and_say_what_to_check_first() -> None:
    off = monitoring_outputs("")
    assert off["policies"] == {} and off["channels"] == []
    on = monitoring_outputs("oncall@example.com")
    assert on["channels"] == ["oncall@example.com"]
    policies = on["policies"]
    assert set(policies) == {"gateway_5xx", "upstream_429", "no_success", "key_refresh"}
    value_types = _metric_value_types()
    for name, alert in policies.items():
        assert "Check first" in alert["documentation"], name
        assert alert["severity"] in ("CRITICAL", "ERROR", "WARNING")
        assert re.fullmatch(r"\d+s", alert["duration"])
        _check_promql(alert["query"], value_types)
    assert policies["gateway_5xx"]["query"].endswith("> 0.05")
    assert "[10m]" in policies["no_success"]["query"] and 'key_id!=""' in policies["no_success"]["query"]
    channel = resource("google_monitoring_notification_channel", "email")
    assert channel["for_each"] == "${local.alert_emails}" and channel["type"] == "email"
    policy = resource("google_monitoring_alert_policy", "gateway")
    assert (
        policy["notification_channels"]
        == "${[for channel in google_monitoring_notification_channel.email : channel.name]}"
    )
    assert one(policy, "documentation")["mime_type"] == "text/markdown"


def test_monitoring_api_is_enabled() -> None:
    assert '"monitoring.googleapis.com"' in locals_()["apis"]
