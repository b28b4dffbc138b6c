import hashlib
import time

import orjson
import pytest

from app.keys import KeyDocumentError, KeyRing, parse_key_document


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
