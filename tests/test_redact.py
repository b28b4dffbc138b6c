import pytest

from app.redact import REDACTED, redact, redact_bytes


@pytest.mark.parametrize(
    ("text", "kept", "gone"),
    [
        ("token ya29.a0AfB_byC-xyz.123 expired", "token  expired".replace("  ", f" {REDACTED} "), "ya29."),
        ("Authorization: Bearer eyJhbGciOi.payload.sig", "Authorization: " + REDACTED, "eyJhbGciOi"),
        ("key sk_live_AbCdEfGhIjKlMnOpQrStUv_-wxyz0123 refused", f"key {REDACTED} refused", "sk_live_AbCd"),
        ("key sk_dev_Zq3v9TOPSECRETkeyvalue1", f"key {REDACTED}", "TOPSECRET"),
        ("api key AIzaSyA1234567890abcdefghijklmnopqrstu1", f"api key {REDACTED}", "AIzaSy"),
        # Ordinary text is left alone.
        ("model sk_short is fine; bearer of news", "model sk_short is fine; bearer of news", "\x00"),
        ("Quota exceeded for aiplatform.googleapis.com", "Quota exceeded for aiplatform.googleapis.com", "\x00"),
    ],
)
def test_credentials_are_redacted(text: str, kept: str, gone: str) -> None:
    assert redact(text) == kept
    assert redact_bytes(text.encode()) == kept.encode()
    assert gone not in redact(text)
