"""Several Rill workers as one service on this machine, for a try-out: redis-server, PostgreSQL (the
threads), N workers (`python -m rill.entry`, each on its own port with RILL_REDIS_URL and
RILL_DATABASE_URL) and nginx in front of them, all on loopback. `make cluster` runs it; Ctrl-C
stops everything.

    python deploy/cluster.py [--workers 2] [--port 8080] [--first-worker-port 5001] [--redis-port 6380]
                             [--postgres-port 5433]

Each worker loads its own copy of the local model. The tests use the same functions to start
their nginx and PostgreSQL.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = Path(__file__).resolve().parent / "nginx.conf"


def render_nginx(run_dir: Path, listen: str, worker_ports: list[int], upload_bytes: int | None = None) -> Path:
    """deploy/nginx.conf with its fields filled in, written to run_dir/nginx.conf; the upload limit
    is the workers' RILL_MAX_UPLOAD_BYTES (from the environment unless given)."""
    from rill.api.files import MULTIPART_SLACK
    from rill.config import Settings

    upload_bytes = upload_bytes or Settings.from_env().max_upload_bytes
    run_dir.mkdir(parents=True, exist_ok=True)
    for temp in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (run_dir / temp).mkdir(exist_ok=True)
        (run_dir / temp).chmod(0o777)  # nginx's workers run as another user when it starts as root
    servers = "\n".join(f"        server 127.0.0.1:{port};" for port in worker_ports)
    fields = {"run": str(run_dir), "listen": listen, "servers": servers, "upload_limit": f"{upload_bytes:,}",
              "upload_body_bytes": str(upload_bytes + MULTIPART_SLACK)}
    text = TEMPLATE.read_text()
    for name, value in fields.items():
        text = text.replace("{{" + name + "}}", value)
    path = run_dir / "nginx.conf"
    path.write_text(text)
    return path


def start_nginx(config: Path) -> subprocess.Popen:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        raise SystemExit("nginx is not installed: run `make cluster` (it installs Debian's nginx)")
    check = subprocess.run([nginx, "-t", "-q", "-p", str(config.parent), "-c", str(config)],
                           capture_output=True, text=True)
    if check.returncode:
        raise SystemExit(f"nginx rejected {config}:\n{check.stderr}")
    return subprocess.Popen([nginx, "-p", str(config.parent), "-c", str(config), "-g", "daemon off;"])


def start_redis(port: int, data_dir: Path) -> subprocess.Popen:
    data_dir.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data_dir),
                             "--appendonly", "yes"], stdout=subprocess.DEVNULL)


def start_postgres(port: int, data_dir: Path) -> tuple[subprocess.Popen, str]:
    """Debian's PostgreSQL on loopback with its data in data_dir (made on first use), a database
    `rill`, trust authentication for the local user `rill`; (process, SQLAlchemy URL). As root, it
    runs as the `postgres` user (it refuses to run as root)."""
    import psycopg

    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    if not found:
        raise SystemExit("PostgreSQL is not installed: run `make cluster` (it installs Debian's postgresql)")
    binaries = found[-1].parent
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    data_dir.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(data_dir, "postgres")
    if not (data_dir / "PG_VERSION").exists():
        subprocess.run([*as_user, str(binaries / "initdb"), "-D", str(data_dir), "-A", "trust", "-U", "rill"],
                       check=True, capture_output=True)
    process = subprocess.Popen([*as_user, str(binaries / "postgres"), "-D", str(data_dir), "-p", str(port),
                                "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={data_dir}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    dsn = f"host=127.0.0.1 port={port} user=rill dbname=postgres"
    for _ in range(600):
        try:
            with psycopg.connect(dsn, connect_timeout=2, autocommit=True) as conn:
                if not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'rill'").fetchone():
                    conn.execute("CREATE DATABASE rill")
            return process, f"postgresql+psycopg://rill@127.0.0.1:{port}/rill"
        except psycopg.OperationalError:
            if process.poll() is not None:
                raise SystemExit(f"postgres exited at start ({process.returncode}); its data: {data_dir}")
            time.sleep(0.05)
    raise SystemExit("postgres did not start in 30 s")


def wait_healthy(url: str, process: subprocess.Popen, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{url}: the process exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"{url} did not become healthy in {seconds:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--port", type=int, default=8080, help="where nginx listens")
    parser.add_argument("--first-worker-port", type=int, default=5001)
    parser.add_argument("--redis-port", type=int, default=6380)
    parser.add_argument("--postgres-port", type=int, default=5433)
    parser.add_argument("--dir", type=Path, default=ROOT / ".cluster", help="logs, Redis data, nginx files")
    args = parser.parse_args()

    processes: list[subprocess.Popen] = []

    def stop(*_):
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            process.wait(20)
        sys.exit(0)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    processes.append(start_redis(args.redis_port, args.dir / "redis"))
    redis_url = f"redis://127.0.0.1:{args.redis_port}/0"
    postgres, database_url = start_postgres(args.postgres_port, args.dir / "postgres")
    processes.append(postgres)
    ports = [args.first_worker_port + i for i in range(args.workers)]
    metrics_dir = args.dir / "metrics"  # the workers' shared Prometheus figures: emptied at each start
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    for port in ports:
        log = open(args.dir / f"worker-{port}.log", "ab")
        env = {**os.environ, "RILL_PORT": str(port), "RILL_REDIS_URL": redis_url, "RILL_DATABASE_URL": database_url,
               "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
        processes.append(subprocess.Popen([sys.executable, "-m", "rill.entry"], cwd=ROOT, env=env, stdout=log,
                                          stderr=subprocess.STDOUT))
        print(f"worker on http://127.0.0.1:{port} (log: {log.name})", flush=True)
    for port, process in zip(ports, processes[2:]):
        wait_healthy(f"http://127.0.0.1:{port}", process)
    processes.append(start_nginx(render_nginx(args.dir / "nginx", f"127.0.0.1:{args.port}", ports)))
    print(f"Rill: {args.workers} workers behind nginx on http://127.0.0.1:{args.port} "
          f"(Redis {redis_url}, PostgreSQL {database_url}); Ctrl-C stops them all", flush=True)
    while all(p.poll() is None for p in processes):
        time.sleep(1)
    print("a process of the cluster exited; stopping the rest", file=sys.stderr)
    stop()


if __name__ == "__main__":
    main()
