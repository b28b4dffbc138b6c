"""The hashicorp/google provider schema, from a pinned npm package, and a check of infra/*.tf against it.

    python -m tests.tools.tf_schema fetch      # once, in `make setup`: download, verify, derive, cache
    python -m tests.tools.tf_schema check DIR  # every google_* resource/data block in DIR/*.tf

No registry package ships `terraform providers schema -json` for this provider, so the schema is
derived from the jsii manifest (`.jsii`) of `@cdktf/provider-google`, which HashiCorp generated from
that provider's own schema: one class per resource and data source, whose config struct has one
property per argument or block, each documented with a link whose anchor is the Terraform name and
marked optional unless the provider requires it. The package, its version and its sha512 integrity
are pinned in google-provider.lock.json beside this file; a tarball with any other hash is refused.

The check reports every google_* resource or data source whose type, argument or nested block the
provider does not know, and every required argument or block that is missing. `dynamic "x"` blocks
are checked by name; their contents are not descended into (their iterator makes them opaque).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
LOCK = HERE / "google-provider.lock.json"
# Ignored by git and removed by `make clean`, like everything else `make setup` installs.
CACHE = ROOT / ".venv" / "tf-schema"
META_ARGUMENTS = {"count", "for_each", "depends_on", "provider", "lifecycle", "provisioner", "connection", "dynamic"}

_REPRESENTS = re.compile(
    r"Represents a \{@link https://registry\.terraform\.io/providers/hashicorp/google/([^/]+)/docs/"
    r"(resources|data-sources)/[a-z0-9_]+ (google_[a-z0-9_]+)\}"
)
_ANCHOR = re.compile(
    r"Docs at Terraform Registry: \{@link https://[^ #]+/docs/(?:resources|data-sources)/[a-z0-9_]+#([a-z0-9_]+) "
)

Node = dict[str, Any]


def lock() -> dict[str, str]:
    data: dict[str, str] = json.loads(LOCK.read_text())
    return data


def cache_path() -> Path:
    pin = lock()
    return CACHE / f"google-{pin['provider_version']}-{pin['integrity'][7:19].replace('/', '_')}.json"


# -- deriving the schema from the jsii manifest -------------------------------------------


def _struct_fqn(type_ref: Any, types: dict[str, Any]) -> str | None:
    """The struct a property's type holds, directly, in a list, or beside cdktf.IResolvable."""
    if not isinstance(type_ref, dict):
        return None
    fqn = type_ref.get("fqn")
    if isinstance(fqn, str):
        found = types.get(fqn)
        return fqn if found and found.get("datatype") else None
    if "collection" in type_ref:
        return _struct_fqn(type_ref["collection"].get("elementtype"), types)
    if "union" in type_ref:
        for member in type_ref["union"].get("types", []):
            inner = _struct_fqn(member, types)
            if inner:
                return inner
    return None


def _node(fqn: str, types: dict[str, Any], depth: int = 0) -> Node:
    attrs: dict[str, bool] = {}
    blocks: dict[str, Node] = {}
    for prop in types[fqn].get("properties", []):
        # jsii files some doc text under "custom" (where it holds an @), so search every field.
        anchor = _ANCHOR.search(json.dumps(prop.get("docs", {})))
        # A doc comment the provider's text broke (a `*/` in it) loses the link: fall back on the
        # generator's own rule, camelCase from snake_case.
        name = anchor.group(1) if anchor else re.sub(r"([A-Z])", r"_\1", prop["name"]).lower()
        required = not prop.get("optional", False)
        inner = _struct_fqn(prop.get("type"), types)
        if inner and depth < 32:
            block = _node(inner, types, depth + 1)
            block["required"] = required
            blocks[name] = block
        else:
            attrs[name] = required
    return {"attrs": attrs, "blocks": blocks}


def derive(manifest: dict[str, Any]) -> dict[str, Any]:
    types: dict[str, Any] = manifest["types"]
    schema: dict[str, Any] = {"resource": {}, "data": {}, "provider_version": None}
    for spec in types.values():
        if spec.get("kind") != "class":
            continue
        match = _REPRESENTS.search(spec.get("docs", {}).get("summary", ""))
        if not match:
            continue
        version, kind, tf_type = match.groups()
        params = spec.get("initializer", {}).get("parameters", [])
        config = next((p["type"]["fqn"] for p in params if p.get("name") == "config" and "fqn" in p["type"]), None)
        if config is None:
            continue
        schema["provider_version"] = version
        schema["resource" if kind == "resources" else "data"][tf_type] = _node(config, types)
    return schema


# -- fetching the pinned package ------------------------------------------------------------


def sri(data_path: Path) -> str:
    digest = hashlib.sha512()
    with data_path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return "sha512-" + base64.b64encode(digest.digest()).decode()


