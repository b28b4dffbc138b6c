"""Who is calling: the presented key, looked up by digest, and what it may use."""

from datetime import UTC, datetime

from app.aliases import Model
from app.errors import GatewayError
from app.key_ring import KeyRecord, KeyRing

HOW_TO_SEND = "send it as 'Authorization: Bearer <key>', 'x-api-key: <key>' or 'x-goog-api-key: <key>'"


def presented_key(headers: dict[bytes, bytes]) -> str | None:
    # x-goog-api-key: what google-genai sends in Vertex express mode (api_key=...).
    key = headers.get(b"x-api-key") or headers.get(b"x-goog-api-key")
    if key is None:
        authorization = headers.get(b"authorization")
        if authorization is None:
            return None
        scheme, _, key = authorization.partition(b" ")
        if scheme.lower() != b"bearer":
            return None
    key = key.strip()
    return key.decode("latin-1") if key else None


def authenticate(ring: KeyRing, headers: dict[bytes, bytes]) -> KeyRecord:
    """The record of the presented key, or 401 saying why not. The ring must be loaded (Gateway.keys_ready)."""
    key = presented_key(headers)
    if key is None:
        raise GatewayError(401, f"Missing API key: {HOW_TO_SEND}", code="missing_api_key")
    record = ring.lookup(key)
    if record is None:
        raise GatewayError(
            401,
            "Invalid API key: the gateway did not issue this key (check for a typo, or ask the operator for a key)",
            code="invalid_api_key",
        )
    if not record.enabled:
        raise GatewayError(
            401, f"API key {record.id!r} is revoked: ask the operator for a new key", code="invalid_api_key"
        )
    if record.expired(ring.clock()):
        when = datetime.fromtimestamp(record.expires or 0, UTC).isoformat().replace("+00:00", "Z")
        raise GatewayError(
            401, f"API key {record.id!r} expired at {when}: ask the operator to rotate it", code="expired_api_key"
        )
    return record


def authorize(record: KeyRecord, model: Model) -> None:
    if not record.may_use(model):
        allowed = ", ".join(sorted(record.models or ())) or "none"
        named = f"{model.alias!r} ({model.vertex_id}, passed through)" if model.passthrough else repr(model.alias)
        raise GatewayError(
            403,
            f"API key {record.id!r} may not use model {named}; it may use: {allowed}",
            param="model",
            code="model_not_allowed",
        )
