"""Rill: a streaming chat server. create_app() assembles it; app.py serves it."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from flask import Flask, current_app, g, request

__version__ = "0.1.0"


@dataclass
class Services:
    """What routes and transports share, kept in app.extensions["rill"]: see services()."""

    settings: object
    engine: object
    models: object
    sessions: object
    auth: object
    turns: object
    usage: object = None
    prices: object = None
    started: float = field(default_factory=time.monotonic)


def services() -> Services:
    """The current app's services (the one typed way in for routes and transports)."""
    return current_app.extensions["rill"]


def open_redis(url: str):
    """One client for the app: quick to fail (a clear 503) while Redis is away, and reconnecting
    by itself when it is back."""
    import redis
    from redis.backoff import ExponentialBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=30, health_check_interval=15,
                                retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2))


def open_sessions(settings, redis_client=None):
    from .sessions.memory import MemorySessionStore
    from .sessions.redis_store import RedisSessionStore
    from .sessions.sqlite import SQLiteSessionStore

    limits = dict(ttl_seconds=settings.session_ttl_seconds, max_sessions=settings.max_sessions,
                  max_messages=settings.max_session_messages, max_per_user=settings.max_sessions_per_user)
    if redis_client is not None:
        return RedisSessionStore(redis_client, **limits)
    if settings.session_store == "memory":
        return MemorySessionStore(**limits)
    if settings.session_store == "sqlite":
        return SQLiteSessionStore(Path(settings.data_dir).expanduser() / "sessions.db", **limits)
    raise SystemExit(f"RILL_SESSION_STORE={settings.session_store!r}: use sqlite or memory")


def open_usage(settings, redis_client=None):
    """Where finished turns' usage goes: beside the sessions, in the same kind of store."""
    from .usage import MemoryUsage, RedisUsage, SQLiteUsage

    if redis_client is not None:
        return RedisUsage(redis_client)
    if settings.session_store == "memory":
        return MemoryUsage()
    return SQLiteUsage(Path(settings.data_dir).expanduser() / "usage.db")


def create_app(settings=None, providers=()) -> Flask:
    """`providers` adds providers beside the local model (tests register a scripted one)."""
    from . import auth, logs, openapi
    from .api import chat, sessions, status, ui, usage
    from .api import models as models_api
    from .chat.reasoning import ReasoningSplitter
    from .config import Settings
    from .errors import register_error_handlers
    from .extensions import limiter, socketio
    from .providers.engine import Engine
    from .providers.gemini import GeminiProvider
    from .providers.local import LocalProvider
    from .providers.openai import OpenAIProvider
    from .chat.redis_turns import RedisTurns
    from .chat.turn import Turns
    from .providers.registry import ModelRegistry
    from .security import secure, socketio_origins
    from .usage import Prices
    from .transports import anthropic_api, openai_api
    from .transports import socketio as socketio_transport

    settings = settings or Settings.from_env()
    ReasoningSplitter(settings.reasoning_tags)  # a bad RILL_REASONING_TAGS stops the start, not a request
    app = Flask(__name__, static_folder="../static", template_folder="../templates")
    app.config["RILL"] = settings
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.config["RATELIMIT_STORAGE_URI"] = settings.rate_limit_storage
    redis_client = None
    if settings.redis_url:
        redis_client = open_redis(settings.redis_url)
        if settings.rate_limit_storage == "memory://":
            app.config["RATELIMIT_STORAGE_URI"] = settings.redis_url
    app.json.sort_keys = False

    engine = Engine()
    local = LocalProvider(settings)
    models = ModelRegistry(settings.model or f"local/{local.model_name}")
    for provider in (local, OpenAIProvider(settings), GeminiProvider(settings), *providers):
        models.add(provider)
        engine.add(provider)
    store = open_sessions(settings, redis_client)
    app.extensions["rill"] = Services(
        settings=settings,
        engine=engine,
        models=models,
        sessions=store,
        auth=auth.Auth(settings),
        turns=RedisTurns(settings, redis_client, store) if redis_client else Turns(settings),
        usage=open_usage(settings, redis_client),
        prices=Prices(settings.prices),
    )

    logs.register(app)  # first: every request gets its id, refused ones too
    register_error_handlers(app)
    protected = (chat.bp, sessions.bp, models_api.bp, usage.bp, openai_api.bp, anthropic_api.bp)
    for bp in (*protected, status.bp, openapi.bp, auth.cli, ui.bp):
        app.register_blueprint(bp)

    @app.before_request
    def _identify():
        """g.user for every route; a 401 on protected ones when auth is on and the token is bad."""
        g.user = auth.ANONYMOUS
        if request.method != "OPTIONS" and request.blueprint in {bp.name for bp in protected}:  # preflights carry no token
            g.user = app.extensions["rill"].auth.user_for_request()

    limiter.init_app(app)
    secure(app)
    socketio.init_app(app, async_mode=settings.async_mode, max_http_buffer_size=settings.max_body_bytes,
                      cors_allowed_origins=socketio_origins(settings), message_queue=settings.redis_url or None)
    socketio_transport.register(socketio)
    return app
