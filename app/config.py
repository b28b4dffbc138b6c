"""One frozen Settings object, read from the environment once.

A bad value raises ConfigError naming the variable and what would fix it, so a
misconfigured revision fails at startup instead of serving wrong answers.
"""

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

import orjson

DEFAULT_ALIASES: dict[str, str] = {
    "flash": "google/gemini-2.5-flash",
    "pro-preview": "google/gemini-3.1-pro-preview",
    "sonnet": "anthropic/claude-sonnet-4-6",
    "opus": "anthropic/claude-opus-4-6",
    "haiku": "anthropic/claude-haiku-4-5@20251001",
    "embed": "google/gemini-embedding-001",
}
EXAMPLE_ALIASES = '{"flash": "google/gemini-2.5-flash"}'
# Alias -> the variable that overrides just that alias's Vertex id.
ALIAS_OVERRIDE_VARS = {"flash": "MODEL_FLASH_ID", "pro-preview": "MODEL_PRO_PREVIEW_ID"}

DEFAULT_ANTHROPIC_BETAS = (
    "interleaved-thinking-2025-05-14",
    "context-1m-2025-08-07",
    "fine-grained-tool-streaming-2025-05-14",
    "context-management-2025-06-27",
    "token-efficient-tools-2025-02-19",
)

VERTEX_ID_RE = re.compile(r"^(google|anthropic)/[A-Za-z0-9][A-Za-z0-9._@-]*$")
# Unlisted model ids that go to Vertex as asked (app/aliases.py): fnmatch patterns over the id without its
# publisher. Only these two families: the publisher (anthropic, google) is inferred from the prefix.
DEFAULT_PASSTHROUGH = ("claude-*", "gemini-*")
PASSTHROUGH_FAMILIES = ("claude-", "gemini-")
PASSTHROUGH_PATTERN_RE = re.compile(r"^(claude|gemini)-[A-Za-z0-9._@*?\[\]!-]{0,121}$")
ALIAS_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@:/-]{0,127}$")
LOCATION_RE = re.compile(r"^[a-z]+(-[a-z]+[0-9]*)?$")
# Domain-scoped legacy ids look like "example.com:my-project".
PROJECT_RE = re.compile(r"^([a-z][a-z0-9.-]*:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$")
SECRET_RE = re.compile(r"^(projects/[^/]+/secrets/)?[A-Za-z0-9_-]{1,255}$")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# Claude's count-tokens is served in some regions only, not at `global` (SPEC, platform facts).
DEFAULT_COUNT_TOKENS_LOCATION = "us-east5"


class ConfigError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Settings:
    port: int
    project: str | None
    location: str
    vertex_base_url: str
    # Where Claude's count-tokens goes: the main location, unless that is `global`.
    count_tokens_location: str
    count_tokens_base_url: str
    aliases: Mapping[str, str]
    model_passthrough: tuple[str, ...]  # empty: no unlisted id passes
    keys_secret: str | None
    keys_file: str | None
    keys_json: str | None
    keys_refresh_seconds: float
    keys_first_load_wait: float
    secret_manager_endpoint: str | None
    log_level: str
    max_body_bytes: int
    connect_timeout: float
    headers_timeout: float
    idle_timeout: float
    upstream_retries: int
    retry_max_wait: float
    token_retry_seconds: float
    anthropic_betas: frozenset[str]


def default_vertex_base_url(location: str) -> str:
    if location == "global":
        return "https://aiplatform.googleapis.com"
    if location in ("us", "eu"):
        return f"https://aiplatform.{location}.rep.googleapis.com"
    return f"https://{location}-aiplatform.googleapis.com"


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def _number(env: Mapping[str, str], name: str, default: float, minimum: float, whole: bool = False) -> float:
    raw = _get(env, name)
    if raw is None:
        return default
    try:
        value = int(raw) if whole else float(raw)
    except ValueError:
        value = None
    if value is None or value < minimum or value != value:
        kind = "a whole number" if whole else "a number"
        raise ConfigError(f"{name}={raw!r} is invalid: set it to {kind} >= {minimum:g}")
    return value


def _aliases(env: Mapping[str, str]) -> dict[str, str]:
    raw = _get(env, "MODEL_ALIASES")
    if raw is None:
        aliases = dict(DEFAULT_ALIASES)
    else:
        try:
            aliases = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ConfigError(
                f"MODEL_ALIASES is not valid JSON ({exc}): set it to an object like {EXAMPLE_ALIASES}"
            ) from None
        if not isinstance(aliases, dict) or not aliases:
            raise ConfigError(f"MODEL_ALIASES must be a non-empty JSON object like {EXAMPLE_ALIASES}")
    for alias, var in ALIAS_OVERRIDE_VARS.items():
        override = _get(env, var)
        if override is not None:
            aliases[alias] = override
    for alias, vertex_id in aliases.items():
        if not ALIAS_RE.fullmatch(alias):
            raise ConfigError(f"MODEL_ALIASES: alias {alias!r} must be 1-128 letters, digits or ._@:/-")
        if not isinstance(vertex_id, str) or not VERTEX_ID_RE.fullmatch(vertex_id):
            var = ALIAS_OVERRIDE_VARS.get(alias)
            source = var if var and _get(env, var) else "MODEL_ALIASES"
            raise ConfigError(
                f"{source}: {alias!r} maps to {vertex_id!r}; a Vertex id must be publisher-qualified, "
                "like 'google/gemini-2.5-flash' or 'anthropic/claude-sonnet-4-6'"
            )
    return aliases


