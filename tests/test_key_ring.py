import hashlib
import time

import orjson
import pytest

from app.aliases import Model
from app.key_ring import KeyDocumentError, KeyRecord, KeyRing, parse_key_document


def doc(*entries: object) -> bytes:
    return orjson.dumps(list(entries))


def test_plain_and_hashed_keys_are_found_by_digest() -> None:
    ring = KeyRing()
    problems = ring.load_document(
        doc(
            {"id": "a", "key": "sk_live_alpha_123", "enabled": True},
            {
                "id": "b",
                "sha256": hashlib.sha256(b"sk_live_beta_456").hexdigest(),
                "enabled": True,
                "models": ["flash"],
            },
        )
    )
    assert problems == []
    assert ring.lookup("sk_live_alpha_123").id == "a"  # type: ignore[union-attr]
    beta = ring.lookup("sk_live_beta_456")
    assert beta is not None and beta.models == frozenset({"flash"})
    assert ring.lookup("sk_live_alpha_12") is None
    assert ring.lookup("") is None


def test_ring_holds_no_plaintext() -> None:
    ring = KeyRing()
    ring.load_document(doc({"id": "a", "key": "sk_live_secret_value"}))
    assert b"sk_live_secret_value" not in repr(ring._records).encode()


def test_malformed_entries_are_reported_by_position_and_id_and_skipped() -> None:
    records, problems = parse_key_document(
        doc(
            {"id": "good", "key": "sk_live_good_key"},
            {"id": "nokey", "enabled": True},
            "not an object",
            {"id": "badhex", "sha256": "xyz"},
            {"id": "badexp", "key": "sk_live_other_key", "expires": "tomorrow"},
            {"id": "good", "key": "sk_live_dupe_id_key"},
            {"id": "enabled", "key": "sk_live_enabled_key", "enabled": "yes"},
            {"id": "models", "key": "sk_live_models_key", "models": "flash"},
        )
    )
    assert [r.id for r in records.values()] == ["good"]
    joined = "\n".join(problems)
    for needle in (
        "entry 1 (id 'nokey')",
        "entry 2",
        "entry 3 (id 'badhex')",
        "entry 4 (id 'badexp')",
        "entry 5 (id 'good') skipped: duplicate id",
        "entry 6",
        "entry 7",
    ):
        assert needle in joined


@pytest.mark.parametrize("raw", [b"{not json", b'{"id": "a"}', doc({"id": "x"}, {"nope": 1})])
def test_unusable_document_raises(raw: bytes) -> None:
    with pytest.raises(KeyDocumentError):
        parse_key_document(raw)


def test_empty_document_is_a_valid_empty_set() -> None:
    records, problems = parse_key_document(b"[]")
    assert records == {} and problems == []


def test_expiry_is_exact() -> None:
    records, _ = parse_key_document(doc({"id": "e", "key": "sk_live_expiring", "expires": "2030-01-01T00:00:00Z"}))
    (record,) = records.values()
    assert record.expires == 1893456000.0
    assert not record.expired(1893455999.999)
    assert record.expired(1893456000.0)
    assert not record.expired(time.time())


def test_expiry_needs_a_time_zone() -> None:
    _, problems = parse_key_document(
        doc(
            {"id": "ok", "key": "sk_live_fine_key"},
            {"id": "z", "key": "sk_live_zoneless", "expires": "2030-01-01T00:00:00"},
        )
    )
    assert "time zone" in problems[0]


def test_failed_load_keeps_last_good_set() -> None:
    ring = KeyRing()
    ring.load_document(doc({"id": "a", "key": "sk_live_alpha_123"}), "v1")
    with pytest.raises(KeyDocumentError):
        ring.load_document(b"garbage", "v2")
    assert ring.version == "v1"
    assert ring.lookup("sk_live_alpha_123") is not None


def test_limits_and_allow_resources_are_validated_like_the_other_fields() -> None:
    records, problems = parse_key_document(
        doc(
            {"id": "ok", "key": "sk_live_ok_key_1", "rpm": 1, "max_concurrent": 1_000_000, "allow_resources": False},
            {"id": "nulls", "key": "sk_live_ok_key_2", "rpm": None, "max_concurrent": None},
            {"id": "zero", "key": "sk_live_zero_key", "rpm": 0},
            {"id": "float", "key": "sk_live_float_key", "rpm": 1.5},
            {"id": "bool", "key": "sk_live_bool_key", "max_concurrent": True},
            {"id": "string", "key": "sk_live_string_key", "rpm": "60"},
            {"id": "huge", "key": "sk_live_huge_key", "max_concurrent": 1_000_001},
            {"id": "allow", "key": "sk_live_allow_key", "allow_resources": "yes"},
        )
    )
    assert sorted(r.id for r in records.values()) == ["nulls", "ok"]
    joined = "\n".join(problems)
    for ident, field in (
        ("zero", "'rpm'"),
        ("float", "'rpm'"),
        ("bool", "'max_concurrent'"),
        ("string", "'rpm'"),
        ("huge", "'max_concurrent'"),
        ("allow", "'allow_resources'"),
    ):
        assert f"(id {ident!r}) skipped: {field}" in joined, ident


