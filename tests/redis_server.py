"""A real redis-server on a free loopback port, which a test can stop and start again."""
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import redis

from tests.server import free_port


class RedisServer:
    def __init__(self, directory: Path):
        if not shutil.which("redis-server"):
            pytest.fail("redis-server is not installed: run `make test` (it installs it)")
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}"
        self.client = redis.Redis(port=self.port)
        self.process: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.directory)], stdout=subprocess.DEVNULL)
        for _ in range(200):
            try:
                self.client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)
