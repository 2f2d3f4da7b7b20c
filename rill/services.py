"""The composition root: what routes and transports share (Services), built once per app from
the settings, and the contract of every store that has several backends (memory for tests,
SQLite embedded, Redis for several workers; the threads' store is one on SQLAlchemy). Domain code imports the Protocols from here; only
create_app builds Services, and only the web layer asks for the current app's (current())."""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Protocol

if TYPE_CHECKING:
    import redis

    from .auth import Auth
    from .chat.events import Payload, StreamEvent
    from .chat.turn import Turn, TurnObserver
    from .config import Settings
    from .conversations.feed import ChangeFeed
    from .conversations.files import FileStore
    from .conversations.responses import ResponseStore
    from .conversations.store import ThreadStore
    from .mcp.servers import McpServers
    from .providers.base import Provider
    from .providers.directory import ProviderDirectory
    from .usage import Prices, TurnUsage


class UsageStore(Protocol):
    """Every finished turn's tokens and time: memory, SQLite, Redis."""

    def record(self, usage: TurnUsage) -> None: ...

    def totals(self, since_day: str, user: str | None = None) -> list[dict]:
        """Sums by (UTC day, user, model) from `since_day` on, for one user or (None) all."""


class TurnLog(Protocol):
    """A turn's events, numbered from 0, readable from any point: in memory (chat.log) or a Redis
    Stream (chat.redis_turns)."""

    @property
    def closed(self) -> bool: ...

    @property
    def last_seq(self) -> int: ...

    def append(self, payload: Payload) -> StreamEvent: ...

    def follow(self, after: int = -1, keepalive: float = 15.0) -> Iterator[list[StreamEvent]]:
        """The events after `after`, then the live ones until the final one, in batches of what
        has come since the last; pings in silences."""

    def unread_for(self, now: float) -> float:
        """Seconds since the last reader left (0 while someone reads)."""


class TurnDirectory(Protocol):
    """The running turns and the retained ones: this process's (chat.turns) or every worker's
    (chat.redis_turns)."""

    def running(self, user: str | None = None) -> list[Turn]: ...
    def open_log(self, turn_id: str) -> TurnLog: ...

    def reserve(self, user: str, turn_id: str) -> contextlib.AbstractContextManager:
        """Hold one of the user's running-turn slots (and the id) while the turn is made."""

    def add(self, turn: Turn) -> None:
        """Register the turn, write its first event (Turn.begin) and start its pump."""

    def get(self, turn_id: str, user: str):
        """A running or retained turn of this user's; None for anyone else's."""

    def start_background(self) -> None:
        """The reaper (and with Redis: heartbeats, cancels, dead workers' turns)."""

    def interrupt_all(self, grace_seconds: float) -> None: ...


@dataclass
class Services:
    settings: Settings
    providers: ProviderDirectory
    threads: ThreadStore
    responses: ResponseStore
    files: FileStore
    usage: UsageStore
    turns: TurnDirectory
    accounting: TurnObserver
    auth: Auth
    prices: Prices
    mcp: McpServers
    started: float = field(default_factory=time.monotonic)


def pulled_models(settings, own: str) -> list:
    """The models pulled before (rill pull, the model picker), listed unloaded: each loads with its first turn."""
    from .providers.local import LocalProvider
    from .providers.local.hub import cached_models, model_name

    models = [(model_name(spec), path, mmproj) for spec, path, mmproj in cached_models()]
    return [LocalProvider(settings, str(path), name=name, mmproj=mmproj, loaded=False)
            for name, path, mmproj in models if name != own]


