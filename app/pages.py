"""The splash page and the runbook, rendered from the running configuration."""

import html
from pathlib import Path
from string import Template

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from app.aliases import ModelTable
from app.apis import client_apis_of
from app.gateway import Gateway

_TEMPLATES = Path(__file__).parent / "templates"
_STYLE = (
    "body{font:16px/1.5 system-ui,sans-serif;margin:0;color:#1f2328}"
    "main{max-width:860px;margin:2rem auto;padding:0 1rem}"
    "pre{background:#f6f8fa;padding:.8rem;overflow-x:auto;border-radius:6px}code{background:#f6f8fa;padding:0 .2rem}"
    "table{border-collapse:collapse}td,th{border:1px solid #d0d7de;padding:.3rem .6rem;text-align:left}"
)
# Static pages with inline CSS only: no script, no framing, no sniffing.
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'none'",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}


def _template(name: str) -> Template:
    return Template((_TEMPLATES / name).read_text(encoding="utf-8"))


SPLASH = _template("splash.html")
RUNBOOK = _template("runbook.html")


def base_url(request: Request) -> str:
    # Cloud Run terminates TLS in front of us and says so in X-Forwarded-Proto.
    scheme = request.headers.get("x-forwarded-proto", request.url.scheme).split(",")[0].strip()
    host = request.headers.get("host", "localhost")
    return f"{scheme}://{host}"


def _values(models: ModelTable, url: str, refresh_seconds: float) -> dict[str, str]:
    gemini = [m.alias for m in models.models if m.publisher == "google" and m.kind == "generative"] or ["flash"]
    claude = [m.alias for m in models.models if m.publisher == "anthropic"] or ["sonnet"]
    rows = "\n".join(
        f"<tr><td><code>{html.escape(m.alias)}</code></td><td><code>{html.escape(m.vertex_id)}</code></td>"
        f"<td>{', '.join(api.path for api in client_apis_of(m))}</td></tr>"
        for m in models.models
    )
    return {
        "style": _STYLE,
        "base_url": html.escape(url),
        "model_rows": rows,
        "model_names": ", ".join(f"<code>{html.escape(a)}</code>" for a in models.aliases),
        "claude_names": ", ".join(f"<code>{html.escape(a)}</code>" for a in claude),
        "first_gemini": html.escape(gemini[0]),
        "first_claude": html.escape(claude[0]),
        "pi_models": ", ".join(f'{{"id": "{html.escape(a)}"}}' for a in gemini),
        "refresh_seconds": f"{refresh_seconds:g}",
    }


def _page(template: Template, gateway: Gateway, request: Request) -> Response:
    values = _values(gateway.models, base_url(request), gateway.settings.keys_refresh_seconds)
    return HTMLResponse(template.substitute(values), headers=SECURITY_HEADERS)


async def splash(gateway: Gateway, request: Request) -> Response:
    return _page(SPLASH, gateway, request)


async def runbook(gateway: Gateway, request: Request) -> Response:
    return _page(RUNBOOK, gateway, request)
