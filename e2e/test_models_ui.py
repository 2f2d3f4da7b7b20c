"""The model picker in Settings: a model pulled from a loopback stand-in of the hub by name, its
progress bar fed by the server's model events, then listed with what it can do and its size,
chosen, and answering; a pull cancelled; a bad name said."""
import random

import pytest
from playwright.sync_api import expect

from tests.fake_hub import FakeHub
from tests.server import start_server, stop_server

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def hub():
    from rill.providers.local import wheel_gguf_path

    server = FakeHub({"test/SmolLM2-GGUF": {wheel_gguf_path().name: wheel_gguf_path().read_bytes()},
                      "test/big-GGUF": {"big-Q4_K_M.gguf": random.Random(3).randbytes(40_000_000)}}).start()
    server.rate["test/SmolLM2-GGUF"] = 25_000_000  # about four seconds: a bar to watch
    server.rate["test/big-GGUF"] = 2_000_000  # twenty: one to cancel
    yield server
    server.stop()


@pytest.fixture(scope="module")
def pull_server(hub, tmp_path_factory):
    home = tmp_path_factory.mktemp("pull-ui")
    srv = start_server("eventlet", home, HF_ENDPOINT=hub.url, HF_HOME=home / "hf", HF_HUB_OFFLINE=0)
    yield srv
    stop_server(srv)


def open_settings(page):
    page.click("#open-settings")
    expect(page.locator("#settings")).to_be_visible()


def pull(page, name):
    page.fill("#pull-name", name)
    page.click("#pull-start")


def test_a_model_pulled_from_the_picker_shows_progress_then_answers(open_page, pull_server, artifacts):
    app = open_page(pull_server)
    app.open(temperature=0, maxTokens=8)
    page = app.page
    open_settings(page)
    pull(page, "test/SmolLM2-GGUF:Q4_1")
    item = page.locator(".pull-item", has_text="local/smollm2-gguf:q4_1")
    expect(item.locator("progress")).to_be_visible()
    page.wait_for_function("""() => {
        const bar = document.querySelector('.pull-item progress');
        return bar && bar.value > 0 && bar.value < 1;
    }""")
    expect(item.locator(".pull-figures")).to_contain_text(" of ")
    page.screenshot(path=str(artifacts / "pull-progress.png"))
    expect(item).to_have_count(0, timeout=120_000)  # down and loaded
    option = page.locator("#settings-form select[name=model] option[value='local/smollm2-gguf:q4_1']")
    expect(option).to_have_text("local/smollm2-gguf:q4_1 · 8k context · 98 MB", timeout=60_000)  # 98,362,432 bytes
    page.select_option("#settings-form select[name=model]", "local/smollm2-gguf:q4_1")
    page.click("#settings-form button[value=save]")
    expect(page.locator("#model-name")).to_have_text("local/smollm2-gguf:q4_1")
    app.send("Hello?")
    app.wait_reply_done()
    expect(app.last_reply().locator(".body")).not_to_be_empty()


def test_a_pull_is_cancelled_and_a_bad_name_is_said(open_page, pull_server):
    app = open_page(pull_server)
    app.open()
    page = app.page
    open_settings(page)
    pull(page, "river")
    expect(page.locator("#pull-status")).to_contain_text("'river' is not a model name")
    pull(page, "test/big-GGUF")
    item = page.locator(".pull-item", has_text="local/big-gguf")
    expect(item.locator("progress")).to_be_visible()
    expect(page.locator("#pull-name")).to_have_value("")  # taken
    item.locator("[data-action=cancel]").click()
    failed = page.locator(".pull-item.failed", has_text="local/big-gguf")
    expect(failed.locator(".pull-error")).to_have_text("pulling test/big-GGUF was cancelled")
    expect(page.locator("#settings-form select[name=model] option[value='local/big-gguf']")).to_have_count(0)
