"""The docs say what the code does: default aliases, Terraform variable names, rollback, deploy steps."""

from __future__ import annotations

import re
from pathlib import Path

import hcl2

from app.config import DEFAULT_ALIASES
from tests.test_infra import service_env, variables

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DEPLOY_DOC = ROOT / "docs" / "deploy.md"
RUNBOOK = ROOT / "app" / "templates" / "runbook.html"
DEPLOY_SH = ROOT / "deploy.sh"
TFVARS_EXAMPLE = ROOT / "infra" / "terraform.tfvars.example"

ROLLBACK = "./deploy.sh --image REGION-docker.pkg.dev/PROJECT/llm-gateway/llm-gateway:PREVIOUS_SHA"
LIST_IMAGES = "gcloud artifacts docker images list REGION-docker.pkg.dev/PROJECT/llm-gateway --include-tags"


def alias_table(text: str, heading: str) -> dict[str, str]:
    """The first `| `alias` | `publisher/model` | … |` table after `heading`."""
    after = text[text.index(heading) :]
    rows = re.findall(r"^\| `([^`]+)` \| `((?:google|anthropic)/[^`]+)` \|", after, re.M)
    table: dict[str, str] = {}
    for alias, model in rows:
        if alias in table:
            break
        table[alias] = model
    return table


def test_readme_and_spec_document_the_gateways_default_aliases() -> None:
    assert alias_table(README.read_text(), "Models are aliases") == DEFAULT_ALIASES
    assert alias_table((ROOT / "SPEC.md").read_text(), "## Models") == DEFAULT_ALIASES


def test_a_default_deploy_serves_the_documented_aliases(tmp_path: Path) -> None:
    # Terraform's default leaves MODEL_ALIASES unset, so the gateway's DEFAULT_ALIASES (the README
    # table above) are what a default deploy serves; nothing in Terraform restates them.
    assert variables()["model_aliases"]["default"] == {}
    assert "MODEL_ALIASES" not in service_env(tmp_path)
    with TFVARS_EXAMPLE.open() as fh:
        assert "model_aliases" not in hcl2.load(fh)  # only a commented example


def test_tfvars_example_names_only_real_variables() -> None:
    names = set(re.findall(r"^#?\s*([a-z_]+)\s*=", TFVARS_EXAMPLE.read_text(), re.M))
    assert {"project_id", "region", "domain", "dns_managed_zone", "model_aliases", "cpu", "memory"} <= names
    assert names <= set(variables()), names - set(variables())


def test_docs_name_the_dns_zone_variable_as_terraform_does() -> None:
    assert "dns_managed_zone" in variables()
    for doc in (README, DEPLOY_DOC, RUNBOOK, ROOT / "docs" / "keys.md", ROOT / "docs" / "claude.md"):
        assert not re.search(r"\bdns_zone\b", doc.read_text()), doc.name


def test_rollback_advice_is_the_same_everywhere_and_is_what_deploy_sh_does() -> None:
    for doc in (README, DEPLOY_DOC, RUNBOOK):
        text = doc.read_text()
        assert ROLLBACK in text and LIST_IMAGES in text, doc.name
        assert "revisions list" not in text, doc.name  # revisions are not what --image takes
    assert re.search(r"--image IMAGE .*rollback", DEPLOY_SH.read_text())


def test_deploy_doc_lists_the_steps_in_deploy_sh_order() -> None:
    steps = re.findall(r"^\d+\. (.+(?:\n   .+)*)", DEPLOY_DOC.read_text(), re.M)

    def step(word: str) -> int:
        found = [i for i, s in enumerate(steps) if word in s]
        assert found, word
        return found[0]

    doc_order = [step(w) for w in ("services enable", "builds submit", "terraform import", "untaint", "-var-file")]
    assert doc_order == sorted(doc_order)
    script = DEPLOY_SH.read_text()
    main = script[script.index("\nmain() {") :]
    code_order = [
        main.index(w)
        for w in ("services enable", "builds submit", "tf import", "untaint_failed_create\n  tf apply", "smoke_test")
    ]
    assert code_order == sorted(code_order)


def test_health_is_checked_at_health_not_healthz() -> None:
    # Cloud Run's front end answers /healthz itself (SPEC.md, platform facts).
    for doc in (README, DEPLOY_DOC, RUNBOOK):
        text = doc.read_text()
        assert not re.search(r"(curl|probes? on|checks?)\s+\S*/healthz\b", text), doc.name
    assert "curl $base_url/health<" in RUNBOOK.read_text()
    assert "probes on `/health`" in DEPLOY_DOC.read_text()


def test_non_owner_roles_include_project_viewer_for_build_logs() -> None:
    text = DEPLOY_DOC.read_text()
    roles = text[text.index("holding **Owner**") : text.index("## First deploy")]
    assert "Project Viewer" in roles and "roles/viewer" in roles
