"""Issue 14: usage and monitoring from the gateway's own request lines.

- Every log-based metric in infra/ (filter, label and value extractors, parsed from the .tf with python-hcl2)
  is evaluated against lines a real gateway process wrote for real requests (OpenAI SDK chat, stream,
  errors, a Vertex 429, the gateway's own 429, a failed key refresh), turned into LogEntries the way Cloud
  Run's agent does (tests/fakes/logging.py). A renamed log field fails here, not on the dashboard.
- scripts/usage runs the real gcloud against a Cloud Logging `entries:list` fake with paging, over a few
  thousand lines made from those real lines, and its totals match a direct count of them.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import json
import math
import os
import random
import re
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib.machinery import SourceFileLoader
from pathlib import Path
from types import ModuleType
from typing import Any

import openai
import pytest

from tests import test_infra
from tests.conftest import API_KEYS, KEY_DOCUMENT, KEY_IDS, PROJECT
from tests.fakes.logging import (
    FakeLogging,
    QueryError,
    as_log_entry,
    extract,
    extractor_field,
    field_value,
    matches,
    parse,
)
from tests.fakes.secretmanager import FakeSecretManager
from tests.harness import Gateway, start_gateway

ROOT = Path(__file__).resolve().parent.parent
USAGE = ROOT / "scripts" / "usage"
SERVICE = "llm-gateway"  # infra/variables.tf service_name default
PRICES = json.loads((ROOT / "scripts" / "prices.json").read_text())

Entry = dict[str, Any]


@functools.cache
def usage_module() -> ModuleType:
    """scripts/usage as a module (it has no .py suffix), loaded once."""
    loader = SourceFileLoader("scripts_usage", str(USAGE))
    spec = importlib.util.spec_from_loader("scripts_usage", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["scripts_usage"] = module
    loader.exec_module(module)
    return module


# -- the metrics, as Terraform would evaluate them --------------------------------------------

VARS = {"service_name": SERVICE, "project_id": PROJECT}
_INTERPOLATION = re.compile(r"\$\{([^}]*)\}")


def _raw(text: str, each: tuple[str, str] | None) -> str:
    def value(match: re.Match[str]) -> str:
        expression = match.group(1).strip()
        if expression.startswith("var."):
            return VARS[expression[4:]]
        if expression.startswith("local."):
            return _raw(test_infra.locals_()[expression[6:]], each)
        if expression in ("each.key", "each.value") and each is not None:
            return each[0] if expression == "each.key" else each[1]
        raise AssertionError(f"the test cannot evaluate ${{{expression}}}: keep metric strings to var, local, each")

    return _INTERPOLATION.sub(value, text)


def hcl_string(text: str, each: tuple[str, str] | None = None) -> str:
    """An HCL string literal's value: interpolations of var./local./each. filled in, escapes undone."""
    return str(json.loads('"' + _raw(text, each) + '"'))


@dataclass
class Metric:
    name: str
    filter: str
    value_type: str
    labels: dict[str, str] = field(default_factory=dict)
    declared: list[str] = field(default_factory=list)
    value: str | None = None

    def paths(self) -> set[str]:
        found = {c.field for c in parse(self.filter)}
        for expression in [*self.labels.values(), *([self.value] if self.value else [])]:
            found.add(extractor_field(expression)[0])
        return found


def metrics() -> dict[str, Metric]:
    found = {}
    for (rtype, _), body in test_infra.resources().items():
        if rtype != "google_logging_metric":
            continue
        instances: list[tuple[str, str] | None] = [None]
        if "for_each" in body:
            local = re.fullmatch(r"\$\{local\.(\w+)\}", body["for_each"])
            assert local, "a metric's for_each is a local map, so the test can expand it"
            instances = list(test_infra.locals_()[local.group(1)].items())
        for each in instances:
            descriptor = test_infra.one(body, "metric_descriptor")
            metric = Metric(
                name=hcl_string(body["name"], each),
                filter=hcl_string(body["filter"], each),
                value_type=descriptor["value_type"],
                labels={k: hcl_string(v, each) for k, v in body.get("label_extractors", {}).items()},
                declared=[label["key"] for label in descriptor.get("labels", [])],
                value=hcl_string(body["value_extractor"], each) if "value_extractor" in body else None,
            )
            found[metric.name.removeprefix(f"{SERVICE}/")] = metric
    return found


