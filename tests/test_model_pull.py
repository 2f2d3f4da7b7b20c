"""Models pulled by name while serving, against a loopback stand-in of the hub (tests/fake_hub.py):
RILL_MODEL=hf:... pulled on first start, POST /api/models/pull with its progress in the model events,
cancel, bad names, and RILL_MAX_LOADED_MODELS unloading the least recently used model, which loads
again with its next turn and answers as before."""
import json
import random
import threading
import time

import psutil
import pytest
import requests

from tests import tiny_vision
from tests.fake_hub import FakeHub
from tests.server import start_server, stop_server

pytestmark = pytest.mark.slow

GGUF_REPO = "test/SmolLM2-GGUF"
OWN = "local/smollm2-gguf:q4_1"


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    from rill.providers.local import wheel_gguf_path

    vlm = tiny_vision.build(tmp_path_factory.mktemp("vlm"))
    server = FakeHub({
        GGUF_REPO: {wheel_gguf_path().name: wheel_gguf_path().read_bytes(), "README.md": b"# SmolLM2"},
        "test/tiny-vlm": {p.name: p.read_bytes() for p in vlm.iterdir() if p.is_file()},
        "test/big-GGUF": {"big-Q4_K_M.gguf": random.Random(3).randbytes(36_000_000)},
    }).start()
    # nine seconds: a pull to watch and cancel (huggingface_hub writes 10 MB at a time: the bar moves by those)
    server.rate["test/big-GGUF"] = 4_000_000
    yield server
    server.stop()


@pytest.fixture(scope="module")
def server(hub, tmp_path_factory):
    home = tmp_path_factory.mktemp("pulls")
    srv = start_server("eventlet", home, entry="rill.entry", RILL_MODEL=f"hf:{GGUF_REPO}:Q4_1",
                       RILL_MAX_LOADED_MODELS=1, RILL_ENGINE="auto", HF_ENDPOINT=hub.url, HF_HOME=home / "hf",
                       HF_HUB_OFFLINE=0, HF_HUB_DISABLE_TELEMETRY=1)
    srv.hf_home = home / "hf"
    yield srv
    stop_server(srv)


def listing(server) -> dict:
    return requests.get(f"{server.url}/api/models", timeout=10).json()


def models(server) -> dict:
    return {m["id"]: m for p in listing(server)["providers"] for m in p["models"]}


def wait_for(check, seconds=120):
    deadline = time.monotonic() + seconds
    while not (found := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)
    return found


def ask(server, model, text="Name a color.") -> str:
    r = requests.post(f"{server.url}/api/chat", timeout=120,
                      json={"message": text, "model": model, "temperature": 0, "max_tokens": 8})
    assert r.status_code == 200, r.text
    return r.json()["reply"]


class ModelEvents:
    """GET /api/models/events, read in a thread: every listing it sent."""

    def __init__(self, server):
        self.listings = []
        self.response = requests.get(f"{server.url}/api/models/events", stream=True, timeout=30)
        assert self.response.status_code == 200
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        try:
            for line in self.response.iter_lines():
                if line.startswith(b"data: "):
                    self.listings.append(json.loads(line[6:]))
        except Exception:  # noqa: BLE001 - closed under it, from the test's thread
            pass

    def states(self, model_id) -> list[dict]:
        return [m for listing in self.listings for p in listing["providers"] for m in p["models"]
                if m["id"] == model_id]

    def close(self):
        self.response.close()


def test_rill_model_names_a_hub_model_that_is_pulled_on_first_start(server, hub):
    from rill.providers.local import wheel_gguf_path

    body = listing(server)
    assert body["default"] == OWN
    own = models(server)[OWN]
    assert own["state"] == "ready" and own["engine"] == "llama.cpp"
    assert own["size_bytes"] == wheel_gguf_path().stat().st_size and own["context_tokens"] > 0
    assert ask(server, OWN).strip()
    gets = [name for name, _ in hub.gets]
    assert gets.count(wheel_gguf_path().name) == 1 and "README.md" not in gets  # only the model's file


def test_a_pull_from_the_picker_shows_progress_and_can_be_cancelled(server, hub):
    events = ModelEvents(server)
    try:
        r = requests.post(f"{server.url}/api/models/pull", json={"name": "test/big-GGUF"}, timeout=10)
        assert r.status_code == 202 and r.json() == {"id": "local/big-gguf", "state": "pulling"}
        again = requests.post(f"{server.url}/api/models/pull", json={"name": "test/big-GGUF"}, timeout=10)
        assert again.status_code == 409 and again.json()["error"]["type"] == "model_exists"
        wait_for(lambda: any(0 < m["progress"]["done"] < m["progress"]["total"]
                             for m in events.states("local/big-gguf") if m["state"] == "pulling"), 30)
        turn = requests.post(f"{server.url}/api/chat", json={"message": "hi", "model": "local/big-gguf"}, timeout=10)
        assert turn.status_code == 503 and "still being pulled from the hub" in turn.json()["error"]["message"]
        children = [p for p in psutil.Process(server.process.pid).children()
                    if "rill.providers.local.hub" in " ".join(p.cmdline())]
        assert len(children) == 1
        cancel = requests.post(f"{server.url}/api/models/cancel", json={"id": "local/big-gguf"}, timeout=10)
        assert cancel.status_code == 202
        failed = wait_for(lambda: listing(server)["failed"], 10)
        assert failed == [{"id": "local/big-gguf", "error": "pulling test/big-GGUF was cancelled"}]
        assert "local/big-gguf" not in models(server)
        assert not children[0].is_running() or children[0].status() == psutil.STATUS_ZOMBIE
        assert not list(server.hf_home.rglob("*.incomplete")) and not list(server.hf_home.rglob("big-Q4_K_M.gguf"))
        done = [m["progress"]["done"] for m in events.states("local/big-gguf") if m["state"] == "pulling"]
        assert done == sorted(done) and done[0] < done[-1]  # a bar that moves forward
    finally:
        events.close()
    not_pulling = requests.post(f"{server.url}/api/models/cancel", json={"id": OWN}, timeout=10)
    assert not_pulling.status_code == 409 and not_pulling.json()["error"]["type"] == "not_pulling"


