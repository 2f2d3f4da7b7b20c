"""Fixtures. Fast tier (the Flask tutorial's chain): make_app -> app -> client, in process, with
the scripted provider. Slow tier: `server`, the real server with the real model."""
import shutil
from pathlib import Path

import pytest
from hypothesis import settings

# Property tests check what comes out, not how fast: no per-example deadline (hypothesis's default
# is 200 ms; on a loaded 2-core machine tests/test_reasoning.py failed once and passed on its seed).
settings.register_profile("rill", deadline=None)
settings.load_profile("rill")


@pytest.fixture(scope="session")
def migrated_threads_db(tmp_path_factory) -> Path:
    """A threads database at the newest revision, made once: each app starts from a copy
    (migrating every app's own from nothing took a third of the time to make it)."""
    from rill.conversations.store import ThreadStore, sqlite_url

    path = tmp_path_factory.mktemp("migrated") / "sessions.db"
    ThreadStore(sqlite_url(path)).close()
    return path


@pytest.fixture
def make_app(tmp_path, migrated_threads_db):
    """create_app with settings overrides, the scripted provider beside the local model."""
    from rill import create_app
    from rill.config import Settings
    from tests.scripted import ScriptedProvider

    def make(**overrides):
        # No local model: a turn opens the provider directory, and loading the real model in the
        # background of every in-process app made the fast tier slow.
        settings = Settings(**{"cache_dir": str(tmp_path / "cache"), "data_dir": str(tmp_path / "data"),
                               "async_mode": "threading", "model_path": str(tmp_path / "no-local-model.gguf"),
                               **overrides})
        threads_db = Path(settings.data_dir) / "sessions.db"
        if settings.session_store == "sqlite" and not settings.database_url and not threads_db.exists():
            threads_db.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(migrated_threads_db, threads_db)
        app = create_app(settings, providers=[ScriptedProvider()])
        app.config["TESTING"] = True
        return app

    return make


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="session", params=["eventlet", "threading"])
def server(request, servers):
    """The real server with the real model, in each async mode (the root conftest's)."""
    return servers(request.param)


@pytest.fixture(scope="session")
def postgres_server():
    """One real PostgreSQL server for the session; each test takes a database of its own."""
    from tests.postgres_server import PostgresServer

    server = PostgresServer()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """One real redis-server for the session; tests keep apart by key prefix or by flushing."""
    from tests.redis_server import RedisServer

    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()
