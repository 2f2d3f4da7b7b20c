"""A real PostgreSQL server (Debian's postgresql, as `make cluster` starts it) on a free loopback
port, with its data outside pytest's temporary directory: that one is private to root, and
PostgreSQL runs as its own user there."""
import shutil
import tempfile
from pathlib import Path

import psycopg

from deploy.cluster import start_postgres
from tests.server import free_port


class PostgresServer:
    def __init__(self):
        self.directory = Path(tempfile.mkdtemp(prefix="rill-postgres-"))
        self.directory.chmod(0o755)  # PostgreSQL's own user makes its data inside
        self.port = free_port()
        self.process, self.url = start_postgres(self.port, self.directory / "data")
        self.dsn = f"host=127.0.0.1 port={self.port} user=rill dbname=rill"

    def database(self, name: str) -> str:
        """A fresh database; its SQLAlchemy URL."""
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url.rsplit("/", 1)[0] + f"/{name}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(20)
        shutil.rmtree(self.directory, ignore_errors=True)
