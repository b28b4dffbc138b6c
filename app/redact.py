"""Credentials scrubbed from text that leaves the gateway: upstream error bodies and log lines.

An upstream error may quote the request it refused, and a client may have put a credential in
its body; neither a Google access token nor one of the gateway's keys is ever passed on.
"""

import re

REDACTED = "[redacted]"
_PATTERNS = (
    rb"ya29\.[0-9A-Za-z_.\-]+",  # Google OAuth 2.0 access tokens
    rb"(?i:bearer)\s+[0-9A-Za-z._~+/=\-]{8,}",  # any bearer credential
    rb"\bsk_[a-z]+_[0-9A-Za-z_\-]{16,}",  # the gateway's keys: scripts/keys and make run issue sk_<kind>_...
    rb"\bAIza[0-9A-Za-z_\-]{35}",  # Google API keys
)
_CREDENTIAL = re.compile(b"|".join(_PATTERNS))
_CREDENTIAL_TEXT = re.compile("|".join(p.decode() for p in _PATTERNS))


def redact_bytes(data: bytes) -> bytes:
    return _CREDENTIAL.sub(REDACTED.encode(), data)


def redact(text: str) -> str:
    return _CREDENTIAL_TEXT.sub(REDACTED, text)
