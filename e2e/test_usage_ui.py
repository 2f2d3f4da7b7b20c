"""Usage in the Settings dialog: what the signed-in user used in the last 30 days, as a totals
line, a bar chart of tokens per day and a table per model, equal to the turns' own `done` usage.

Its own server with auth on and prices for one model, and a new user per test, so no other
test's turns are counted.
"""
import json
import math
import re
import time
import uuid
from datetime import datetime, timedelta, timezone

import jwt
import pytest
import requests
from playwright.sync_api import expect

from tests.server import start_server, stop_server

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SECRET = "e2e-usage-secret-long-enough-for-hs256-tokens"
PRICES = {"scripted/echo": {"prompt": 1000, "completion": 2000}}  # dollars per million tokens
LIGHT_ACCENT, DARK_ACCENT = "rgb(43, 95, 217)", "rgb(122, 167, 255)"  # --accent in app.css


@pytest.fixture(scope="module")
def usage_server(tmp_path_factory):
    srv = start_server("eventlet", tmp_path_factory.mktemp("usage"), RILL_JWT_SECRET=SECRET,
                       RILL_PRICES=json.dumps(PRICES))
    yield srv
    stop_server(srv)


@pytest.fixture
def open_usage_app(open_page, usage_server):
    return lambda width=1200, height=900: open_page(usage_server, width, height)


def new_user():
    """A user no other test uses, and a token for it."""
    user = f"usage-{uuid.uuid4().hex[:8]}"
    now = int(time.time())
    return user, jwt.encode({"sub": user, "iat": now - 10, "exp": now + 3600}, SECRET, algorithm="HS256")


def chat(server, token, message, model):
    """One turn through POST /api/chat; its `done` usage."""
    response = requests.post(f"{server.url}/api/chat", json={"message": message, "model": model},
                             headers={"Authorization": f"Bearer {token}"}, timeout=60)
    response.raise_for_status()
    body = response.json()
    assert body["model"] == model and body["finish_reason"] == "stop"
    return body["usage"]


def dollars(cost):
    """usage.js's formatCost: enough decimals to show small sums."""
    return f"${cost:.{max(2, min(8, 1 - math.floor(math.log10(cost))))}f}"


def open_settings(page):
    """Opens Settings; the GET /api/usage request it makes, once answered."""
    with page.expect_request("**/api/usage?days=30") as asked:
        page.click("#open-settings")
    expect(page.locator("#settings")).to_be_visible()
    asked.value.response()  # waits for the answer
    return asked.value


def utc_today():
    return datetime.now(timezone.utc).date()


def test_settings_show_the_users_last_30_days(open_usage_app, usage_server, artifacts):
    user, token = new_user()
    first_day = utc_today()
    turns = [("scripted/echo", "one two three"), ("scripted/echo", "four five six seven"), ("scripted/long", "30")]
    done = [(model, chat(usage_server, token, message, model)) for model, message in turns]

    app = open_usage_app()
    app.open(token=token, theme="light")
    page = app.page
    request = open_settings(page)
    assert request.headers["authorization"] == f"Bearer {token}"  # the token from Settings
    body = request.response().json()
    if utc_today() != first_day:
        pytest.skip("the UTC day changed while the turns ran")
    today = first_day.isoformat()
    assert body["user"] == user and body["until"] == today

    prompt = sum(u["prompt_tokens"] for _, u in done)
    completion = sum(u["completion_tokens"] for _, u in done)
    echo = [u for model, u in done if model == "scripted/echo"]
    cost = round(sum(u["prompt_tokens"] * 1000 + u["completion_tokens"] * 2000 for u in echo) / 1e6, 6)
    section = page.locator("#usage")
    expect(section.locator(".usage-status")).to_be_hidden()
    expect(page.locator("#usage-totals")).to_have_text(
        f"3 turns · {prompt:,} prompt tokens · {completion:,} completion tokens · {dollars(cost)}")
    expect(section.locator(".usage-who")).to_contain_text(user)

    # The chart: 30 days, oldest first, today last; only today has usage, and exactly the turns'.
    chart = page.locator("#usage-chart")
    assert chart.get_attribute("role") == "img"
    bars = chart.locator("rect.usage-bar[data-day]")
    expect(bars).to_have_count(30)
    days = bars.evaluate_all("bars => bars.map((b) => b.dataset.day)")
    assert days == [(first_day - timedelta(days=n)).isoformat() for n in range(29, -1, -1)]
    assert days[0] == body["since"]
    bar = chart.locator(f"rect.usage-bar[data-day='{today}']")
    assert int(bar.get_attribute("data-prompt")) == prompt
    assert int(bar.get_attribute("data-completion")) == completion
    assert float(bar.get_attribute("height")) > 0
    others = bars.evaluate_all("bars => bars.slice(0, -1).map((b) => [b.dataset.prompt, b.dataset.completion,"
                               " b.getAttribute('height')])")
    assert others == [["0", "0", "0"]] * 29  # zero-height days
    # Stacked: the prompt segment at the bottom, completion above it, together the whole bar.
    heights = page.evaluate("""(day) => {
        const group = document.querySelector(`#usage-chart rect.usage-bar[data-day="${day}"]`).parentNode;
        const h = (name) => Number(group.querySelector(name).getAttribute("height"));
        return [h(".usage-prompt"), h(".usage-completion"), h(".usage-bar")];
    }""", today)
    assert heights[0] > 0 and heights[1] > heights[0] and math.isclose(heights[0] + heights[1], heights[2], abs_tol=0.02)
    tooltip = bar.locator("xpath=..").locator("title")
    expect(tooltip).to_have_text(
        f"{first_day.strftime('%a')} {today}: 3 turns, {prompt:,} prompt + {completion:,} completion tokens")
    label = chart.get_attribute("aria-label")
    assert label.startswith("Tokens per day, ") and f"{prompt:,} prompt and {completion:,} completion" in label
    assert chart.bounding_box()["width"] <= page.locator("#settings").bounding_box()["width"]

    # The table: a row per model, most tokens first; no price, no cost.
    rows = page.locator("#usage-models tbody tr")
    expect(rows).to_have_count(2)
    long_usage = done[2][1]
    assert rows.nth(0).locator("th, td").all_inner_texts() == [
        "scripted/long", "1", f"{long_usage['prompt_tokens'] + long_usage['completion_tokens']:,}", "—"]
    echo_tokens = sum(u["prompt_tokens"] + u["completion_tokens"] for u in echo)
    assert rows.nth(1).locator("th, td").all_inner_texts() == ["scripted/echo", "2", f"{echo_tokens:,}", dollars(cost)]

    # Colours come from the theme's variables: readable in light and dark.
    completion_fill = "getComputedStyle(document.querySelector('#usage-chart .usage-completion')).fill"
    assert page.evaluate(completion_fill) == LIGHT_ACCENT
    section.scroll_into_view_if_needed()
    page.screenshot(path=artifacts / "usage-light.png")
    page.evaluate("document.documentElement.dataset.theme = 'dark'")
    assert page.evaluate(completion_fill) == DARK_ACCENT
    page.screenshot(path=artifacts / "usage-dark.png")
    page.evaluate("document.documentElement.dataset.theme = 'light'")

    # Asked again on every opening: a turn since shows at once.
    page.locator("#settings").get_by_role("button", name="Cancel").click()
    expect(page.locator("#settings")).to_be_hidden()
    more = chat(usage_server, token, "eight nine", "scripted/echo")
    open_settings(page)
    expect(page.locator("#usage-totals")).to_contain_text("4 turns · ")
    expect(bar).to_have_attribute("data-completion", str(completion + more["completion_tokens"]))
    expect(bar).to_have_attribute("data-prompt", str(prompt + more["prompt_tokens"]))


