"""The issued-key document and the KeyRing that answers "whose key is this?".

Keys are looked up by their SHA-256 digest, so the ring never holds or compares
plaintext, and the document itself may carry only digests.
"""

import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from fnmatch import translate
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from app.aliases import Model

_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
# An entry of `models`: an alias (app/config.py ALIAS_RE's characters) or a glob over aliases and model ids.
_MODEL_PATTERN = re.compile(r"^[A-Za-z0-9._@:/*?\[\]!-]{1,128}$")
_GLOB_CHARS = frozenset("*?[")


class KeyDocumentError(ValueError):
    """The document as a whole is unusable; the last good set stays in force."""


@dataclass(frozen=True, slots=True)
class KeyRecord:
    id: str
    enabled: bool
    models: frozenset[str] | None  # None: every model
    expires: float | None  # Unix time; the key is refused from this instant on
    rpm: int | None = None  # requests per minute, per worker (app/limits.py)
    max_concurrent: int | None = None  # requests in flight, per worker
    allow_resources: bool = False  # may make Vertex read project resources (app/resources.py)
    # From `models`, made once: the plain names (a set lookup) and the globs among them (one regex).
    _exact: frozenset[str] = field(init=False, repr=False, compare=False)
    _globs: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        models = self.models or frozenset()
        globs = sorted(m for m in models if not _GLOB_CHARS.isdisjoint(m))
        object.__setattr__(self, "_exact", models.difference(globs))
        joined = "|".join(f"(?:{translate(g)})" for g in globs)
        object.__setattr__(self, "_globs", re.compile(joined) if joined else None)

    @property
    def limited(self) -> bool:
        return self.rpm is not None or self.max_concurrent is not None

    def expired(self, now: float) -> bool:
        return self.expires is not None and now >= self.expires

    def may_use(self, model: "Model") -> bool:
        """The model allowlist, in one place: a key without `models` may use every model.

        An entry names an alias or is a glob (`*`, `?`, `[...]`, as fnmatch.fnmatchcase). A configured model
        is matched by its alias; a passed-through one by the id the caller sent or its Vertex name."""
        if self.models is None:
            return True
        names = (model.alias, model.name) if model.passthrough else (model.alias,)
        if any(name in self._exact for name in names):
            return True
        return self._globs is not None and any(self._globs.match(name) for name in names)


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


def _parse_expires(value: Any) -> float:
    if not isinstance(value, str):
        raise ValueError("'expires' must be an RFC 3339 string such as 2026-12-31T23:59:59Z")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"'expires' {value!r} is not RFC 3339 (e.g. 2026-12-31T23:59:59Z)") from None
    if moment.tzinfo is None:
        raise ValueError(f"'expires' {value!r} needs a time zone (e.g. a trailing Z)")
    return moment.timestamp()


# Far above any Vertex quota: a bigger number is a typo, and the limiter's memory does not depend on it.
MAX_LIMIT = 1_000_000


def _parse_limit(entry: dict[str, Any], name: str) -> int | None:
    value = entry.get(name)
    if value is None:
        return None
    # bool is an int in Python; `true` is no limit anyone meant.
    if type(value) is not int or not 1 <= value <= MAX_LIMIT:
        raise ValueError(f"'{name}' must be a whole number from 1 to {MAX_LIMIT} (or absent for no limit)")
    return value


def _parse_entry(entry: Any) -> tuple[bytes, KeyRecord]:
    if not isinstance(entry, dict):
        raise ValueError("entry must be a JSON object")
    key_id = entry.get("id")
    if not isinstance(key_id, str) or not key_id.strip():
        raise ValueError("'id' must be a non-empty string")
    if "key" in entry:
        key = entry["key"]
        if not isinstance(key, str) or len(key) < 8:
            raise ValueError("'key' must be a string of at least 8 characters")
        key_digest = digest(key)
    elif "sha256" in entry:
        hexdigest = entry["sha256"]
        if not isinstance(hexdigest, str) or not _HEX64.match(hexdigest):
            raise ValueError("'sha256' must be the 64-character hex SHA-256 of the key")
        key_digest = bytes.fromhex(hexdigest)
    else:
        raise ValueError("needs 'key' or 'sha256'")
    enabled = entry.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ValueError("'enabled' must be true or false")
    models = entry.get("models")
    if models is not None and (
        not isinstance(models, list) or not all(isinstance(m, str) and _MODEL_PATTERN.fullmatch(m) for m in models)
    ):
        raise ValueError(
            "'models' must be a list of model aliases or glob patterns (such as claude-*): each 1-128 letters, "
            "digits or ._@:/- and the glob characters * ? [ ] !"
        )
    expires = _parse_expires(entry["expires"]) if entry.get("expires") is not None else None
    allow_resources = entry.get("allow_resources", False)
    if not isinstance(allow_resources, bool):
        raise ValueError("'allow_resources' must be true or false")
    record = KeyRecord(
        key_id,
        enabled,
        frozenset(models) if models is not None else None,
        expires,
        rpm=_parse_limit(entry, "rpm"),
        max_concurrent=_parse_limit(entry, "max_concurrent"),
        allow_resources=allow_resources,
    )
    return key_digest, record


def parse_key_document(raw: bytes | str) -> tuple[dict[bytes, KeyRecord], list[str]]:
    """Parse the document; bad entries are skipped and reported, never fatal."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise KeyDocumentError(f"key document is not valid JSON: {exc}") from None
    if not isinstance(data, list):
        raise KeyDocumentError("key document must be a JSON array of key records")
    records: dict[bytes, KeyRecord] = {}
    seen_ids: set[str] = set()
    problems: list[str] = []
    for position, entry in enumerate(data):
        label = f"entry {position}"
        if isinstance(entry, dict) and isinstance(entry.get("id"), str):
            label += f" (id {entry['id']!r})"
        try:
            key_digest, record = _parse_entry(entry)
        except ValueError as exc:
            problems.append(f"{label} skipped: {exc}")
            continue
        if record.id in seen_ids:
            problems.append(f"{label} skipped: duplicate id")
            continue
        if key_digest in records:
            problems.append(f"{label} skipped: same key as id {records[key_digest].id!r}")
            continue
        seen_ids.add(record.id)
        records[key_digest] = record
    if data and not records:
        # Every entry broken looks like a botched edit, not an intent to lock everyone out.
        raise KeyDocumentError(f"key document has no usable entry: {'; '.join(problems[:5])}")
    return records, problems


class KeyRing:
    """The keys in force in this worker; replaced whole on every good load.

    `clock` is the wall-clock time (Unix seconds) that key expiry is judged by; tests pass a fake one.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._records: dict[bytes, KeyRecord] = {}
        self.loaded = False
        self.loaded_at: float | None = None
        self.version: str | None = None

    def replace(self, records: dict[bytes, KeyRecord], version: str | None = None) -> None:
        self._records = records
        self.loaded = True
        self.loaded_at = self.clock()
        self.version = version

    def load_document(self, raw: bytes | str, version: str | None = None) -> list[str]:
        records, problems = parse_key_document(raw)
        self.replace(records, version)
        return problems

    def lookup(self, presented: str) -> KeyRecord | None:
        return self._records.get(digest(presented))

    def __len__(self) -> int:
        return len(self._records)