def build_services(settings: Settings, providers: tuple[Provider, ...] = ()) -> Services:
    """Every service, chosen by the settings. `providers` are added beside the built-in ones
    (tests add a scripted one)."""
    from .auth import Auth
    from .chat.accounting import Accounting
    from .chat.redis_turns import RedisTurns
    from .chat.turns import Turns
    from .mcp.config import load as load_mcp
    from .mcp.servers import McpServers
    from .conversations.feed import ChangeFeed, RedisChangeFeed
    from .conversations.responses import ResponseStore
    from .providers.directory import ProviderDirectory
    from .providers.gemini import GeminiProvider
    from .providers.local import LocalProvider
    from .providers.local.embedding import EmbeddingProvider
    from .providers.openai import OpenAIProvider
    from .usage import Prices

    redis_client = open_redis(settings.redis_url) if settings.redis_url else None
    local = LocalProvider(settings)
    own = f"local/{local.model_name}"  # RILL_MODEL=hf:...: the local model, pulled
    directory = ProviderDirectory(own if settings.model.startswith("hf:") else settings.model or own,
                                  settings.max_loaded_models)
    embedder = [EmbeddingProvider(settings)] if settings.embedding_model else []
    for provider in (local, *pulled_models(settings, local.model_name), *embedder, OpenAIProvider(settings),
                     GeminiProvider(settings), *providers):
        directory.add(provider)
    feed = RedisChangeFeed(redis_client) if redis_client else ChangeFeed()
    store = open_threads(settings, feed)
    if redis_client is not None:
        move_sessions(redis_client, store)
    usage = open_usage(settings, redis_client)
    return Services(
        settings=settings,
        providers=directory,
        threads=store,
        responses=ResponseStore(store),
        files=open_files(settings, store),
        usage=usage,
        turns=RedisTurns(settings, redis_client, store) if redis_client else Turns(settings),
        accounting=Accounting(usage, settings.log_content),
        auth=Auth(settings),
        mcp=McpServers(load_mcp(settings.mcp_config), settings.mcp_timeout_seconds, settings.mcp_output_chars),
        prices=Prices(settings.prices),
    )


def open_redis(url: str) -> redis.Redis:
    """One client for the app: quick to fail (a clear 503) while Redis is away, and reconnecting
    by itself when it is back."""
    import redis
    from redis.backoff import ExponentialBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=30, health_check_interval=15,
                                retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2))


def move_sessions(redis_client: redis.Redis, store: ThreadStore) -> None:
    """Sessions release 0.1.0 kept in Redis become threads; with Redis away, the next start does it."""
    import logging

    import redis

    from .conversations.legacy import move_redis_sessions

    log = logging.getLogger("rill")
    try:
        moved = move_redis_sessions(redis_client, store)
    except redis.RedisError as err:
        log.warning("the sessions of release 0.1.0 in Redis stay there until the next start: %s", err)
        return
    if moved:
        log.info("moved %d sessions of release 0.1.0 from Redis into threads", moved)


def open_threads(settings: Settings, feed: ChangeFeed | None = None) -> ThreadStore:
    """PostgreSQL or SQLite as RILL_DATABASE_URL says; else SQLite in RILL_DATA_DIR (sessions.db, the
    file earlier releases kept sessions in: it is migrated), or a throwaway file for `memory`."""
    import tempfile

    from .conversations.store import ThreadStore, sqlite_url

    if settings.database_url:
        return ThreadStore(settings.database_url, feed)
    if settings.session_store == "memory":
        return ThreadStore(sqlite_url(Path(tempfile.mkdtemp(prefix="rill-threads-")) / "threads.db"), feed)
    if settings.session_store == "sqlite":
        return ThreadStore(sqlite_url(Path(settings.data_dir).expanduser() / "sessions.db"), feed)
    raise SystemExit(f"RILL_SESSION_STORE={settings.session_store!r}: use sqlite or memory")


def open_files(settings: Settings, store: ThreadStore) -> FileStore:
    """Uploads under RILL_DATA_DIR/files (several workers share that directory), rows beside the
    threads; for `memory`, a throwaway directory."""
    import tempfile

    from .conversations.files import FileStore

    if settings.session_store == "memory" and not settings.database_url:
        return FileStore(store, Path(tempfile.mkdtemp(prefix="rill-files-")), settings.image_max_side)
    return FileStore(store, Path(settings.data_dir).expanduser() / "files", settings.image_max_side)


def open_usage(settings: Settings, redis_client=None) -> UsageStore:
    """Where finished turns' usage goes: beside the threads, in the same kind of store (Redis's
    counters with several workers)."""
    from .usage import MemoryUsage, RedisUsage, SQLiteUsage

    if redis_client is not None:
        return RedisUsage(redis_client)
    if settings.session_store == "memory":
        return MemoryUsage()
    return SQLiteUsage(Path(settings.data_dir).expanduser() / "usage.db")


def current() -> Services:
    """The current app's services: the one way in for routes and transports."""
    from flask import current_app

    return current_app.extensions["rill"]
