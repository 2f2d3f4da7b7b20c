"""The UI against a server with auth on: it says when the token is missing or expired, and
works once a valid one is pasted into Settings."""
import time

import jwt
import pytest
from playwright.sync_api import expect

from tests.server import start_server, stop_server

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SECRET = "e2e-secret-long-enough-for-hs256-tokens!!"


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    srv = start_server("eventlet", tmp_path_factory.mktemp("auth"), RILL_JWT_SECRET=SECRET)
    yield srv
    stop_server(srv)


def token(ttl=600):
    now = int(time.time())
    return jwt.encode({"sub": "browser-user", "iat": now - 10, "exp": now + ttl}, SECRET, algorithm="HS256")


def set_token(page, value):
    page.click("#open-settings")
    page.fill("#settings-form input[name=token]", value)
    page.click("#settings-form button[value=save]")


@pytest.mark.parametrize("transport", ["sse", "socketio"])
def test_missing_expired_and_valid_tokens(open_page, auth_server, transport, artifacts):
    app = open_page(auth_server)
    app.open(transport=transport, temperature=0, maxTokens=8)
    page = app.page
    app.send("Hello?")
    error = page.locator(".error-message").last
    expect(error).to_contain_text("needs an access token")
    page.screenshot(path=artifacts / f"auth-missing-{transport}.png")

    set_token(page, token(ttl=-3600))  # expired an hour ago
    page.locator("[data-action=retry]").last.click()
    expect(page.locator(".error-message").last).to_contain_text("token expired")
    expect(page.locator(".error-message").last).to_contain_text("was refused")

    set_token(page, token())
    page.locator("[data-action=retry]").last.click()
    page.wait_for_selector("#stop", state="hidden", timeout=60_000)
    reply = page.locator(".from-assistant").last
    expect(reply.locator(".body")).not_to_be_empty()
    expect(reply.locator(".error-message")).to_have_count(0)
