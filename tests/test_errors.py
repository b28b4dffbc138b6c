import orjson
import pytest

from app.errors import Shape, convert_upstream_error, error_body

GOOGLE_429 = {"error": {"code": 429, "message": "Resource exhausted.", "status": "RESOURCE_EXHAUSTED"}}


@pytest.mark.parametrize("body", [orjson.dumps(GOOGLE_429), orjson.dumps([GOOGLE_429])])
def test_google_errors_become_openai_errors(body: bytes) -> None:
    error = orjson.loads(convert_upstream_error(Shape.OPENAI, 429, body))["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "rate_limit_error"
    assert error["code"] == "RESOURCE_EXHAUSTED"
    assert "Resource exhausted." in error["message"] and "Retry-After" in error["message"]


def test_google_errors_become_anthropic_errors() -> None:
    converted = orjson.loads(convert_upstream_error(Shape.ANTHROPIC, 429, orjson.dumps(GOOGLE_429)))
    assert converted["type"] == "error"
    assert converted["error"]["type"] == "rate_limit_error"


def test_already_shaped_errors_pass_unchanged() -> None:
    openai = orjson.dumps({"error": {"message": "m", "type": "invalid_request_error", "param": None, "code": None}})
    assert convert_upstream_error(Shape.OPENAI, 400, openai) == openai
    anthropic = orjson.dumps({"type": "error", "error": {"type": "overloaded_error", "message": "busy"}})
    assert convert_upstream_error(Shape.ANTHROPIC, 529, anthropic) == anthropic


def test_google_shape_passes_google_errors_and_renders_ours_as_google_does() -> None:
    assert convert_upstream_error(Shape.GOOGLE, 429, orjson.dumps(GOOGLE_429)) == orjson.dumps(GOOGLE_429)
    ours = orjson.loads(error_body(Shape.GOOGLE, 403, "may not use model 'opus'", "model_not_allowed"))["error"]
    assert ours["code"] == 403 and ours["status"] == "PERMISSION_DENIED" and "opus" in ours["message"]
    assert ours["details"][0]["reason"] == "model_not_allowed"
    converted = orjson.loads(convert_upstream_error(Shape.GOOGLE, 502, b"<html>Bad Gateway</html>"))["error"]
    assert converted["status"] == "UNAVAILABLE" and "Bad Gateway" in converted["message"]


def test_non_json_upstream_errors_keep_a_snippet() -> None:
    error = orjson.loads(convert_upstream_error(Shape.OPENAI, 502, b"<html>Bad Gateway</html>"))["error"]
    assert "502" in error["message"] and "Bad Gateway" in error["message"]
    assert error["type"] == "api_error"


@pytest.mark.parametrize(
    ("status", "openai_type", "anthropic_type"),
    [
        (400, "invalid_request_error", "invalid_request_error"),
        (401, "authentication_error", "authentication_error"),
        (403, "permission_error", "permission_error"),
        (404, "not_found_error", "not_found_error"),
        (413, "invalid_request_error", "request_too_large"),
        (429, "rate_limit_error", "rate_limit_error"),
        (500, "api_error", "api_error"),
        (503, "api_error", "overloaded_error"),
    ],
)
def test_types_by_status(status: int, openai_type: str, anthropic_type: str) -> None:
    assert orjson.loads(error_body(Shape.OPENAI, status, "m"))["error"]["type"] == openai_type
    assert orjson.loads(error_body(Shape.ANTHROPIC, status, "m"))["error"]["type"] == anthropic_type