def _passthrough(env: Mapping[str, str]) -> tuple[str, ...]:
    raw = env.get("MODEL_PASSTHROUGH")
    if raw is None:
        return DEFAULT_PASSTHROUGH
    patterns = tuple(dict.fromkeys(p.strip() for p in raw.split(",") if p.strip()))
    for pattern in patterns:
        if not pattern.startswith(PASSTHROUGH_FAMILIES):
            raise ConfigError(
                f"MODEL_PASSTHROUGH: pattern {pattern[:200]!r} must start with 'claude-' or 'gemini-': only those "
                "families can go to Vertex unlisted, because the publisher (anthropic or google) is inferred from "
                "that prefix. Use patterns like 'claude-*,gemini-2.5-*' (the default is 'claude-*,gemini-*'), add "
                "other models to MODEL_ALIASES, or set MODEL_PASSTHROUGH to empty to pass none"
            )
        if not PASSTHROUGH_PATTERN_RE.fullmatch(pattern):
            raise ConfigError(
                f"MODEL_PASSTHROUGH: pattern {pattern[:200]!r} must be at most 128 letters, digits, '.', '_', '@', "
                "'-' and the glob characters * ? [ ] !, matched against the id without google/ or anthropic/ "
                "(e.g. 'claude-opus-*,gemini-2.5-*'); set MODEL_PASSTHROUGH to empty to pass none"
            )
    return patterns


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _endpoint(env: Mapping[str, str], name: str, example: str) -> str | None:
    """A scheme-and-host override; plain http only to this machine, since a Google token would travel in clear."""
    raw = _get(env, name)
    if raw is None:
        return None
    match = re.match(r"^(https?)://(\[[0-9A-Fa-f:.]+\]|[^/\s:]+)(:[0-9]{1,5})?$", raw.rstrip("/"))
    if match is None:
        raise ConfigError(f"{name}={raw!r} must be a scheme and host, like {example}")
    if match[1] == "http" and not _is_loopback(match[2]):
        raise ConfigError(
            f"{name}={raw!r} is plain http to another machine, which would send the gateway's Google token in "
            f"clear text: use https (like {example}), or http only to a loopback address for a local fake"
        )
    return raw.rstrip("/")


def _location(env: Mapping[str, str], name: str, default: str) -> str:
    location = _get(env, name) or default
    if not LOCATION_RE.match(location):
        raise ConfigError(f"{name}={location!r} is invalid: use 'global', 'us', 'eu' or a region like 'us-central1'")
    return location


def _betas(env: Mapping[str, str]) -> frozenset[str]:
    raw = env.get("ANTHROPIC_BETAS_ALLOWED")
    if raw is None:
        return frozenset(DEFAULT_ANTHROPIC_BETAS)
    return frozenset(b.strip() for b in raw.split(",") if b.strip())


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    location = _location(env, "VERTEX_LOCATION", "global")
    base_url = _endpoint(env, "VERTEX_BASE_URL", "https://aiplatform.googleapis.com")
    count_tokens_location = location
    if location == "global":
        count_tokens_location = _location(env, "CLAUDE_COUNT_TOKENS_LOCATION", DEFAULT_COUNT_TOKENS_LOCATION)
    project = _get(env, "GOOGLE_CLOUD_PROJECT")
    if project is not None and not PROJECT_RE.match(project):
        raise ConfigError(
            f"GOOGLE_CLOUD_PROJECT={project!r} is not a project id (6-30 lowercase letters, digits, hyphens)"
        )
    secret = _get(env, "API_KEYS_SECRET")
    if secret is not None and not SECRET_RE.match(secret):
        raise ConfigError(f"API_KEYS_SECRET={secret!r} must be a secret name or projects/PROJECT/secrets/NAME")
    log_level = (_get(env, "LOG_LEVEL") or "INFO").upper()
    if log_level not in LOG_LEVELS:
        raise ConfigError(f"LOG_LEVEL={log_level!r} must be one of {', '.join(LOG_LEVELS)}")
    endpoint = _endpoint(env, "SECRET_MANAGER_ENDPOINT", "https://secretmanager.googleapis.com")
    return Settings(
        port=int(_number(env, "PORT", 8080, 1, whole=True)),
        project=project,
        location=location,
        vertex_base_url=base_url or default_vertex_base_url(location),
        # An explicit VERTEX_BASE_URL (a private endpoint, a local fake) serves every location.
        count_tokens_base_url=base_url or default_vertex_base_url(count_tokens_location),
        count_tokens_location=count_tokens_location,
        aliases=_aliases(env),
        model_passthrough=_passthrough(env),
        keys_secret=secret,
        keys_file=_get(env, "API_KEYS_FILE"),
        keys_json=_get(env, "API_KEYS_JSON"),
        keys_refresh_seconds=_number(env, "KEYS_REFRESH_SECONDS", 60, 1),
        keys_first_load_wait=_number(env, "KEYS_FIRST_LOAD_WAIT_SECONDS", 30, 0),
        secret_manager_endpoint=endpoint,
        log_level=log_level,
        max_body_bytes=int(_number(env, "MAX_BODY_BYTES", 32 * 1024 * 1024, 1024, whole=True)),
        connect_timeout=_number(env, "UPSTREAM_CONNECT_TIMEOUT", 10, 0.1),
        headers_timeout=_number(env, "UPSTREAM_HEADERS_TIMEOUT", 600, 0.1),
        idle_timeout=_number(env, "UPSTREAM_IDLE_TIMEOUT", 600, 0.1),
        upstream_retries=int(_number(env, "UPSTREAM_RETRIES", 2, 0, whole=True)),
        retry_max_wait=_number(env, "UPSTREAM_RETRY_MAX_WAIT", 10, 0),
        token_retry_seconds=_number(env, "TOKEN_RETRY_SECONDS", 5, 0.1),
        anthropic_betas=_betas(env),
    )
