"""Issue 16's request-level findings, end to end against the gateway as the container runs it: no
redirect a client could be led along by, a logged address the client cannot forge, no key-document
details for unauthenticated callers, and no credential echoed back from an upstream error."""

from __future__ import annotations

import json

import pytest

from tests.conftest import API_KEYS, GatewayFactory
from tests.fakes.vertex import FakeVertex
from tests.faultkit import assert_openai_error, chat_body, get, post
from tests.harness import Gateway

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    ("method", "path", "shape"),
    [
        ("POST", "/v1/messages/", "anthropic"),
        ("POST", "/v1/messages/count_tokens/", "anthropic"),
        ("POST", "/v1/chat/completions/", "openai"),
        ("GET", "/health/", "openai"),
        ("GET", "/docs/", "openai"),
    ],
)
def test_trailing_slash_is_a_404_in_the_routes_shape_never_a_redirect(
    gateway: Gateway, method: str, path: str, shape: str
) -> None:
    # A 307 here carried a Location built from the client's Host, and SDKs re-send the key to it.
    headers = {"Host": "evil.example", "X-Forwarded-Proto": "http"}
    reply = (
        post(gateway, chat_body("slash"), path=path, headers=headers)
        if method == "POST"
        else get(gateway, path, API_KEYS["full"], headers)
    )
    assert reply.status == 404, reply.headers
    assert "location" not in reply.headers
    if shape == "anthropic":
        assert reply.json["type"] == "error" and reply.json["error"]["type"] == "not_found_error"
        message = reply.json["error"]["message"]
    else:
        message = assert_openai_error(reply, 404, "not_found")["message"]
    assert f"use {path.rstrip('/')}" in message
    line = gateway.wait_for_log(lambda e: e.get("logging.googleapis.com/trace", "").endswith(reply.trace))
    assert line["httpRequest"]["status"] == 404, "the refusal is logged"


def test_logged_address_is_the_one_the_front_end_appended(gateway: Gateway) -> None:
    reply = get(gateway, "/v1/models", API_KEYS["full"], {"X-Forwarded-For": "6.6.6.6, 203.0.113.7"})
    assert reply.status == 200
    line = gateway.wait_for_log(lambda e: e.get("logging.googleapis.com/trace", "").endswith(reply.trace))
    assert line["httpRequest"]["remoteIp"] == "203.0.113.7"


def test_a_forged_trace_header_never_reaches_a_log_field(gateway: Gateway) -> None:
    forged = '105445aa7843bc8bf206b12000100000/1;o=1", "key_id": "admin'
    reply = get(gateway, "/v1/models", API_KEYS["full"], {"X-Cloud-Trace-Context": forged, "User-Agent": "forge"})
    assert reply.status == 200
    line = gateway.wait_for_log(lambda e: e.get("httpRequest", {}).get("userAgent") == "forge")
    assert "logging.googleapis.com/trace" not in line and line["key_id"] == "team-full"


def test_unauthenticated_callers_never_see_key_ids_or_bad_values(gateway_factory: GatewayFactory) -> None:
    # Every entry broken: the document is refused whole, and the reasons name ids and values.
    document = [{"id": "alice-secret-team", "key": "k9zq"}, {"id": "bob-ops", "sha256": "not-hex-at-all"}]
    gw = gateway_factory({"API_KEYS_JSON": json.dumps(document)}, wait_healthy=False)
    health = None
    for _ in range(100):
        health = get(gw, "/health")
        if health.status == 503:
            break
    assert health is not None and health.status == 503
    replies = [health, get(gw, "/v1/models", API_KEYS["full"]), post(gw, chat_body("no-keys"))]
    for reply in replies:
        assert reply.status == 503
        for leaked in (b"alice-secret-team", b"bob-ops", b"k9zq", b"not-hex-at-all"):
            assert leaked not in reply.body, reply.body
    assert b"API_KEYS_JSON" in replies[0].body, "the kind of source is named, so the operator knows where to look"
    log = "\n".join(gw.lines())
    assert "alice-secret-team" in log, "the details go to the operator's log"


@pytest.mark.parametrize("shape", ["openai", "anthropic"])
def test_credentials_in_an_upstream_error_are_redacted(
    gateway: Gateway, fake_vertex: FakeVertex, shape: str, marker: str
) -> None:
    # An upstream may quote what a client put in its body: a Google token, one of the gateway's keys.
    our_key = "sk_live_Zq3v-9TOPSECRETkeyvalue_abcdefghijkl"
    leak = f"bad request from token ya29.c.b0AXv0zTOPSECRET-token_value for key {our_key} and Bearer another-secret"
    error = {"error": {"code": 400, "message": leak, "status": "INVALID_ARGUMENT"}}
    if shape == "openai":
        reply = post(gateway, chat_body(marker, fake={"status": 400, "error_body": error}))
        text = assert_openai_error(reply, 400)["message"]
    else:
        body = {
            "model": "sonnet",
            "max_tokens": 5,
            "messages": [{"role": "user", "content": marker}],
            "fake": {"status": 400, "error_body": {"type": "error", "error": {"type": "x", "message": leak}}},
        }
        reply = post(gateway, body, path="/v1/messages")
        assert reply.status == 400
        text = reply.json["error"]["message"]
    for secret in ("TOPSECRET", "another-secret"):
        assert secret not in text and secret.encode() not in reply.body
    assert "[redacted]" in text
    line = gateway.wait_for_log(lambda e: e.get("logging.googleapis.com/trace", "").endswith(reply.trace))
    assert "TOPSECRET" not in json.dumps(line) and "another-secret" not in json.dumps(line)
