"""Response headers that protect the UI, and CORS (closed unless origins are configured)."""
from __future__ import annotations

from flask import Flask
from flask_cors import CORS

from .config import comma_list

CSP = "; ".join([
    "default-src 'self'",
    "script-src 'self'",  # no inline script, no eval
    "style-src 'self'",
    "img-src 'self' data: blob:",  # blob: an uploaded image, fetched with the access token
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])

HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def allowed_origins(settings) -> list[str]:
    return comma_list(settings.cors_origins)


def socketio_origins(settings):
    """Socket.IO's origin check: its own page always, plus the allow-list. (A list alone would
    replace the same-origin default and lock out the app's own UI.)"""
    origins = allowed_origins(settings)
    if not origins:
        return None  # python-engineio's default: same origin only

    def allowed(origin, environ) -> bool:
        own = f"{environ.get('wsgi.url_scheme', 'http')}://{environ.get('HTTP_HOST', '')}"
        return origin in origins or origin == own

    return allowed


def secure(app: Flask) -> None:
    @app.after_request
    def _headers(response):
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    origins = allowed_origins(app.extensions["rill"].settings)
    if origins:
        CORS(app, origins=origins, expose_headers=["X-Session-Id", "Retry-After"],
             allow_headers=["Content-Type", "Authorization", "x-api-key", "anthropic-version"])