@pytest.mark.parametrize("name,status,words", [
    ("river", 400, "'river' is not a model name"),
    ("test/nothing", 202, "no model test/nothing on the hub"),
    ("test/big-GGUF:Q8_0", 202, "test/big-GGUF has no Q8_0 file; its quantizations: Q4_K_M"),
])
def test_a_bad_name_is_said_in_one_line(server, name, status, words):
    r = requests.post(f"{server.url}/api/models/pull", json={"name": name}, timeout=10)
    assert r.status_code == status, r.text
    if status == 400:
        assert words in r.json()["error"]["message"]
        return
    model_id = r.json()["id"]
    failed = wait_for(lambda: [f for f in listing(server)["failed"] if f["id"] == model_id], 30)
    assert words in failed[0]["error"] and "\n" not in failed[0]["error"]


def test_the_least_recently_used_model_is_unloaded_and_loads_again_when_asked(server):
    before = ask(server, OWN)
    r = requests.post(f"{server.url}/api/models/pull", json={"name": "test/tiny-vlm"}, timeout=10)
    assert r.status_code == 202
    vlm = wait_for(lambda: models(server).get("local/tiny-vlm", {}).get("state") == "ready"
                   and models(server)["local/tiny-vlm"])
    assert vlm["engine"] == "transformers" and vlm["input_modalities"] == ["text", "image"] and vlm["size_bytes"] > 0
    assert models(server)[OWN]["state"] == "unloaded"  # RILL_MAX_LOADED_MODELS=1
    assert ask(server, OWN) == before  # loaded again with its turn: the same greedy answer
    assert models(server)[OWN]["state"] == "ready" and models(server)["local/tiny-vlm"]["state"] == "unloaded"


def test_pulled_models_are_listed_after_a_restart_and_load_with_their_first_turn(server, hub, tmp_path):
    """A second server on the same hub cache, offline: RILL_MODEL's model comes from the cache, the
    other pulled models are there, unloaded."""
    other = start_server("eventlet", tmp_path, entry="rill.entry", RILL_MAX_LOADED_MODELS=1,
                         RILL_MODEL=f"hf:{GGUF_REPO}:Q4_1", HF_HOME=server.hf_home, HF_HUB_OFFLINE=1)
    try:
        listed = models(other)
        assert listed[OWN]["state"] == "ready" and listed["local/tiny-vlm"]["state"] == "unloaded"
        assert listed["local/tiny-vlm"]["size_bytes"] > 0  # known before it loads
        assert "local/smollm2-135m-instruct" not in listed  # RILL_MODEL's took the local model's place
        assert "local/big-gguf" not in listed  # cancelled: nothing of it was kept
        assert ask(other, OWN) == ask(server, OWN)
    finally:
        stop_server(other)


def test_turns_that_switch_models_back_and_forth_all_get_their_reply(server):
    """Each turn's model unloads the other's (RILL_MAX_LOADED_MODELS=1): none is lost or refused,
    and the listing read meanwhile (every request reads it) never fails mid-unload. The vision model
    (transformers) answers as alone; llama.cpp's turns may share a batch, whose kernels round
    differently (tests/test_batching.py's assert_greedy): its replies are its own, not the other's."""
    from concurrent.futures import ThreadPoolExecutor

    expected = {OWN: ask(server, OWN), "local/tiny-vlm": ask(server, "local/tiny-vlm")}
    order = [OWN, "local/tiny-vlm"] * 4
    switching = True

    def list_while_switching() -> list[int]:
        statuses = []
        while switching:
            statuses.append(requests.get(f"{server.url}/api/models", timeout=10).status_code)
        return statuses

    with ThreadPoolExecutor(6) as pool:
        listings = [pool.submit(list_while_switching) for _ in range(2)]
        replies = list(pool.map(lambda model: ask(server, model), order))
        switching = False
    for model, reply in zip(order, replies):
        if model == OWN:
            assert reply.strip() and reply != expected["local/tiny-vlm"]
        else:
            assert reply == expected[model]
    statuses = [status for listing in listings for status in listing.result()]
    assert len(statuses) > 10 and set(statuses) == {200}
