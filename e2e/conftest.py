"""Browser tests: the real server (real model plus the scripted provider) in headless Chromium.

Debian's Chromium is used (`make browser` installs it): Playwright's own browser download is
not. Each test gets a fresh browser context, so its own empty IndexedDB and localStorage, and
starts with no chats on the shared server.
"""
import json

import pytest
import requests
from playwright.sync_api import expect, sync_playwright

from e2e.browser import launch
from tests.server import ROOT

ARTIFACTS = ROOT / "test-artifacts"
TIMEOUT_MS = 30_000  # generous: the real model is slower when the machine is busy; passing tests wait less

expect.set_options(timeout=TIMEOUT_MS)

# Runs in every page before its own scripts: records what must never happen.
WATCH = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => window.__cspViolations.push(e.violatedDirective + " " + e.blockedURI));
"""


@pytest.fixture(scope="session")
def server(servers):
    if not (ROOT / "rill" / "static" / "vendor" / "marked.esm.js").exists():
        pytest.fail("rill/static/vendor is empty: run `make vendor` (npm ci, then copies the browser builds)", pytrace=False)
    return servers("eventlet")


@pytest.fixture(scope="session")
def browser():
    with sync_playwright() as playwright:
        try:
            browser = launch(playwright)
        except RuntimeError as err:
            pytest.fail(str(err), pytrace=False)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def artifacts():
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


# A streamed reply is an item whose id is the page's own (`reply-<turn>`) until it ends.
RECORD_STREAMED = """
if (!window.__recording) {
  window.__recording = true;
  new MutationObserver(() => {
    for (const item of document.querySelectorAll('.from-assistant[data-id^="reply-"]:not(.is-streaming):not([data-recorded])')) {
      item.dataset.recorded = "1";
      const kept = JSON.parse(sessionStorage.getItem("streamed") || "[]");
      sessionStorage.setItem("streamed", JSON.stringify([...kept, item.querySelector(".body").innerText]));
    }
  }).observe(document, { subtree: true, childList: true, attributes: true, attributeFilter: ["class"] });
}
"""


class Page:
    """A Playwright page on the app, plus what the tests check on every page."""

    def __init__(self, page, server):
        self.page = page
        self.server = server
        self.dialogs = []
        self.errors = []
        page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.add_init_script(WATCH)

    def open(self, **settings):
        """Loads the app with these settings (settings.js names) saved, as if chosen earlier."""
        if settings:
            saved = json.dumps(json.dumps(settings))
            self.page.add_init_script(f"localStorage.getItem('rill.settings') ?? localStorage.setItem('rill.settings', {saved})")
        self.reload()

    def reload(self):
        response = self.page.goto(self.server.url + "/")
        # The UI is written for a strict policy: no inline script or style, no eval. A test
        # page that broke it would record violations (checked after each test).
        policy = response.headers.get("content-security-policy", "")
        assert "script-src 'self'" in policy and "style-src 'self'" in policy, policy
        self.page.wait_for_selector("html[data-ready]")

    def send(self, text):
        self.page.fill("#prompt", text)
        self.page.press("#prompt", "Enter")

    def wait_reply_done(self, timeout=120_000):
        self.page.wait_for_selector("#stop", state="hidden", timeout=timeout)
        self.page.wait_for_selector(".from-assistant:not(.is-streaming)", timeout=timeout)

    def last_reply(self):
        return self.page.locator(".from-assistant").last

    def newest_thread_id(self):
        """The thread changed last, on the server (tests start with none)."""
        threads = requests.get(f"{self.server.url}/api/threads", timeout=10).json()["threads"]
        return max(threads, key=lambda t: t["updated_at"])["id"]

    def record_streamed(self):
        """From now on (reloads included), the text of each reply as streamed, kept when it ends
        and before the thread is read again from the server: streamed() returns them."""
        self.page.add_init_script(RECORD_STREAMED)
        self.page.evaluate(RECORD_STREAMED)

    def streamed(self):
        return self.page.evaluate("JSON.parse(sessionStorage.getItem('streamed') || '[]')")



@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Each phase's report on the test item, for open_page to see whether the test failed."""
    report = (yield).get_result()
    setattr(item, f"report_{report.when}", report)


def keep_failed_page(page, name: str) -> None:
    """A failed test's page as it was: a screenshot, and its HTML beside it (what a CI run leaves)."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / f"failed-{name}.png", full_page=True)
    (ARTIFACTS / f"failed-{name}.html").write_text(page.content())


@pytest.fixture
def open_page(browser, request):
    """Makes app pages on a given server, each in its own context (its own storage); checks each
    at the end: no uncaught errors, no dialogs, no Content-Security-Policy violations. A failed
    test's pages are kept in test-artifacts/."""
    made = []

    def make(server, width=1200, height=800, **context_options):
        context = browser.new_context(viewport={"width": width, "height": height}, base_url=server.url,
                                      accept_downloads=True, **context_options)
        context.set_default_timeout(TIMEOUT_MS)
        wrapped = Page(context.new_page(), server)
        made.append((context, wrapped))
        return wrapped

    yield make
    failed = getattr(request.node, "report_call", None) is not None and request.node.report_call.failed
    for n, (context, wrapped) in enumerate(made):
        try:
            page = wrapped.page
            if failed and not page.is_closed():
                keep_failed_page(page, f"{request.node.name}-{n}")
            assert wrapped.errors == [], f"uncaught errors in the page: {wrapped.errors}"
            assert wrapped.dialogs == [], f"the page opened dialogs: {wrapped.dialogs}"
            if not page.is_closed() and page.url.startswith(wrapped.server.url):
                assert page.evaluate("window.__cspViolations") == [], "Content-Security-Policy violations"
        finally:
            context.close()


@pytest.fixture
def open_app(open_page, server):
    """Pages on the session's server, which keeps the chats: each test starts with none."""
    for thread in requests.get(f"{server.url}/api/threads", timeout=10).json()["threads"]:
        requests.delete(f"{server.url}/api/threads/{thread['id']}", timeout=10)
    return lambda **options: open_page(server, **options)


@pytest.fixture
def app(open_app):
    return open_app()
