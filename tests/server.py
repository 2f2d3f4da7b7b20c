"""Start and stop the real server (python -m tests.serve) on a free loopback port."""
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    url: str
    mode: str
    process: subprocess.Popen
    log: Path

    def health(self) -> dict:
        return requests.get(f"{self.url}/health", timeout=10).json()

    def time_health(self, count: int, gap: float, out: list) -> None:
        """Append the seconds each of `count` /health requests took, `gap` s apart: run beside a
        load, it shows whether the server stays responsive."""
        for _ in range(count):
            started = time.perf_counter()
            requests.get(f"{self.url}/health", timeout=5).raise_for_status()
            out.append(time.perf_counter() - started)
            time.sleep(gap)

    def wait_idle(self, timeout: float = 10.0) -> dict:
        """Wait until no turn runs or waits; returns the last /health."""
        deadline = time.monotonic() + timeout
        while True:
            health = self.health()
            idle = health["active_turns"] == 0 and not any(
                e["busy"] or e["queued"] for e in health["engine"].values())
            if idle or time.monotonic() > deadline:
                return health
            time.sleep(0.05)


def start_server(mode: str, log_dir: Path, entry: str = "tests.serve", ready: str = "ok", port: int | None = None,
                 **env) -> Server:
    """`entry` is the module to run: tests.serve (with the scripted provider) or rill.entry; `ready`
    the /health status to wait for (`error` for a model that cannot load); `port` a given one (a
    restart where the last one ran), else a free one."""
    port = port or free_port()
    log = log_dir / f"server-{mode}-{port}.log"
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("RILL_")}  # never the developer's settings
    environment = {**inherited, "RILL_PORT": str(port), "RILL_ASYNC_MODE": mode,
                   "RILL_DATA_DIR": str(log_dir / f"data-{port}"),  # sessions.db: never the user's own
                   "RILL_KEEPALIVE_SECONDS": "0.5", "PYTHONUNBUFFERED": "1",
                   # generous limits for functional tests; the limit tests set their own
                   "RILL_RATE_LIMIT": "100000 per minute", "RILL_MAX_CONCURRENT_TURNS": "16",
                   **{k: str(v) for k, v in env.items()}}
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", entry], cwd=ROOT, env=environment,
                                   stdout=out, stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}", mode, process, log)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if server.health()["status"] == ready:
                return server
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"server did not become ready:\n{log.read_text()[-3000:]}")


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(10)
    except subprocess.TimeoutExpired:
        server.process.kill()
