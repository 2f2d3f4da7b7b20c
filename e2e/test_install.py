"""Rill without a checkout: the wheel built from this tree, installed with its llama.cpp extra
into a fresh virtualenv outside the checkout, `rill serve` started from an empty directory (the
model named on the command line's environment, pulled from a loopback stand-in of the hub), a reply
streamed, the UI loaded and used in Chromium, and a model for an engine that is not installed
refused with the extra to install."""
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests import tiny_vision
from tests.fake_hub import FakeHub
from tests.server import ROOT, Server, free_port, stop_server
from tests.sse import SSEStream

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

LLAMA_WHEELS = ROOT / ".cache" / "wheels"  # make setup keeps the llama-cpp-python it compiled here


def run(*command, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, **kwargs)
    assert done.returncode == 0, f"{' '.join(map(str, command))}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh virtualenv with the wheel and its llama.cpp extra (the compiled llama-cpp-python
    taken from make setup's wheel, the rest resolved as requirements.txt pins them)."""
    if not list(LLAMA_WHEELS.glob("llama_cpp_python-*.whl")):
        pytest.fail(f"no llama-cpp-python wheel in {LLAMA_WHEELS}: run `make setup`", pytrace=False)
    work = tmp_path_factory.mktemp("install")
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--disable-pip-version-check",
        "-w", work / "dist", ROOT)
    wheel = next((work / "dist").glob("rill-*.whl"))
    run(sys.executable, "-m", "venv", work / "venv")
    run(work / "venv" / "bin" / "python", "-m", "pip", "install", "--disable-pip-version-check", "--quiet",
        "-c", ROOT / "requirements.txt", "--find-links", LLAMA_WHEELS, "--only-binary", "llama-cpp-python",
        f"{wheel}[llamacpp]", cwd=work)
    return work / "venv"


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    from rill.providers.local import wheel_gguf_path

    vlm = tiny_vision.build(tmp_path_factory.mktemp("vlm"))
    server = FakeHub({"test/SmolLM2-GGUF": {wheel_gguf_path().name: wheel_gguf_path().read_bytes()},
                      "test/tiny-vlm": {p.name: p.read_bytes() for p in vlm.iterdir() if p.is_file()}}).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def served(installed, hub, tmp_path_factory):
    """`rill serve` from an empty directory, with a home of its own (its XDG places)."""
    work = tmp_path_factory.mktemp("serve")
    empty, home = work / "empty", work / "home"
    empty.mkdir()
    home.mkdir()
    port = free_port()
    env = {"PATH": f"{installed / 'bin'}:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8",
           "HF_ENDPOINT": hub.url, "HF_HUB_DISABLE_TELEMETRY": "1", "RILL_MODEL": "hf:test/SmolLM2-GGUF:Q4_1",
           "RILL_PORT": str(port), "RILL_KEEPALIVE_SECONDS": "0.5"}
    log = work / "serve.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([installed / "bin" / "rill", "serve"], cwd=empty, env=env, stdout=out,
                                   stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}", "eventlet", process, log)
    deadline = time.monotonic() + 300
    while True:
        assert process.poll() is None, f"rill serve exited:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"rill serve never became ready:\n{log.read_text()[-3000:]}"
        try:
            if server.health()["status"] == "ok":
                break
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    server.empty, server.home = empty, home
    yield server
    stop_server(server)


def test_the_installed_package_is_the_wheel_not_the_checkout(installed):
    where = run(installed / "bin" / "python", "-c", "import rill, rill_cli; print(rill.__file__, rill_cli.__file__)",
                cwd="/")
    assert str(ROOT) not in where.stdout and "site-packages" in where.stdout
    missing = run(installed / "bin" / "python", "-c", "import importlib.util as u; print(u.find_spec('torch'))")
    assert missing.stdout.strip() == "None"  # the transformers extra was not asked for


def test_rill_serve_from_an_empty_directory_streams_a_reply(served):
    stream = SSEStream(f"{served.url}/api/chat/stream", {"message": "Say hello.", "temperature": 0, "max_tokens": 12})
    events = list(stream)
    stream.close()
    assert [e.type for e in events][0] == "start" and events[-1].type == "done"
    assert "".join(e.json()["token"] for e in events if e.type == "token").strip()
    assert list(served.empty.iterdir()) == []  # nothing written where it was started
    assert (served.home / ".local" / "share" / "rill" / "sessions.db").is_file()  # the XDG data place
    listed = requests.get(f"{served.url}/api/models", timeout=10).json()
    assert listed["default"] == "local/smollm2-gguf:q4_1"


def test_a_model_for_an_engine_not_installed_names_the_extra(served):
    r = requests.post(f"{served.url}/api/models/pull", json={"name": "test/tiny-vlm"}, timeout=10)
    assert r.status_code == 202
    deadline = time.monotonic() + 60
    while not (failed := requests.get(f"{served.url}/api/models", timeout=10).json()["failed"]):
        assert time.monotonic() < deadline
        time.sleep(0.3)
    assert failed[0]["id"] == "local/tiny-vlm"
    assert failed[0]["error"].startswith("a transformers model needs pip install 'rill[transformers]'")


def test_the_ui_loads_and_answers_in_chromium(served, open_page):
    from playwright.sync_api import expect

    app = open_page(served)
    app.open(temperature=0, maxTokens=8)
    for name in ("marked.esm.js", "purify.es.js", "socket.io.esm.min.js"):
        assert requests.get(f"{served.url}/static/vendor/{name}", timeout=10).status_code == 200
    app.send("Hello?")
    app.wait_reply_done()
    expect(app.last_reply().locator(".body")).not_to_be_empty()
    expect(app.page.locator("#model-name")).to_have_text("local/smollm2-gguf:q4_1")