def record_with(models: list[str] | None) -> KeyRecord:
    records, problems = parse_key_document(doc({"id": "k", "key": "sk_live_models_key", "models": models}))
    assert problems == []
    (record,) = records.values()
    return record


SONNET = Model("sonnet", "anthropic/claude-sonnet-4-6")
FLASH = Model("flash", "google/gemini-2.5-flash")
# Passed through: the caller's id is the alias, the Vertex name may differ (a dated id).
DATED = Model("claude-sonnet-4-5-20250929", "anthropic/claude-sonnet-4-5@20250929", passthrough=True)
OPUS_5 = Model("anthropic/claude-opus-5", "anthropic/claude-opus-5", passthrough=True)
GEMINI_3 = Model("gemini-3-pro-preview", "google/gemini-3-pro-preview", passthrough=True)


@pytest.mark.parametrize(
    ("models", "model", "allowed"),
    [
        (None, SONNET, True),
        (None, DATED, True),
        ([], SONNET, False),
        ([], DATED, False),
        # Exact names behave as before: a configured model by its alias only.
        (["sonnet"], SONNET, True),
        (["sonnet"], FLASH, False),
        (["claude-sonnet-4-6"], SONNET, False),
        (["sonnet"], DATED, False),
        # Globs over aliases.
        (["s*"], SONNET, True),
        (["?lash"], FLASH, True),
        (["[fg]*"], FLASH, True),
        (["[!f]*"], FLASH, False),
        (["claude-*"], SONNET, False),
        (["*"], FLASH, True),
        # A passed-through model: by the id as sent or by its Vertex name.
        (["claude-sonnet-4-5-20250929"], DATED, True),
        (["claude-sonnet-4-5@20250929"], DATED, True),
        (["claude-*"], DATED, True),
        (["claude-*@2025*"], DATED, True),
        (["claude-opus-*"], DATED, False),
        (["claude-opus-*"], OPUS_5, True),
        (["anthropic/*"], OPUS_5, True),  # the id as sent carried the publisher
        (["anthropic/*"], DATED, False),
        (["gemini-3-*", "flash"], GEMINI_3, True),
        (["gemini-3-*", "flash"], FLASH, True),
        (["gemini-3-*", "flash"], SONNET, False),
        (["gemini-2.?-*"], GEMINI_3, False),
        # fnmatchcase: case counts, and a pattern matches the whole name.
        (["Claude-*"], DATED, False),
        (["claude-sonnet"], DATED, False),
        (["*sonnet*"], DATED, True),
    ],
)
def test_models_may_hold_glob_patterns(models: list[str] | None, model: Model, allowed: bool) -> None:
    assert record_with(models).may_use(model) is allowed


def test_plain_names_need_no_pattern_matching() -> None:
    record = record_with(["flash", "sonnet", "claude-opus-*"])
    assert record.models == frozenset({"flash", "sonnet", "claude-opus-*"})
    assert record._exact == frozenset({"flash", "sonnet"})
    assert record._globs is not None and record._globs.match("claude-opus-5")
    assert record_with(["flash"])._globs is None


def test_directly_built_records_match_globs_too() -> None:
    record = KeyRecord("k", True, frozenset({"gemini-*"}), None)
    assert record.may_use(GEMINI_3) and not record.may_use(FLASH)
    assert record == KeyRecord("k", True, frozenset({"gemini-*"}), None)


@pytest.mark.parametrize("bad", ["", "gemini 3", "flash\n", "claude-{opus}", "x" * 129, "fläsh", "a,b"])
def test_bad_model_entries_skip_the_record(bad: str) -> None:
    _, problems = parse_key_document(
        doc({"id": "ok", "key": "sk_live_ok_key_1"}, {"id": "bad", "key": "sk_live_bad_key_1", "models": [bad]})
    )
    assert len(problems) == 1 and "(id 'bad') skipped: 'models' must be a list of model aliases or glob" in problems[0]
