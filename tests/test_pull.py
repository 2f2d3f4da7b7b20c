"""`rill pull`, `rill models`, `rill rm` against a loopback stand-in of the hub's download routes
(tests/fake_hub.py, through HF_ENDPOINT): a GGUF repository's file picked by quantization with its
vision projector, a transformers repository whole, the cache listed and deleted, a download cut
half-way resumed, bytes that do not match the hub's hash refused and deleted, bad names said."""
import hashlib
import os
import random
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fake_hub import FakeHub
from tests.server import ROOT

pytestmark = pytest.mark.slow  # each `rill` run imports the server's code

BLOB = random.Random(5).randbytes


@pytest.fixture
def hub():
    server = FakeHub({
        # Q8_0 past huggingface_hub's 10 MB read chunk, so a cut half-way leaves a part on disk to resume from
        "tiny/river-GGUF": {"river-Q4_K_M.gguf": BLOB(300_000), "river-Q8_0.gguf": BLOB(24_000_000),
                            "mmproj-river-f16.gguf": BLOB(50_000), "README.md": b"# river"},
        "tiny/river": {"config.json": b'{"model_type": "llama"}', "model.safetensors": BLOB(200_000)},
    }).start()
    yield server
    server.stop()


def rill(hub, tmp_path, *args, offline=False, **run) -> subprocess.CompletedProcess:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("HF_", "RILL_"))},
           "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_DISABLE_TELEMETRY": "1",
           "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_HUB_OFFLINE": "1" if offline else "0"}
    return subprocess.run([sys.executable, "-c", "from rill_cli.main import cli; cli()", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, **run)


def test_a_gguf_is_picked_by_quantization_with_its_projector_then_listed_and_deleted(hub, tmp_path):
    r = rill(hub, tmp_path, "pull", "tiny/river-GGUF")
    assert r.returncode == 0, r.stderr
    model = Path(r.stdout.split("\n")[0].split(": ", 1)[1])
    assert model.name == "river-Q4_K_M.gguf" and model.read_bytes() == hub.repos["tiny/river-GGUF"]["river-Q4_K_M.gguf"]
    assert "vision projector: " in r.stdout and "mmproj-river-f16.gguf" in r.stdout
    assert "serve it: RILL_MODEL=hf:tiny/river-GGUF rill serve" in r.stdout
    r = rill(hub, tmp_path, "pull", "tiny/river-GGUF:q8_0")
    assert r.returncode == 0 and "river-Q8_0.gguf" in r.stdout, r.stderr
    cached = rill(hub, tmp_path, "pull", "tiny/river-GGUF", offline=True)  # offline: from the cache
    assert cached.returncode == 0 and str(model) in cached.stdout, cached.stderr
    hub.stop()  # the hub goes away: the same
    assert str(model) in rill(hub, tmp_path, "pull", "tiny/river-GGUF").stdout
    missing = rill(hub, tmp_path, "pull", "tiny/river-GGUF:Q5_K_M", offline=True)
    assert missing.returncode == 1 and "the hub cannot be reached (OfflineModeIsEnabled) and tiny/river-GGUF:Q5_K_M " \
        "is not in the local cache: pull it while online" in missing.stderr
    listed = rill(hub, tmp_path, "models").stdout
    assert "tiny/river-GGUF  24.4 MB  3 files" in listed, listed
    assert rill(hub, tmp_path, "rm", "tiny/river-GGUF").returncode == 0
    assert "tiny/river-GGUF" not in rill(hub, tmp_path, "models").stdout and not model.exists()
    gone = rill(hub, tmp_path, "rm", "tiny/river-GGUF")
    assert gone.returncode == 1 and "no pulled model tiny/river-GGUF" in gone.stderr


def test_a_transformers_repository_is_pulled_whole(hub, tmp_path):
    r = rill(hub, tmp_path, "pull", "tiny/river")
    assert r.returncode == 0, r.stderr
    directory = Path(r.stdout.split("\n")[0].split(": ", 1)[1])
    assert (directory / "model.safetensors").read_bytes() == hub.repos["tiny/river"]["model.safetensors"]


@pytest.mark.parametrize("name,words", [
    ("tiny/river-GGUF:Q5_K_M", "tiny/river-GGUF has no Q5_K_M file; its quantizations: Q4_K_M, Q8_0"),
    ("tiny/nothing", "no model tiny/nothing on the hub"),
    ("river", "'river' is not a model name"),
    ("tiny/river:Q4_K_M", "tiny/river has no GGUF files, so no Q4_K_M"),
])
def test_bad_names_are_one_line_that_says_what_to_do(hub, tmp_path, name, words):
    r = rill(hub, tmp_path, "pull", name)
    assert r.returncode == 1 and words in r.stderr and r.stderr.count("\n") == 1, r.stderr


def test_a_cut_download_resumes_and_a_wrong_hash_is_refused_and_deleted(hub, tmp_path):
    hub.cut_once.add("tiny/river-GGUF/river-Q8_0.gguf")
    first = rill(hub, tmp_path, "pull", "tiny/river-GGUF:Q8_0")
    if first.returncode != 0:  # the cut ended that run: the next one takes up where it stopped
        first = rill(hub, tmp_path, "pull", "tiny/river-GGUF:Q8_0")
    assert first.returncode == 0, first.stderr
    ranges = [asked for name, asked in hub.gets if name == "river-Q8_0.gguf" and asked]
    assert ranges and int(ranges[-1].removeprefix("bytes=").rstrip("-")) > 0  # only the rest was asked for
    pulled = Path(first.stdout.split("\n")[0].split(": ", 1)[1])
    assert hashlib.sha256(pulled.read_bytes()).digest() == hashlib.sha256(
        hub.repos["tiny/river-GGUF"]["river-Q8_0.gguf"]).digest()
    hub.corrupt.add("tiny/river-GGUF/river-Q4_K_M.gguf")
    bad = rill(hub, tmp_path, "pull", "tiny/river-GGUF:Q4_K_M")
    assert bad.returncode == 1 and "does not match the hub's SHA-256: it was deleted" in bad.stderr
    assert not list((tmp_path / "hf").rglob("river-Q4_K_M.gguf"))


def test_a_disk_that_fills_up_mid_download_is_one_line_and_leaves_no_model(hub, tmp_path):
    """The pull may write files of at most 100 kB (RLIMIT_FSIZE): the 300 kB file's write fails
    half-way with EFBIG, as a full disk fails it with ENOSPC."""
    def small_files():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))

    r = rill(hub, tmp_path, "pull", "tiny/river-GGUF:Q4_K_M", preexec_fn=small_files)
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert "no room left while pulling tiny/river-GGUF (a full disk, or a file size limit): free some space" in r.stderr
    assert not list((tmp_path / "hf").rglob("river-Q4_K_M.gguf"))  # nothing where Rill would load it
    assert not list((tmp_path / "hf").rglob("*.incomplete"))  # nor the part
