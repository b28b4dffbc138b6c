"""One key-document schema (issue 11): the gateway (app/key_ring.py) and scripts/keys judge every document alike.

scripts/keys is a single stdlib-only file that restates the gateway's rules (it runs with any system
python3, without the app's dependencies). This table is the contract between the two restatements:
for each document both must give the same verdict, either "the whole document is refused" or the same
accepted ids in the same order and the same skipped entries. A rule added on one side only fails here.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import re
import sys
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from app.key_ring import KeyDocumentError, parse_key_document

KEYS_SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "keys"

Verdict = tuple[tuple[str, ...], frozenset[int]] | str
REFUSED = "whole document refused"


@cache
def keys_tool() -> ModuleType:
    """scripts/keys as a module (it has no .py suffix, so name the loader)."""
    loader = importlib.machinery.SourceFileLoader("scripts_keys", str(KEYS_SCRIPT))
    spec = importlib.util.spec_from_loader("scripts_keys", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["scripts_keys"] = module
    loader.exec_module(module)
    return module


def gateway_verdict(raw: bytes) -> Verdict:
    try:
        records, problems = parse_key_document(raw)
    except KeyDocumentError:
        return REFUSED
    skipped = frozenset(int(m.group(1)) for p in problems if (m := re.match(r"entry (\d+)", p)))
    assert len(skipped) == len(problems), problems
    return tuple(r.id for r in records.values()), skipped


def tool_verdict(raw: bytes) -> Verdict:
    tool = keys_tool()
    try:
        doc = tool.load_document(raw, "doc")
    except tool.KeysError:
        return REFUSED
    accepted, problems = tool.screen(doc)
    if doc and not accepted:
        return REFUSED  # the gateway's rule: every entry broken is a botched edit, not a lock-out
    skipped = frozenset(int(m.group(1)) for p in problems if (m := re.match(r"entry #(\d+)", p)))
    return tuple(r["id"] for r in accepted), skipped


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


GOOD = {"id": "ok", "sha256": sha("ok-key-123")}

# (name, entries placed after GOOD, expected verdict of the entries; GOOD keeps every document usable)
ENTRY_CASES: list[tuple[str, Any, bool]] = [
    ("digest only", {"id": "a", "sha256": sha("a-key-123")}, True),
    ("upper-case digest", {"id": "a", "sha256": sha("a-key-123").upper()}, True),
    ("plaintext key", {"id": "a", "key": "sk_dev_12345678"}, True),
    ("plaintext key of 8", {"id": "a", "key": "12345678"}, True),
    ("plaintext key under 8 characters", {"id": "short", "key": "abc"}, False),
    ("plaintext key not a string", {"id": "a", "key": 12345678}, False),
    ("null key beside a good digest", {"id": "a", "key": None, "sha256": sha("x-key-123")}, False),
    ("bad digest", {"id": "a", "sha256": "xyz"}, False),
    ("digest of 63", {"id": "a", "sha256": "a" * 63}, False),
    ("no key and no digest", {"id": "a"}, False),
    ("no id", {"sha256": sha("a-key-123")}, False),
    ("empty id", {"id": "", "sha256": sha("a-key-123")}, False),
    ("blank id", {"id": "  ", "sha256": sha("a-key-123")}, False),
    ("id not a string", {"id": 7, "sha256": sha("a-key-123")}, False),
    ("not an object", "junk", False),
    ("enabled false", {"id": "a", "sha256": sha("a-key-123"), "enabled": False}, True),
    ("enabled not a bool", {"id": "a", "sha256": sha("a-key-123"), "enabled": "yes"}, False),
    ("models", {"id": "a", "sha256": sha("a-key-123"), "models": ["flash"]}, True),
    ("no models at all", {"id": "a", "sha256": sha("a-key-123"), "models": []}, True),
    # An empty name or a character no alias or model id has is a typo, not a wish to reach nothing: both skip.
    ("empty model name", {"id": "a", "sha256": sha("a-key-123"), "models": ["flash", ""]}, False),
    ("model name with a space", {"id": "a", "sha256": sha("a-key-123"), "models": ["gemini 2.5"]}, False),
    ("model name with a newline", {"id": "a", "sha256": sha("a-key-123"), "models": ["flash\n"]}, False),
    ("model name with a brace", {"id": "a", "sha256": sha("a-key-123"), "models": ["claude-{opus,sonnet}"]}, False),
    ("model name with a non-ASCII letter", {"id": "a", "sha256": sha("a-key-123"), "models": ["flásh"]}, False),
    ("model name of 129", {"id": "a", "sha256": sha("a-key-123"), "models": ["a" * 129]}, False),
    ("model name of 128", {"id": "a", "sha256": sha("a-key-123"), "models": ["a" * 128]}, True),
    ("alias characters", {"id": "a", "sha256": sha("a-key-123"), "models": ["team/fast:v1.2_@x"]}, True),
    ("glob patterns", {"id": "a", "sha256": sha("a-key-123"), "models": ["claude-*", "gemini-2.?-*", "flash"]}, True),
    ("bracket patterns", {"id": "a", "sha256": sha("a-key-123"), "models": ["claude-[!o]*", "gemini-[23]*"]}, True),
    ("a lone star", {"id": "a", "sha256": sha("a-key-123"), "models": ["*"]}, True),
    ("models not a list", {"id": "a", "sha256": sha("a-key-123"), "models": "flash"}, False),
    ("model not a string", {"id": "a", "sha256": sha("a-key-123"), "models": [1]}, False),
    ("expires Z", {"id": "a", "sha256": sha("a-key-123"), "expires": "2026-12-31T23:59:59Z"}, True),
    ("expires offset", {"id": "a", "sha256": sha("a-key-123"), "expires": "2026-12-31T23:59:59+02:00"}, True),
    ("expires fraction", {"id": "a", "sha256": sha("a-key-123"), "expires": "2026-12-31T23:59:59.5Z"}, True),
    ("expires without seconds", {"id": "a", "sha256": sha("a-key-123"), "expires": "2026-12-31T23:59Z"}, True),
    ("expires without zone", {"id": "a", "sha256": sha("a-key-123"), "expires": "2026-12-31T23:59:59"}, False),
    ("expires a date", {"id": "a", "sha256": sha("a-key-123"), "expires": "2026-12-31"}, False),
    ("expires words", {"id": "a", "sha256": sha("a-key-123"), "expires": "tomorrow"}, False),
    ("expires a number", {"id": "a", "sha256": sha("a-key-123"), "expires": 1767225599}, False),
    ("expires null", {"id": "a", "sha256": sha("a-key-123"), "expires": None}, True),
    ("rpm", {"id": "a", "sha256": sha("a-key-123"), "rpm": 60}, True),
    ("rpm at the cap", {"id": "a", "sha256": sha("a-key-123"), "rpm": 1_000_000}, True),
    ("rpm over the cap", {"id": "a", "sha256": sha("a-key-123"), "rpm": 1_000_001}, False),
    ("rpm zero", {"id": "a", "sha256": sha("a-key-123"), "rpm": 0}, False),
    ("rpm true", {"id": "a", "sha256": sha("a-key-123"), "rpm": True}, False),
    ("rpm a float", {"id": "a", "sha256": sha("a-key-123"), "rpm": 6.0}, False),
    ("max_concurrent", {"id": "a", "sha256": sha("a-key-123"), "max_concurrent": 4}, True),
    ("max_concurrent a string", {"id": "a", "sha256": sha("a-key-123"), "max_concurrent": "4"}, False),
    ("allow_resources", {"id": "a", "sha256": sha("a-key-123"), "allow_resources": True}, True),
    ("allow_resources 1", {"id": "a", "sha256": sha("a-key-123"), "allow_resources": 1}, False),
    ("fields the gateway ignores", {"id": "a", "sha256": sha("a-key-123"), "grace_for": "b", "note": 1}, True),
]


def expected(accepted: bool, entry: Any) -> Verdict:
    return ("ok", entry["id"]) if accepted else ("ok",), frozenset() if accepted else frozenset({1})


@pytest.mark.parametrize(("name", "entry", "accepted"), ENTRY_CASES, ids=[c[0] for c in ENTRY_CASES])
def test_one_entry_gets_the_same_verdict(name: str, entry: Any, accepted: bool) -> None:
    raw = json.dumps([GOOD, entry]).encode()
    assert gateway_verdict(raw) == tool_verdict(raw) == expected(accepted, entry), name


DOCUMENT_CASES: list[tuple[str, bytes, Verdict]] = [
    ("empty array", b"[]", ((), frozenset())),
    ("not JSON", b"{not json", REFUSED),
    ("an object", json.dumps({"id": "a", "sha256": sha("a")}).encode(), REFUSED),
    ("a string", b'"keys"', REFUSED),
    ("every entry broken", json.dumps([{"id": "short", "key": "abc"}, "junk"]).encode(), REFUSED),
    ("only the short key", json.dumps([{"id": "short", "key": "abc"}]).encode(), REFUSED),
    ("NaN", b'[{"id": "a", "sha256": "' + sha("a").encode() + b'", "rpm": NaN}]', REFUSED),
    ("Infinity", b'[{"id": "a", "sha256": "' + sha("a").encode() + b'", "rpm": 1e400}]', REFUSED),
    ("lone surrogate", b'[{"id": "\\ud800", "sha256": "' + sha("a").encode() + b'"}]', REFUSED),
    ("byte order mark", b"\xef\xbb\xbf[]", REFUSED),
    ("not UTF-8", b'[{"id": "\xff"}]', REFUSED),
    (
        "duplicate id: the first wins",
        json.dumps([{"id": "a", "sha256": sha("k1-key-1")}, {"id": "a", "sha256": sha("k2-key-2")}]).encode(),
        (("a",), frozenset({1})),
    ),
    (
        "duplicate id after a skipped entry: the valid one wins",
        json.dumps([{"id": "a", "sha256": "bad"}, {"id": "a", "sha256": sha("k2-key-2")}]).encode(),
        (("a",), frozenset({0})),
    ),
    (
        "duplicate digest",
        json.dumps([{"id": "a", "sha256": sha("same-key-1")}, {"id": "b", "sha256": sha("same-key-1")}]).encode(),
        (("a",), frozenset({1})),
    ),
    (
        "duplicate digest, upper and lower case",
        json.dumps(
            [{"id": "a", "sha256": sha("same-key-1")}, {"id": "b", "sha256": sha("same-key-1").upper()}]
        ).encode(),
        (("a",), frozenset({1})),
    ),
    (
        "duplicate digest, plaintext and hashed",
        json.dumps([{"id": "a", "key": "same-key-1"}, {"id": "b", "sha256": sha("same-key-1")}]).encode(),
        (("a",), frozenset({1})),
    ),
    (
        "the conftest document",
        json.dumps(
            [
                {"id": "dev", "key": "sk_dev_0123456789", "enabled": True},
                {"id": "alice", "sha256": sha("alice-key"), "models": ["flash"], "expires": "2999-01-01T00:00:00Z"},
                {"id": "bob", "sha256": sha("bob-key"), "enabled": False, "rpm": 5, "max_concurrent": 2},
            ]
        ).encode(),
        (("dev", "alice", "bob"), frozenset()),
    ),
]


@pytest.mark.parametrize(("name", "raw", "verdict"), DOCUMENT_CASES, ids=[c[0] for c in DOCUMENT_CASES])
def test_whole_documents_get_the_same_verdict(name: str, raw: bytes, verdict: Verdict) -> None:
    assert gateway_verdict(raw) == tool_verdict(raw) == verdict, name


def test_the_tool_writes_nothing_the_gateway_would_skip() -> None:
    # A write keeps every entry as it is (or hashes a plaintext key), so any skipped entry stops it:
    # the short key is no longer hashed into a sha256 record that the gateway would then accept.
    tool = keys_tool()
    raw = json.dumps([GOOD, {"id": "short", "key": "abc"}]).encode()
    with pytest.raises(tool.KeysError, match=r"entry #1 \(id 'short'\): \"key\" must be a string of at least 8"):
        tool.parse_document(raw, "doc")
    # What it does write, the gateway accepts whole.
    records = tool.tidy(
        tool.parse_document(json.dumps([GOOD, {"id": "a", "key": "sk_dev_12345678"}]).encode(), "d"), tool.utcnow()
    )
    written = tool.render_document(records)
    assert gateway_verdict(written) == (("ok", "a"), frozenset())
    assert "sk_dev_12345678" not in written.decode()


def test_the_restated_constants_match_the_gateway() -> None:
    from app import key_ring as gateway

    tool = keys_tool()
    assert tool.MAX_LIMIT == gateway.MAX_LIMIT
    assert tool._HEX64.pattern == gateway._HEX64.pattern
    assert tool._MODEL_PATTERN.pattern == gateway._MODEL_PATTERN.pattern
    assert tool.digest("ключ\U0001f511") == gateway.digest("ключ\U0001f511").hex()