def problems(found: dict[str, Metric], entries: list[Entry]) -> list[str]:
    """Each metric matches some real entry, and every field path it reads has a value in an entry it
    matches; each label extractor gives a non-empty value for at least one of them."""
    out = []
    for short, metric in sorted(found.items()):
        if short == "thinking_tokens" and not any(field_value(e, "jsonPayload.usage.thinking_tokens") for e in entries):
            continue  # not logged yet (app/usage.py): test_thinking_tokens_are_read_when_the_line_has_them
        matched = [e for e in entries if matches(e, metric.filter)]
        if not matched:
            out.append(f"{metric.name}: the filter matches none of the gateway's lines: {metric.filter}")
            continue
        for path in sorted(metric.paths()):
            if not any(field_value(e, path) is not None for e in matched):
                out.append(f"{metric.name}: no line it matches has {path}")
        for label, expression in metric.labels.items():
            if not any(extract(e, expression) for e in matched):
                out.append(f"{metric.name}: label {label} ({expression}) is empty on every line it matches")
    return out


# -- lines a real gateway wrote -----------------------------------------------------------------

RPM_KEY = f"gwk-rpm-{secrets.token_urlsafe(24)}"
RPM_KEY_ID = "team-rpm"
SECRET = "usage-keys"


def _stamp(offset: int) -> str:
    return (datetime.now(UTC) + timedelta(microseconds=offset)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _entries(gw: Gateway) -> list[Entry]:
    return [as_log_entry(line, PROJECT, SERVICE, _stamp(i), f"real-{i}") for i, line in enumerate(gw.json_logs())]


@pytest.fixture(scope="module")
def real_lines(gateway_env: dict[str, str | None]) -> Iterator[dict[str, Entry]]:
    """LogEntries of the lines one gateway process wrote for a few real requests, by what they show;
    "all" is every stdout JSON line (startup lines too)."""
    document = [*KEY_DOCUMENT, {"id": RPM_KEY_ID, "key": RPM_KEY, "enabled": True, "rpm": 1}]
    gw = start_gateway({**gateway_env, "API_KEYS_JSON": json.dumps(document), "UPSTREAM_RETRIES": "0"})
    hi = [{"role": "user", "content": "hi"}]
    try:
        with openai.OpenAI(api_key=API_KEYS["full"], base_url=gw.base_url, max_retries=0, timeout=60) as sdk:
            sdk.chat.completions.create(model="flash", messages=hi)
            for _ in sdk.chat.completions.create(model="pro-preview", messages=hi, stream=True):
                pass
            with pytest.raises(openai.BadRequestError):
                sdk.chat.completions.create(model="no-such-model", messages=hi)
            with pytest.raises(openai.RateLimitError):
                sdk.chat.completions.create(model="flash", messages=hi, extra_body={"fake": {"status": 429}})
            sdk.models.list()
        with (
            openai.OpenAI(api_key="gwk-nobody", base_url=gw.base_url, max_retries=0, timeout=60) as stranger,
            pytest.raises(openai.AuthenticationError),
        ):
            stranger.chat.completions.create(model="flash", messages=hi)
        with openai.OpenAI(api_key=RPM_KEY, base_url=gw.base_url, max_retries=0, timeout=60) as limited:
            limited.chat.completions.create(model="flash", messages=hi)
            with pytest.raises(openai.RateLimitError):
                limited.chat.completions.create(model="flash", messages=hi)
        deadline = time.monotonic() + 10
        while len(gw.request_logs()) < 8 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        gw.stop()
    entries = _entries(gw)
    requests = [e for e in entries if "httpRequest" in e]
    assert len(requests) == 8, [e["jsonPayload"].get("message") for e in entries]

    def one(predicate: Any) -> Entry:
        (found,) = [e for e in requests if predicate(e)]
        return found

    def status(e: Entry) -> int:
        return int(e["httpRequest"]["status"])

    def key(e: Entry) -> str | None:
        return e["jsonPayload"].get("key_id")

    yield {
        "chat": one(lambda e: status(e) == 200 and e["jsonPayload"]["stream"] is False and key(e) == KEY_IDS["full"]),
        "stream": one(lambda e: e["jsonPayload"]["stream"] is True),
        "unknown_model": one(lambda e: status(e) == 400),
        "upstream_429": one(lambda e: status(e) == 429 and key(e) == KEY_IDS["full"]),
        "models": one(lambda e: e["httpRequest"]["requestUrl"] == "/v1/models"),
        "bad_key": one(lambda e: status(e) == 401),
        "rpm_ok": one(lambda e: status(e) == 200 and key(e) == RPM_KEY_ID),
        "gateway_429": one(lambda e: status(e) == 429 and key(e) == RPM_KEY_ID),
        "all": entries,  # type: ignore[dict-item]
    }


@pytest.fixture(scope="module")
def key_failure_lines(gateway_env: dict[str, str | None]) -> Iterator[list[Entry]]:
    """Every line of a gateway whose key secret became unreadable after a good first load."""
    with FakeSecretManager() as secret_manager:
        secret_manager.create_secret(SECRET)
        alice = {"id": "alice", "key": f"gwk-{secrets.token_hex(16)}", "enabled": True}
        secret_manager.add_version(SECRET, json.dumps([alice]))
        env = {
            **gateway_env,
            "API_KEYS_JSON": None,
            "API_KEYS_SECRET": SECRET,
            "SECRET_MANAGER_ENDPOINT": secret_manager.url,
            "KEYS_REFRESH_SECONDS": "1",
        }
        gw = start_gateway(env)
        try:
            secret_manager.down = True
            gw.wait_for_log(lambda e: e.get("logger") == "app.keys" and e.get("severity") == "ERROR", timeout=20)
        finally:
            gw.stop()
    yield _entries(gw)


# -- the metrics against those lines ---------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.slow
def test_every_metric_reads_fields_the_gateway_writes(
    real_lines: dict[str, Any], key_failure_lines: list[Entry]
) -> None:
    found = metrics()
    assert set(found) == {
        "requests",
        "input_tokens",
        "output_tokens",
        "thinking_tokens",
        "latency_ms",
        "ttfb_ms",
        "upstream_429",
        "key_refresh_failures",
    }
    for metric in found.values():
        assert sorted(metric.labels) == sorted(metric.declared), f"{metric.name}: every label has one extractor"
        assert len(metric.labels) <= 10, "Cloud Logging allows 10 user-defined labels per metric"
        assert (metric.value is not None) == (metric.value_type == "DISTRIBUTION")
        for expression in metric.labels.values():
            _, pattern = extractor_field(expression)
            # Anchored both ends: partial and full regex matching agree, so the evaluator is faithful.
            assert pattern is None or (pattern.pattern.startswith("^") and pattern.pattern.endswith("$"))
    entries = real_lines["all"] + key_failure_lines
    assert problems(found, entries) == []


@pytest.mark.e2e
@pytest.mark.slow
def test_metrics_select_and_label_the_right_lines(real_lines: dict[str, Any], key_failure_lines: list[Entry]) -> None:
    found = metrics()
    entries = real_lines["all"] + key_failure_lines
    requests = found["requests"]
    # Exactly the request lines: no startup or key-load line, whatever its fields.
    assert [e for e in entries if matches(e, requests.filter)] == [e for e in entries if "httpRequest" in e]

    def labels(metric: Metric, entry: Entry) -> dict[str, str]:
        return {k: extract(entry, v) or "" for k, v in metric.labels.items()}  # a failed extraction is ""

    assert labels(requests, real_lines["chat"]) == {
        "key_id": KEY_IDS["full"],
        "alias": "flash",
        "status_class": "2",
        "route": "/v1/chat/completions",
    }
    assert labels(requests, real_lines["stream"])["alias"] == "pro-preview"
    assert labels(requests, real_lines["unknown_model"])["status_class"] == "4"
    assert labels(requests, real_lines["bad_key"]) == {
        "key_id": "",
        "alias": "",
        "status_class": "4",
        "route": "/v1/chat/completions",
    }
    assert labels(requests, real_lines["models"])["route"] == "/v1/models"
    # An unknown path has no route label (bounded cardinality), and /v1/models/ID counts as /v1/models.
    probe = copy.deepcopy(real_lines["models"])
    probe["httpRequest"]["requestUrl"] = "/wp-admin/setup.php"
    assert labels(requests, probe)["route"] == ""
    probe["httpRequest"]["requestUrl"] = "/v1/models/flash"
    assert labels(requests, probe)["route"] == "/v1/models"
    probe["httpRequest"]["requestUrl"] = "/v1/embeddings"
    assert labels(requests, probe)["route"] == "/v1/embeddings"
    # The native passthrough is one route, whatever model and method its path names.
    probe["httpRequest"]["requestUrl"] = "/vertex/v1/publishers/google/models/flash:generateContent"
    assert labels(requests, probe)["route"] == "/vertex"
    probe["httpRequest"]["requestUrl"] = "/vertexfoo"
    assert labels(requests, probe)["route"] == ""

    # Tokens: the usage the answer carried, as values; lines without usage are not in the metric.
    for name in ("chat", "stream"):
        usage = real_lines[name]["jsonPayload"]["usage"]
        for kind in ("input_tokens", "output_tokens"):
            metric = found[kind]
            assert matches(real_lines[name], metric.filter)
            assert metric.value is not None and float(extract(real_lines[name], metric.value) or "nan") == usage[kind]
    assert not matches(real_lines["unknown_model"], found["input_tokens"].filter)

    # Latency on every request line; time to first byte where a byte went out.
    for name in ("chat", "stream", "unknown_model", "bad_key"):
        line = real_lines[name]
        assert matches(line, found["latency_ms"].filter)
        assert found["latency_ms"].value is not None
        assert float(extract(line, found["latency_ms"].value) or "nan") == line["jsonPayload"]["latency_ms"]
    assert matches(real_lines["stream"], found["ttfb_ms"].filter)

    # A Vertex 429 counts; the gateway's own rpm refusal does not.
    assert matches(real_lines["upstream_429"], found["upstream_429"].filter)
    assert not matches(real_lines["gateway_429"], found["upstream_429"].filter)
    assert not matches(real_lines["rpm_ok"], found["upstream_429"].filter)

    # Key refresh failures: the refresher's ERROR lines, not its "loaded" line.
    failures = [e for e in key_failure_lines if matches(e, found["key_refresh_failures"].filter)]
    assert failures and all(e["jsonPayload"]["logger"] == "app.keys" for e in failures)
    loaded = [e for e in key_failure_lines if "loaded" in str(e["jsonPayload"].get("message"))]
    assert loaded and not any(matches(e, found["key_refresh_failures"].filter) for e in loaded)


@pytest.mark.e2e
@pytest.mark.slow
def test_a_renamed_log_field_is_caught(real_lines: dict[str, Any]) -> None:
    found = metrics()
    entries: list[Entry] = real_lines["all"]

    def renamed(path: str, new: str) -> list[Entry]:
        out = copy.deepcopy(entries)
        *parents, leaf = path.split(".")
        for entry in out:
            node = field_value(entry, ".".join(parents)) if parents else entry
            if isinstance(node, dict) and leaf in node:
                node[new] = node.pop(leaf)
        return out

    assert any("jsonPayload.key_id" in p for p in problems(found, renamed("jsonPayload.key_id", "api_key")))
    assert any("matches none" in p for p in problems(found, renamed("jsonPayload.latency_ms", "duration_ms")))
    assert any("input_tokens" in p for p in problems(found, renamed("jsonPayload.usage.input_tokens", "prompt")))
    assert any("ttfb_ms" in p for p in problems(found, renamed("jsonPayload.ttfb_ms", "first_byte_ms")))


@pytest.mark.e2e
@pytest.mark.slow
def test_thinking_tokens_are_read_when_the_line_has_them(real_lines: dict[str, Any]) -> None:
    # The gateway does not log thinking tokens yet (app/usage.py keeps input/output/total): a line
    # without the field is not in the metric (0); with it, its value is.
    thinking = metrics()["thinking_tokens"]
    line = copy.deepcopy(real_lines["chat"])
    if "thinking_tokens" not in line["jsonPayload"]["usage"]:
        assert not matches(line, thinking.filter)
        line["jsonPayload"]["usage"]["thinking_tokens"] = 321
    assert matches(line, thinking.filter)
    assert thinking.value is not None and float(extract(line, thinking.value) or "nan") == float(
        line["jsonPayload"]["usage"]["thinking_tokens"]
    )


def test_usage_reads_the_same_lines_the_metrics_count() -> None:
    usage = usage_module()
    start = datetime(2026, 11, 1, tzinfo=UTC)
    query = usage.request_filter(PROJECT, SERVICE, start, "team-a", "flash")
    assert query.startswith(metrics()["requests"].filter + " AND ")
    assert [c.field for c in parse(query)][-3:] == ["timestamp", "jsonPayload.key_id", "jsonPayload.alias"]
    # Quotes in a key id stay inside its string.
    tricky = usage.request_filter(PROJECT, SERVICE, start, 'a" OR x="', None)
    assert parse(tricky)[-1].value == 'a" OR x="'


# -- the query subset itself --------------------------------------------------------------------------


def test_query_subset_evaluates_as_cloud_logging_documents() -> None:
    entry = as_log_entry(
        {
            "severity": "WARNING",
            "message": "POST /v1/messages 404",
            "httpRequest": {"status": 404, "requestUrl": "/v1/messages"},
            "latency_ms": 12.5,
            "key_id": "Team-A",
            "usage": None,
            "logging.googleapis.com/trace": "projects/p/traces/abc",
        },
        "p-1",
        "svc",
        "2026-12-01T10:00:00.5Z",
        "1",
    )
    # The agent's lifting: special fields leave jsonPayload, message stays.
    assert entry["severity"] == "WARNING" and entry["trace"] == "projects/p/traces/abc"
    assert "httpRequest" not in entry["jsonPayload"] and entry["jsonPayload"]["message"] == "POST /v1/messages 404"
    assert matches(entry, "httpRequest.status>=400 AND httpRequest.status<500")
    assert matches(entry, "severity>=WARNING") and not matches(entry, "severity>=ERROR")
    assert matches(entry, 'jsonPayload.key_id:"team"') and not matches(entry, 'jsonPayload.key_id="team-a"')
    assert matches(entry, 'timestamp>="2026-12-01T10:00:00Z"') and not matches(entry, 'timestamp>="2026-12-02"')
    assert matches(entry, "jsonPayload.latency_ms>=0") and not matches(entry, "jsonPayload.usage.input_tokens>=0")
    assert not matches(entry, "jsonPayload.ttfb_ms>=0")  # missing: no comparison holds
    for outside in ("a=1 OR b=2", "NOT a=1", "(a=1)", "a=1 b=2", "a!=1", 'a=~"x"', "a=1 AND"):
        with pytest.raises(QueryError):
            parse(outside)


# -- scripts/usage, in-process pieces -----------------------------------------------------------------


def test_json_array_is_read_item_by_item() -> None:
    import io

    usage = usage_module()
    items = [{"a": i, "s": "x,]}[" * (i % 4)} for i in range(50)]
    text = json.dumps(items, indent=2)
    assert list(usage.json_array_items(io.StringIO(text), chunk=7)) == items
    assert list(usage.json_array_items(io.StringIO(""))) == []
    assert list(usage.json_array_items(io.StringIO("[]\n"))) == []
    with pytest.raises(usage.UsageError):
        list(usage.json_array_items(io.StringIO(text[: len(text) // 2]), chunk=7))


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def test_latency_sketch_is_bounded_and_within_one_percent() -> None:
    usage = usage_module()
    rng = random.Random(14)
    values = [rng.lognormvariate(6, 1.5) for _ in range(100_000)] + [0.0, 1e7]
    sketch = usage.LatencySketch()
    for value in values:
        sketch.add(value)
    assert len(sketch.counts) < 1200
    for q in (0.5, 0.95, 0.99):
        exact = nearest_rank(values, q)
        assert abs(sketch.quantile(q) - exact) <= 0.01 * exact


def test_prices_are_sourced_and_an_operator_table_overrides_them(tmp_path: Path) -> None:
    usage = usage_module()
    assert PRICES["source"].startswith("https://cloud.google.com/vertex-ai/generative-ai/pricing")
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", PRICES["checked"])
    from app.config import DEFAULT_ALIASES

    prices = usage.load_prices(None)
    for vertex_id in DEFAULT_ALIASES.values():
        assert prices.of(vertex_id), f"{vertex_id} (a default alias) has no price"
    mine = tmp_path / "prices.json"
    mine.write_text(json.dumps({"models": {"google/gemini-2.5-flash": {"input": 1, "output": 2, "thinking": 3}}}))
    overridden = usage.load_prices(str(mine))
    assert overridden.of("google/gemini-2.5-flash") == {"input": 1, "output": 2, "thinking": 3}
    assert overridden.of("anthropic/claude-sonnet-4-6") == PRICES["models"]["anthropic/claude-sonnet-4-6"]
    assert overridden.table["override"] == str(mine)
    mine.write_text(json.dumps({"models": {"x/y": {"input": "cheap"}}}))
    with pytest.raises(usage.UsageError, match="x/y"):
        usage.load_prices(str(mine))


def test_since_takes_durations_and_dates() -> None:
    usage = usage_module()
    now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    assert usage.since_time("7d", now) == now - timedelta(days=7)
    assert usage.since_time("1d12h", now) == now - timedelta(hours=36)
    assert usage.since_time("2026-11-01", now) == datetime(2026, 11, 1, tzinfo=UTC)
    assert usage.since_time("2026-11-01T08:00:00Z", now) == datetime(2026, 11, 1, 8, tzinfo=UTC)
    with pytest.raises(usage.UsageError):
        usage.since_time("last week", now)


# -- scripts/usage through the real gcloud ---------------------------------------------------------------

KEYS = ("team-a", "team-b", "team-c")
MODELS = (
    ("flash", "google/gemini-2.5-flash"),
    ("pro-preview", "google/gemini-3.1-pro-preview"),
    ("haiku", "anthropic/claude-haiku-4-5@20251001"),  # priced by its id without @version
)


def price_of(vertex_model: str) -> dict[str, float]:
    models = PRICES["models"]
    return dict(models.get(vertex_model) or models[vertex_model.split("@")[0]])


@dataclass
class Expected:
    requests: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    thinking_tokens: int = 0
    cost: float = 0.0
    latencies: list[float] = field(default_factory=list)


def generate(real: dict[str, Any], count: int, now: datetime) -> tuple[list[Entry], dict[tuple[str, str], Expected]]:
    """`count` request lines made from the real ones (values changed, format kept) over 10 days, plus
    lines the report must leave out; and the direct count of the last 7 days' lines per key and model."""
    rng = random.Random(1414)
    templates = [(real["chat"], 70), (real["stream"], 20), (real["unknown_model"], 6), (real["upstream_429"], 4)]
    entries: list[Entry] = []
    expected: dict[tuple[str, str], Expected] = {}
    window = now - timedelta(days=7)
    for i in range(count):
        template = rng.choices([t for t, _ in templates], [w for _, w in templates])[0]
        line = copy.deepcopy(template)
        key, (alias, vertex_model) = rng.choice(KEYS), rng.choice(MODELS)
        moment = now - timedelta(seconds=rng.uniform(60, 10 * 86400))
        payload, http = line["jsonPayload"], line["httpRequest"]
        payload.update(key_id=key, alias=alias, vertex_model=vertex_model)
        latency = round(rng.lognormvariate(6, 1.2), 3)
        payload["latency_ms"], http["latency"] = latency, f"{latency / 1000:.6f}s"
        usage = payload.get("usage")
        if usage is not None:
            usage.update(input_tokens=rng.randint(1, 8000), output_tokens=rng.randint(1, 3000))
            if rng.random() < 0.3:
                usage["thinking_tokens"] = rng.randint(1, 4000)  # the field proposed for app/usage.py
            usage["total_tokens"] = sum(v for k, v in usage.items() if k != "total_tokens")
        line.update(timestamp=moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), insertId=f"gen-{i}")
        entries.append(line)
        if moment < window:
            continue
        row = expected.setdefault((key, alias), Expected())
        row.requests += 1
        row.errors += http["status"] >= 400 or str(payload.get("outcome", "")).startswith("upstream_")
        row.latencies.append(latency)
        if usage:
            price = price_of(vertex_model)
            thinking = usage.get("thinking_tokens", 0)
            row.input_tokens += usage["input_tokens"]
            row.output_tokens += usage["output_tokens"]
            row.thinking_tokens += thinking
            row.cost += (
                usage["input_tokens"] * price["input"] + (usage["output_tokens"] + thinking) * price["output"]
            ) / 1e6
    # Left out: another service's lines, Cloud Run's own request log, the gateway's non-request lines.
    recent = (now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    other = copy.deepcopy(real["chat"])
    other["resource"]["labels"]["service_name"] = "another-service"
    platform = copy.deepcopy(real["chat"])
    platform["logName"] = f"projects/{PROJECT}/logs/run.googleapis.com%2Frequests"
    platform.pop("jsonPayload")
    startup = [copy.deepcopy(e) for e in real["all"] if "httpRequest" not in e]
    for n, extra in enumerate([other, platform, *startup]):
        extra.update(timestamp=recent, insertId=f"extra-{n}")
        entries.append(extra)
    return entries, expected


@pytest.fixture
def fake_logging() -> Iterator[FakeLogging]:
    with FakeLogging() as fake:
        yield fake


def run_usage(fake: FakeLogging, home: Path, *args: str) -> tuple[int, str, list[tuple[float, str]]]:
    """scripts/usage with the real gcloud pointed at the fake: exit code, stdout, timed stderr lines."""
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "LANG": "C.UTF-8", **fake.gcloud_env(str(home / "gcloud"))}
    notes: list[tuple[float, str]] = []
    with subprocess.Popen(
        [sys.executable, str(USAGE), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:

        def pump() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                notes.append((time.monotonic(), line.rstrip("\n")))

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        assert proc.stdout is not None
        out = proc.stdout.read()
        code = proc.wait(timeout=100)
        reader.join(10)
    return code, out, notes


@pytest.mark.e2e
@pytest.mark.slow
def test_usage_totals_match_a_direct_count_through_real_gcloud(
    real_lines: dict[str, Any], fake_logging: FakeLogging, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    entries, expected = generate(real_lines, 3000, now)
    fake_logging.entries = entries
    fake_logging.page_delay = 2.0  # pages 2 and 3 come slowly: progress must show before they do

    code, out, notes = run_usage(fake_logging, tmp_path, "--since", "7d", "--format", "json")
    assert code == 0, notes
    report = json.loads(out)
    # gcloud paged through entries:list (1000 a page) with our filter, oldest first.
    calls = fake_logging.requests
    assert len(calls) >= 3 and {c["pageSize"] for c in calls} == {1000} and calls[0]["orderBy"] == "timestamp asc"
    assert calls[0]["resourceNames"] == [f"projects/{PROJECT}"] and "jsonPayload.latency_ms>=0" in calls[0]["filter"]

    rows = {(r["key"], r["model"]): r for r in report["rows"]}
    assert set(rows) == set(expected)
    for group, want in expected.items():
        got = rows[group]
        counts = {k: got[k] for k in ("requests", "errors", "input_tokens", "output_tokens", "thinking_tokens")}
        assert counts == {
            "requests": want.requests,
            "errors": want.errors,
            "input_tokens": want.input_tokens,
            "output_tokens": want.output_tokens,
            "thinking_tokens": want.thinking_tokens,
        }, group
        assert got["cost_usd"] == pytest.approx(want.cost, abs=2e-6), group
        for q, column in ((0.5, "p50_ms"), (0.95, "p95_ms")):
            exact = nearest_rank(want.latencies, q)
            assert abs(got[column] - exact) <= 0.01 * exact + 0.06, (group, column, got[column], exact)
    total = report["total"]
    assert total["requests"] == sum(w.requests for w in expected.values()) > 1500
    assert total["thinking_tokens"] == sum(w.thinking_tokens for w in expected.values()) > 0
    assert report["prices"]["source"] == PRICES["source"] and report["prices"]["checked"] == PRICES["checked"]

    # Progress came on stderr while gcloud was still reading: before the last page was even served.
    first_progress = next(t for t, line in notes if line.startswith("usage: 1000 request lines read"))
    assert first_progress < fake_logging.served_at[-1], notes
    assert notes[-1][1].startswith(f"usage: {total['requests']} request lines in ")

    # One key and model, as CSV: the same numbers, and the filter went to Cloud Logging.
    fake_logging.page_delay = 0
    fake_logging.requests.clear()
    code, out, notes = run_usage(
        fake_logging, tmp_path, "--key", "team-b", "--model", "flash", "--format", "csv", "--quiet"
    )
    assert code == 0, notes
    assert notes == []  # --quiet
    header, *lines = out.splitlines()
    assert header.split(",") == list(usage_module().COLUMNS)
    assert len(lines) == 1
    row = dict(zip(header.split(","), lines[0].split(","), strict=True))
    want = expected[("team-b", "flash")]
    assert (row["key"], row["model"], int(row["requests"]), int(row["input_tokens"])) == (
        "team-b",
        "flash",
        want.requests,
        want.input_tokens,
    )
    assert 'jsonPayload.key_id="team-b" AND jsonPayload.alias="flash"' in fake_logging.requests[0]["filter"]


@pytest.mark.slow
def test_usage_table_unpriced_models_and_gcloud_errors(fake_logging: FakeLogging, tmp_path: Path) -> None:
    line = {
        "severity": "INFO",
        "message": "POST /v1/chat/completions 200",
        "httpRequest": {"requestMethod": "POST", "requestUrl": "/v1/chat/completions", "status": 200},
        "latency_ms": 250.0,
        "ttfb_ms": 100.0,
        "key_id": "team-x",
        "alias": "mystery",
        "vertex_model": "google/gemini-99-ultra",
        "stream": False,
        "usage": {"input_tokens": 1000, "output_tokens": 10, "total_tokens": 1010},
    }
    fake_logging.entries = [as_log_entry(line, PROJECT, SERVICE, _stamp(-n * 1000), f"t-{n}") for n in range(3)]
    code, out, notes = run_usage(fake_logging, tmp_path, "--since", "1d")
    assert code == 0, notes
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["key", "model", "requests"]
    assert lines[1].split()[:3] == ["team-x", "mystery", "3"] and lines[1].split()[-1] == "?"
    assert lines[-3].startswith("TOTAL") and " 3000 " in f" {lines[-3]} "
    assert lines[-1].startswith(f"Prices: {PRICES['source']} as of {PRICES['checked']}")
    assert any("no price for google/gemini-99-ultra" in n for _, n in notes)

    fake_logging.deny = True  # the caller may not read logs: gcloud's error shows, the tool fails
    code, out, notes = run_usage(fake_logging, tmp_path, "--since", "1d")
    assert code == 1 and out == ""
    assert any("gcloud logging read failed" in n for _, n in notes), notes
