"""A local Cloud Logging v2 fake (`entries:list` with paging), and the Logging query language subset it
understands, which tests/test_usage.py also uses to evaluate the log-based metrics in infra/.

The real `gcloud logging read` talks to it through CLOUDSDK_API_ENDPOINT_OVERRIDES_LOGGING (see
`gcloud_env()`). `as_log_entry()` turns one JSON line a container wrote on stdout into the LogEntry
Cloud Run's logging agent makes of it: `severity`, `httpRequest` and the `logging.googleapis.com/*`
fields become the entry's own fields; everything else, `message` included, stays in `jsonPayload`
(https://cloud.google.com/logging/docs/structured-logging, "Special JSON fields in messages").

The query subset (https://cloud.google.com/logging/docs/view/logging-query-language), kept small so the
evaluator stays faithful; anything else raises QueryError rather than guessing:

- comparisons `FIELD OP VALUE` joined by `AND` (upper case, as the docs spell it); no OR, NOT,
  parentheses or implicit AND;
- FIELD: a dotted path into the LogEntry (`jsonPayload.usage.input_tokens`, `httpRequest.status`,
  `resource.labels.service_name`, `logName`, `severity`, `timestamp`);
- OP: `=` (equal), `>`, `<`, `>=`, `<=` (numbers compare as numbers, `severity` by its order,
  `timestamp` as instants, strings as strings) and `:` (has: case-insensitive substring);
- VALUE: a double-quoted string (backslash escapes), a number, or a bare word (`ERROR`);
- a missing or null field matches no comparison.

Extractors (log-based metric labels and values): `EXTRACT(FIELD)` and `REGEXP_EXTRACT(FIELD, "RE")`
with exactly one capture group, the field converted to a string first; a missing field or no match
gives None (a label then takes its default, the empty string; a value is not recorded). The regexes
infra/ uses are anchored at both ends, so partial and full matching agree.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from tests.fakes import BackgroundServer, gcloud_env

SEVERITIES = ("DEFAULT", "DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL", "ALERT", "EMERGENCY")
_SPECIAL = {
    "logging.googleapis.com/trace": "trace",
    "logging.googleapis.com/spanId": "spanId",
    "logging.googleapis.com/trace_sampled": "traceSampled",
    "logging.googleapis.com/labels": "labels",
    "logging.googleapis.com/insertId": "insertId",
    "logging.googleapis.com/sourceLocation": "sourceLocation",
    "logging.googleapis.com/operation": "operation",
}


class QueryError(ValueError):
    """A query outside the subset this module implements."""


def as_log_entry(
    line: dict[str, Any],
    project: str,
    service: str,
    timestamp: str,
    insert_id: str,
    log_id: str = "run.googleapis.com%2Fstdout",
) -> dict[str, Any]:
    """The LogEntry Cloud Run's agent writes for one structured stdout line."""
    payload = dict(line)
    entry: dict[str, Any] = {
        "insertId": insert_id,
        "logName": f"projects/{project}/logs/{log_id}",
        "resource": {
            "type": "cloud_run_revision",
            "labels": {
                "project_id": project,
                "service_name": service,
                "revision_name": f"{service}-00001-abc",
                "configuration_name": service,
                "location": "europe-west1",
            },
        },
        "timestamp": timestamp,
        "receiveTimestamp": timestamp,
        "severity": payload.pop("severity", "DEFAULT"),
    }
    if isinstance(payload.get("httpRequest"), dict):
        entry["httpRequest"] = payload.pop("httpRequest")
    for special, field in _SPECIAL.items():
        if special in payload:
            entry[field] = payload.pop(special)
    entry["jsonPayload"] = payload
    return entry


