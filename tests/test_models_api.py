"""Loading another local model while the server keeps serving."""
import time
from pathlib import Path

import pytest
import requests

from rill.config import Settings
from tests.sse import SSEStream

pytestmark = pytest.mark.slow


def converted_model_dir() -> Path:
    path = Path(Settings.from_env().cache_dir) / "models" / "smollm2-135m-instruct"
    assert (path / "config.json").exists(), "run `make model` first"
    return path


@pytest.mark.parametrize("kind,engine", [("gguf", "llama.cpp"), ("directory", "transformers")])
def test_load_a_second_model_while_serving(server, tmp_path, kind, engine):
    from rill.providers.local import wheel_gguf_path

    copy = tmp_path / f"smollm-{kind}{'.gguf' if kind == 'gguf' else ''}"
    copy.symlink_to(wheel_gguf_path() if kind == "gguf" else converted_model_dir())
    s = SSEStream(f"{server.url}/api/chat/stream", {"message": "Tell a story.", "temperature": 0, "max_tokens": 60})
    events = iter(s)
    assert next(events).type == "start"
    r = requests.post(f"{server.url}/api/models/load", json={"path": str(copy)}, timeout=10)
    name = f"local/smollm-{kind}"
    assert r.status_code == 202 and r.json() == {"id": name, "state": "loading"}
    assert [e.type for e in events][-1] == "done"  # the running stream was not disturbed
    s.close()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        listing = requests.get(f"{server.url}/api/models", timeout=10).json()
        state = {m["id"]: m["state"] for p in listing["providers"] for m in p["models"]}
        if state.get(name) != "loading":
            break
        time.sleep(0.2)
    assert state[name] == "ready" and state["local/smollm2-135m-instruct"] == "ready"
    loaded = next(m for p in listing["providers"] for m in p["models"] if m["id"] == name)
    assert loaded["engine"] == engine
    body = {"message": "Name a color.", "temperature": 0, "max_tokens": 8}
    reply = requests.post(f"{server.url}/api/chat", json={**body, "model": name}, timeout=60).json()
    assert reply["model"] == name and reply["reply"].strip()
    again = requests.post(f"{server.url}/api/models/load", json={"path": str(copy)}, timeout=10)
    assert again.status_code == 409 and again.json()["error"]["type"] == "model_exists"


@pytest.mark.parametrize("body,words", [
    ({"path": "/no/such/model"}, "does not exist"),
    ({"path": "/etc/hostname"}, "not a .gguf file"),
    ({"path": "/tmp"}, "without config.json"),
    ({"path": "/dev/null"}, "neither a regular file nor a directory"),
    ({"path": "~nosuchuser/model"}, "cannot be used"),
    ({"path": "/tmp/\u0000x"}, "does not exist"),
    ({}, "path: Field required"),
    ({"path": 7}, "path"),
])
def test_bad_model_paths_are_clear_400s(server, body, words):
    r = requests.post(f"{server.url}/api/models/load", json=body, timeout=10)
    assert r.status_code == 400 and words in r.json()["error"]["message"]


def test_bad_model_paths_also_include_fake_gguf_files(server, tmp_path):
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"not a gguf at all")
    r = requests.post(f"{server.url}/api/models/load", json={"path": str(fake)}, timeout=10)
    assert r.status_code == 400 and "GGUF header" in r.json()["error"]["message"]


def test_a_model_that_fails_to_load_leaves_no_entry_behind(server, tmp_path):
    broken = tmp_path / "broken-model.gguf"
    broken.write_bytes(b"GGUF" + bytes(64))  # the right magic, then nothing a loader can use
    r = requests.post(f"{server.url}/api/models/load", json={"path": str(broken)}, timeout=10)
    assert r.status_code == 202 and r.json()["id"] == "local/broken-model"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        names = [m["id"] for p in requests.get(f"{server.url}/api/models", timeout=10).json()["providers"]
                 for m in p["models"]]
        if "local/broken-model" not in names:
            break
        time.sleep(0.2)
    assert "local/broken-model" not in names
    assert not any("broken-model" in key for key in server.health()["engine"])
    assert "loading" in server.log.read_text() and "broken-model" in server.log.read_text()
    again = requests.post(f"{server.url}/api/models/load", json={"path": str(broken)}, timeout=10)
    assert again.status_code == 202  # not "already loaded": nothing was left behind


def test_a_model_that_cannot_load_says_why_and_the_server_serves_on(tmp_path):
    from tests.server import start_server, stop_server

    srv = start_server("eventlet", tmp_path, ready="error", RILL_MODEL_PATH="/no/such/model.gguf")
    try:
        health = srv.health()
        assert "does not exist" in health["model"]["error"]
        r = requests.post(f"{srv.url}/api/chat", json={"message": "hi"}, timeout=30)
        assert r.status_code == 503 and r.json()["error"]["type"] == "model_unavailable"
        assert "does not exist" in r.json()["error"]["message"]
        s = SSEStream(f"{srv.url}/api/chat/stream", {"message": "hi"})
        events = list(s)
        s.close()
        assert [e.type for e in events] == ["start", "error"]
        echo = requests.post(f"{srv.url}/api/chat", json={"message": "still here", "model": "scripted/echo"}, timeout=30)
        assert echo.json()["reply"] == "still here "
    finally:
        stop_server(srv)
