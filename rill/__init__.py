"""Rill: a streaming chat server. create_app() assembles it; entry.py serves it."""
from __future__ import annotations

__version__ = "0.1.0"


def create_app(settings=None, providers=()):
    """The Flask app (the package itself imports no web code: domain modules import from it).
    `providers` adds providers beside the local model (tests register a scripted one)."""
    from flask import Flask, g, request

    from . import logs, openapi
    from .api import chat, files, mcp, models, sessions, status, threads, ui, usage
    from .auth import ANONYMOUS, cli
    from .chat.reasoning import reasoning_splitter
    from .config import Settings
    from .errors import register_error_handlers
    from .extensions import limiter, socketio
    from .security import secure, socketio_origins
    from .services import build_services
    from .transports import anthropic_api, embeddings_api, openai_api, responses_api
    from .transports import socketio as socketio_transport

    settings = settings or Settings.from_env()
    reasoning_splitter(settings.reasoning_tags)  # a bad RILL_REASONING_TAGS stops the start, not a request
    app = Flask(__name__)  # rill/static and rill/templates: the UI ships inside the package
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.config["RATELIMIT_STORAGE_URI"] = settings.rate_limit_storage
    if settings.redis_url and settings.rate_limit_storage == "memory://":
        app.config["RATELIMIT_STORAGE_URI"] = settings.redis_url
    app.json.sort_keys = False
    rill = app.extensions["rill"] = build_services(settings, providers)

    logs.register(app)  # first: every request gets its id, refused ones too
    register_error_handlers(app)
    protected = (chat.bp, sessions.bp, threads.bp, threads.search_bp, files.bp, models.bp, mcp.bp, usage.bp,
                 openai_api.bp, responses_api.bp, embeddings_api.bp, anthropic_api.bp)
    for bp in (*protected, threads.shared_bp, status.bp, openapi.bp, cli, ui.bp):
        app.register_blueprint(bp)
    protected_names = {bp.name for bp in protected}

    @app.before_request
    def _identify():
        """g.user for every route; a 401 on protected ones when auth is on and the token is bad."""
        g.user = ANONYMOUS
        if request.method != "OPTIONS" and request.blueprint in protected_names:  # preflights carry no token
            g.user = rill.auth.user_for_request()

    limiter.init_app(app)
    secure(app)
    socketio.init_app(app, async_mode=settings.async_mode, max_http_buffer_size=settings.max_body_bytes,
                      cors_allowed_origins=socketio_origins(settings), message_queue=settings.redis_url or None)
    socketio_transport.register(socketio, rill.threads.feed)
    return app
