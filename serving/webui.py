"""The browser client's files (serving/ui/), served by the service itself at /ui.

Read once at import: three small files, no template, nothing fetched from elsewhere. The
Content-Security-Policy lets the page talk to this service only (`'self'`), so neither the
page nor anything injected into it can send a frame to another address.
"""

from __future__ import annotations

from pathlib import Path

from starlette.responses import Response

UI_DIR = Path(__file__).with_name("ui")
FILES = {"": ("index.html", "text/html; charset=utf-8"),
         "app.js": ("app.js", "text/javascript; charset=utf-8"),
         "style.css": ("style.css", "text/css; charset=utf-8")}
HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' blob: data:; "
                               "media-src 'self' blob: mediastream:; connect-src 'self'; "
                               "style-src 'self'; script-src 'self'; object-src 'none'; "
                               "base-uri 'none'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
    # The camera may be used by this page only, never by something it embeds.
    "permissions-policy": "camera=(self), microphone=(), geolocation=()",
}


def load_files() -> dict[str, tuple[bytes, str]]:
    return {name: ((UI_DIR / file).read_bytes(), media) for name, (file, media) in FILES.items()}


def page_response(files: dict[str, tuple[bytes, str]], name: str) -> Response:
    content, media = files[name]
    return Response(content, media_type=media, headers=HEADERS)
