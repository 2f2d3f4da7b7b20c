"""Uploads: throughput and the server's memory while 8 clients each upload a 20 MB file at once
(POST /api/files, multipart, on loopback), beside a plain 20 MB copy on the same disk as the
baseline; then the bytes read back (GET /api/files/<id>). The server (eventlet) runs in its own
process; its peak RSS is sampled from /proc while the uploads run.

Usage: python bench/upload_bench.py [--clients 8] [--megabytes 20] [--rounds 3]
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.memory_bench import rss_mib, settle  # noqa: E402
from bench.together import all_at_once  # noqa: E402
from tests.server import start_server, stop_server  # noqa: E402


def upload_round(url: str, files: list[Path]) -> tuple[float, list[str]]:
    """All files at once, one client each: (seconds, ids)."""
    ids: list[str | None] = [None] * len(files)

    def send(n: int) -> None:
        with open(files[n], "rb") as data:
            r = requests.post(f"{url}/api/files", files={"file": (files[n].name, data)}, timeout=300)
        r.raise_for_status()
        ids[n] = r.json()["id"]

    return all_at_once(send, len(files)), [i for i in ids if i]


def peak_rss(pid: int, stop: threading.Event, out: list[float]) -> None:
    while not stop.is_set():
        out.append(rss_mib(pid))
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--megabytes", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    size = args.megabytes * 1_000_000 - 1000  # under RILL_MAX_UPLOAD_BYTES with the form around it
    work = Path(tempfile.mkdtemp(prefix="rill-upload-bench-"))
    files = []
    for n in range(args.clients):  # text (the cheapest type to check), each file its own bytes
        path = work / f"notes-{n}.txt"
        line = f"client {n}: the river carries silt to the delta.\n".encode()
        path.write_bytes((line * (size // len(line) + 1))[:size])
        files.append(path)
    total_mb = args.clients * size / 1e6
    server = start_server("eventlet", work, RILL_RATE_LIMIT="1000000 per minute")
    try:
        before = settle(server.process.pid)
        upload_s, copy_s, peaks = [], [], []
        for _ in range(args.rounds):
            started = time.perf_counter()
            for n, path in enumerate(files):  # the baseline: the same bytes copied on the same disk
                shutil.copyfile(path, work / f"copy-{n}")
            copy_s.append(time.perf_counter() - started)
            stop, samples = threading.Event(), []
            sampler = threading.Thread(target=peak_rss, args=(server.process.pid, stop, samples))
            sampler.start()
            seconds, ids = upload_round(server.url, files)
            stop.set()
            sampler.join()
            upload_s.append(seconds)
            peaks.append(max(samples))
            for n, file_id in enumerate(ids):  # read back whole and the same
                got = requests.get(f"{server.url}/api/files/{file_id}", timeout=60).content
                assert hashlib.sha256(got).digest() == hashlib.sha256(files[n].read_bytes()).digest()
                requests.delete(f"{server.url}/api/files/{file_id}", timeout=60)
        upload, copy = statistics.median(upload_s), statistics.median(copy_s)
        print(f"{args.clients} clients x {size / 1e6:.1f} MB at once, median of {args.rounds}: "
              f"{total_mb / upload:.0f} MB/s through POST /api/files ({upload:.2f} s), against a plain copy's "
              f"{total_mb / copy:.0f} MB/s on the same disk ({upload / copy:.1f}x its time)")
        print(f"server RSS: {before:.0f} MiB idle, peak {max(peaks):.0f} MiB during the uploads "
              f"(+{max(peaks) - before:.0f} MiB for {total_mb:.0f} MB in flight)")
    finally:
        stop_server(server)
        shutil.rmtree(work, ignore_errors=True)
    os.sync()


if __name__ == "__main__":
    main()