def fetch() -> Path:
    target = cache_path()
    if target.exists():
        return target
    pin = lock()
    with tempfile.TemporaryDirectory(prefix="tf-schema-") as tmp:
        spec = f"{pin['package']}@{pin['version']}"
        # npm pack: the registry's own client, which also checks the tarball against the registry's hash.
        done = subprocess.run(
            ["npm", "pack", spec, "--pack-destination", tmp, "--json", "--silent"],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
            cwd=tmp,
        )
        if done.returncode != 0:
            raise SystemExit(f"tf_schema: npm pack {spec} failed: {done.stderr.strip()[-800:]}")
        tarball = Path(tmp) / json.loads(done.stdout)[0]["filename"]
        found = sri(tarball)
        if found != pin["integrity"]:
            raise SystemExit(f"tf_schema: {spec} has integrity {found}, the lock pins {pin['integrity']}")
        with tarfile.open(tarball, "r:gz") as archive:
            member = archive.extractfile("package/.jsii")
            if member is None:
                raise SystemExit(f"tf_schema: {spec} has no package/.jsii")
            manifest = json.load(member)
        schema = derive(manifest)
    if schema["provider_version"] != pin["provider_version"]:
        raise SystemExit(f"tf_schema: {spec} describes google {schema['provider_version']}, not the locked one")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    partial.write_text(json.dumps(schema, sort_keys=True, separators=(",", ":")))
    os.replace(partial, target)
    return target


def load_schema() -> dict[str, Any]:
    path = cache_path()
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `make setup` (python -m tests.tools.tf_schema fetch)")
    data: dict[str, Any] = json.loads(path.read_text())
    return data


# -- checking .tf files -----------------------------------------------------------------------


def _strip(key: str) -> str:
    return key.strip('"')


def _check(node: Node, body: Any, where: str, out: list[str], top: bool = False) -> None:
    if isinstance(body, list):
        for item in body:
            _check(node, item, where, out, top)
        return
    if not isinstance(body, dict):
        return
    keys = {_strip(k) for k in body if not k.startswith("__")}
    # Meta-arguments exist only on the resource itself; nested, `count` is the provider's own (e.g. guest_accelerator).
    for key in sorted(keys - (META_ARGUMENTS if top else {"dynamic"})):
        if key not in node["attrs"] and key not in node["blocks"]:
            out.append(f"{where}: unknown argument or block '{key}'")
    for name, required in node["attrs"].items():
        if required and name not in keys and name != "id":
            out.append(f"{where}: missing required argument '{name}'")
    dynamic: set[str] = set()
    for entry in body.get("dynamic", []) if isinstance(body.get("dynamic"), list) else []:
        dynamic.update(_strip(name) for name in entry)
    for name, sub in node["blocks"].items():
        if sub.get("required") and name not in keys and name not in dynamic:
            out.append(f"{where}: missing required block '{name}'")
        for key, value in body.items():
            if _strip(key) == name:
                _check(sub, value, f"{where}.{name}", out)
    for name in sorted(dynamic - set(node["blocks"])):
        out.append(f"{where}: unknown dynamic block '{name}'")


def check(directory: Path, schema: dict[str, Any]) -> tuple[int, list[str]]:
    """(google_* blocks checked, findings) for every .tf file in `directory`."""
    import hcl2  # in requirements-dev.txt; imported here so `fetch` needs only the standard library

    findings: list[str] = []
    checked = 0
    for path in sorted(directory.glob("*.tf")):
        with path.open() as handle:
            try:
                doc = hcl2.load(handle)
            except Exception as exc:  # a file that does not parse is a finding, not a crash
                findings.append(f"{path.name}: cannot parse: {exc}")
                continue
        for kind in ("resource", "data"):
            for group in doc.get(kind, []):
                for tf_type, instances in group.items():
                    tf_type = _strip(tf_type)
                    if not tf_type.startswith("google"):
                        continue
                    for instance, body in instances.items():
                        checked += 1
                        where = f"{path.name}: {kind} {tf_type}.{_strip(instance)}"
                        node = schema[kind].get(tf_type)
                        if node is None:
                            findings.append(f"{where}: unknown {kind} type in google {schema['provider_version']}")
                            continue
                        _check(node, body, where, findings, top=True)
    return checked, findings


def main(argv: list[str]) -> int:
    if argv[:1] == ["fetch"]:
        print(fetch())
        return 0
    if argv[:1] == ["check"] and len(argv) > 1:
        schema = load_schema()
        total, findings = 0, []
        for directory in argv[1:]:
            checked, found = check(Path(directory), schema)
            total += checked
            findings += found
        for line in findings:
            print(line)
        print(
            f"tf_schema: {total} google blocks checked, {len(findings)} findings (google {schema['provider_version']})"
        )
        return 1 if findings else 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