def test_a_user_without_usage_sees_an_empty_chart_on_a_small_screen(open_usage_app, artifacts):
    user, token = new_user()
    app = open_usage_app(width=375, height=740)
    app.open(token=token, theme="dark")
    open_settings(app.page)
    expect(app.page.locator("#usage .usage-status")).to_have_text("No usage in these days yet.")
    expect(app.page.locator("#usage-totals")).to_have_text("0 turns · 0 prompt tokens · 0 completion tokens")
    bars = app.page.locator("#usage-chart rect.usage-bar")
    expect(bars).to_have_count(30)
    assert set(bars.evaluate_all("bars => bars.map((b) => b.getAttribute('height'))")) == {"0"}
    assert app.page.get_attribute("#usage-chart", "aria-label").endswith(": no usage.")
    expect(app.page.locator("#usage-models")).to_be_hidden()
    dialog, chart = app.page.locator("#settings").bounding_box(), app.page.locator("#usage-chart").bounding_box()
    assert dialog["x"] <= chart["x"] and chart["x"] + chart["width"] <= dialog["x"] + dialog["width"]
    assert app.page.evaluate("document.getElementById('settings').scrollWidth <= document.getElementById('settings').clientWidth")
    app.page.locator("#usage").scroll_into_view_if_needed()
    app.page.screenshot(path=artifacts / "usage-mobile-empty.png")


def test_loading_then_errors_in_one_line(open_usage_app, artifacts):
    app = open_usage_app()
    app.open()  # no token: the server refuses
    page = app.page
    status = page.locator("#usage .usage-status")
    open_settings(page)
    expect(status).to_contain_text(
        "Usage could not be loaded: This server needs an access token; paste one in Settings. (Server: ")
    expect(status).to_have_class(re.compile(r"\bis-error\b"))
    expect(page.locator("#usage .usage-result")).to_be_hidden()
    page.locator("#settings").get_by_role("button", name="Cancel").click()

    # Held: "Loading…" while the answer is on its way; then the server's own error message.
    held = []
    page.route("**/api/usage?days=30", lambda route: held.append(route))
    page.click("#open-settings")
    expect(status).to_have_text("Loading…")
    expect(page.locator("#usage")).to_have_attribute("aria-busy", "true")
    for _ in range(100):  # the route handler runs as Playwright's events are dispatched
        if held:
            break
        page.wait_for_timeout(20)
    assert len(held) == 1
    held[0].fulfill(status=503, content_type="application/json",
                    body=json.dumps({"error": {"type": "unavailable", "message": "The usage store is away."}}))
    expect(status).to_have_text("Usage could not be loaded: The usage store is away.")
    assert "\n" not in status.inner_text()
    assert status.bounding_box()["height"] < 30  # one line
    expect(page.locator("#usage")).not_to_have_attribute("aria-busy", "true")
    page.locator("#usage").scroll_into_view_if_needed()
    page.screenshot(path=artifacts / "usage-error.png")