# -- the query subset --------------------------------------------------------------

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<op>>=|<=|!=|=~|!~|[=<>:])
      | (?P<word>[A-Za-z0-9_./%@*+-]+)
      | (?P<other>\S)
    )""",
    re.X,
)


@dataclass(frozen=True)
class Comparison:
    field: str
    op: str
    value: str | float
    quoted: bool


def _tokens(query: str) -> list[tuple[str, str]]:
    out = []
    pos = 0
    query = query.strip()
    while pos < len(query):
        match = _TOKEN.match(query, pos)
        if not match or match.end() == pos:
            break
        kind = match.lastgroup or "other"
        out.append((kind, match.group(kind)))
        pos = match.end()
    return out


def parse(query: str) -> list[Comparison]:
    """`A AND B AND ...` as comparisons; QueryError on anything outside the subset."""
    tokens = _tokens(query)
    comparisons: list[Comparison] = []
    i = 0
    while i < len(tokens):
        if len(tokens) - i < 3:
            raise QueryError(f"incomplete comparison at {tokens[i:]!r} in {query!r}")
        (fkind, field), (okind, op), (vkind, raw) = tokens[i : i + 3]
        if fkind != "word" or field in ("AND", "OR", "NOT") or okind != "op" or vkind not in ("string", "word"):
            raise QueryError(f"not FIELD OP VALUE: {tokens[i : i + 3]!r} in {query!r}")
        if op not in ("=", "<", ">", "<=", ">=", ":"):
            raise QueryError(f"operator {op!r} is outside the subset ({query!r})")
        if vkind == "string":
            value: str | float = json.loads(raw)
        else:
            try:
                value = float(raw)
            except ValueError:
                value = raw
        comparisons.append(Comparison(field, op, value, vkind == "string"))
        i += 3
        if i < len(tokens):
            if tokens[i] != ("word", "AND"):
                raise QueryError(f"expected AND, found {tokens[i][1]!r} in {query!r}")
            i += 1
            if i == len(tokens):
                raise QueryError(f"dangling AND in {query!r}")
    if not comparisons:
        raise QueryError("empty query")
    return comparisons


def field_value(entry: dict[str, Any], path: str) -> Any:
    """The value at a dotted path, or None when any step is missing."""
    node: Any = entry
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def _compare(left: Any, op: str, right: Any) -> bool:
    if op == "=":
        return bool(left == right)
    if op == "<":
        return bool(left < right)
    if op == ">":
        return bool(left > right)
    if op == "<=":
        return bool(left <= right)
    return bool(left >= right)


def matches_one(entry: dict[str, Any], c: Comparison) -> bool:
    actual = field_value(entry, c.field)
    if actual is None or isinstance(actual, dict | list):
        return False
    if c.op == ":":
        return str(c.value).lower() in _scalar_text(actual).lower()
    if c.field == "severity":
        return _compare(SEVERITIES.index(str(actual)), c.op, SEVERITIES.index(str(c.value)))
    if c.field in ("timestamp", "receiveTimestamp"):
        return _compare(_instant(str(actual)), c.op, _instant(str(c.value)))
    if isinstance(c.value, float) or (not c.quoted and _is_number(c.value)):
        number = _number(actual)
        return number is not None and _compare(number, c.op, float(c.value))
    return _compare(_scalar_text(actual), c.op, str(c.value))


def matches(entry: dict[str, Any], query: str) -> bool:
    return all(matches_one(entry, c) for c in parse(query))


def _is_number(value: Any) -> bool:
    return _number(value) is not None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value))
    except ValueError:
        return None


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# -- extractors ----------------------------------------------------------------------

_EXTRACT = re.compile(r"^\s*EXTRACT\(\s*([A-Za-z0-9_.]+)\s*\)\s*$")
_REGEXP_EXTRACT = re.compile(r'^\s*REGEXP_EXTRACT\(\s*([A-Za-z0-9_.]+)\s*,\s*("(?:[^"\\]|\\.)*")\s*\)\s*$')


def extractor_field(expression: str) -> tuple[str, re.Pattern[str] | None]:
    """The field path an extractor reads, and its regex (one capture group) when it has one."""
    if match := _EXTRACT.match(expression):
        return match.group(1), None
    if match := _REGEXP_EXTRACT.match(expression):
        pattern = re.compile(json.loads(match.group(2)))
        if pattern.groups != 1:
            raise QueryError(f"{expression}: REGEXP_EXTRACT needs exactly one capture group")
        return match.group(1), pattern
    raise QueryError(f"not an extractor this module implements: {expression!r}")


def extract(entry: dict[str, Any], expression: str) -> str | None:
    path, pattern = extractor_field(expression)
    value = field_value(entry, path)
    if value is None or isinstance(value, dict | list):
        return None
    text = _scalar_text(value)
    if pattern is None:
        return text
    found = pattern.search(text)
    return found.group(1) if found else None


# -- the server ------------------------------------------------------------------------


class FakeLogging(BackgroundServer):
    """`POST /v2/entries:list`: resourceNames, filter (the subset above), orderBy, pageSize, pageToken.

    `entries` holds LogEntry dicts. `page_delay` (seconds) holds every page after the first, so a test
    can see that a reader shows progress before the read ends. `deny` answers every call 403.
    `requests` records each call's body; `served_at` the monotonic time each page went out.
    """

    MAX_PAGE = 1000  # the API's own upper bound on pageSize

    def __init__(self, token: str = "test-token") -> None:
        super().__init__()
        self.token = token
        self.entries: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []
        self.page_delay = 0.0
        self.deny = False  # every call answers 403, as for a caller without logging.logEntries.list
        self.served_at: list[float] = []
        self._lock = threading.Lock()

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v2/entries:list", self._list)
        app.router.add_route("*", "/{tail:.*}", self._unknown)
        return app

    def gcloud_env(self, config_dir: str, project: str = "test-project") -> dict[str, str]:
        """Variables that make the real gcloud read logs from this fake, offline, with a fixed token."""
        return gcloud_env(config_dir, "LOGGING", self.url, self.token, project)

    async def _unknown(self, request: web.Request) -> web.Response:
        return _error(404, "NOT_FOUND", f"the fake implements only entries:list, not {request.method} {request.path}")

    async def _list(self, request: web.Request) -> web.Response:
        import asyncio
        import time

        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return _error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
        if self.deny:
            return _error(403, "PERMISSION_DENIED", "Permission 'logging.logEntries.list' denied on resource.")
        body = await request.json()
        with self._lock:
            self.requests.append(body)
        names = body.get("resourceNames") or []
        if not names or not all(re.fullmatch(r"projects/[a-z][a-z0-9-]+", n) for n in names):
            return _error(400, "INVALID_ARGUMENT", f"resourceNames must be projects/PROJECT, got {names!r}")
        projects = {n.split("/", 1)[1] for n in names}
        query = body.get("filter") or ""
        try:
            conditions = parse(query) if query.strip() else []
        except QueryError as exc:
            return _error(400, "INVALID_ARGUMENT", f"the fake cannot evaluate this filter: {exc}")
        order = (body.get("orderBy") or "timestamp asc").lower()
        if order not in ("timestamp asc", "timestamp desc"):
            return _error(400, "INVALID_ARGUMENT", f"orderBy {order!r}")
        size = min(int(body.get("pageSize") or self.MAX_PAGE), self.MAX_PAGE)
        start = int(body.get("pageToken") or 0)
        if start and self.page_delay:
            await asyncio.sleep(self.page_delay)
        with self._lock:
            chosen = [
                e
                for e in self.entries
                if e["logName"].split("/")[1] in projects and all(matches_one(e, c) for c in conditions)
            ]
        chosen.sort(key=lambda e: _instant(e["timestamp"]), reverse=order.endswith("desc"))
        page = chosen[start : start + size]
        reply: dict[str, Any] = {"entries": page}
        if start + size < len(chosen):
            reply["nextPageToken"] = str(start + size)
        with self._lock:
            self.served_at.append(time.monotonic())
        return web.json_response(reply)


def _error(code: int, status: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message, "status": status}}, status=code)
