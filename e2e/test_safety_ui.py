"""Model output is untrusted: hostile Markdown and HTML must stay inert, streamed or reloaded."""
import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# Anything in a reply that could run, load or navigate; checked on every mutation.
FIND_DANGER = """() => {
    const found = [];
    for (const el of document.querySelectorAll("#messages .body *")) {  // what the model wrote
        for (const attr of el.attributes) {
            if (/^on/i.test(attr.name)) found.push(`${el.tagName} ${attr.name}`);
            if (/^(href|src|action|formaction|xlink:href)$/i.test(attr.name) && !/^(https?:|mailto:)/i.test(attr.value.trim())) {
                found.push(`${el.tagName} ${attr.name}=${attr.value}`);
            }
        }
        if (/^(SCRIPT|IFRAME|IMG|SVG|STYLE|FORM|OBJECT|EMBED|MATH)$/i.test(el.tagName)) found.push(el.tagName);
        if (el.hasAttribute("style")) found.push(`${el.tagName} style`);
    }
    return found;
}"""

WATCH_DANGER = f"""() => {{
    window.__danger = [];
    const find = {FIND_DANGER};
    new MutationObserver(() => window.__danger.push(...find()))
        .observe(document.getElementById("messages"), {{subtree: true, childList: true, attributes: true}});
}}"""


def assert_inert(app):
    page = app.page
    assert page.evaluate("window.__xss") is None
    assert page.evaluate(FIND_DANGER) == []
    reply = app.last_reply()
    expect(reply.locator(".body")).to_contain_text("<script>window.__xss = 'script'; alert('script')</script>")
    expect(reply.locator(".body")).to_contain_text('<img src=x onerror="window.__xss = \'img\'; alert(\'img\')">')
    expect(reply.locator("code.hljs")).to_have_text("<script>alert('in a code block')</script>")
    for name in ("click me", "mixed case", "entity", "data"):
        expect(reply.get_by_text(name, exact=True)).not_to_have_attribute("href", r".*")
    safe = reply.get_by_role("link", name="link")
    expect(safe).to_have_attribute("href", "https://example.com/ok")
    expect(safe).to_have_attribute("rel", "noopener noreferrer nofollow")
    expect(safe).to_have_attribute("target", "_blank")


def test_hostile_reply_is_shown_as_text_while_streaming_and_after_reload(app):
    app.open(model="scripted/xss")
    app.page.evaluate(WATCH_DANGER)
    app.send("attack me")
    app.wait_reply_done()
    assert app.page.evaluate("window.__danger") == []  # not even for one frame while streaming
    assert_inert(app)
    app.last_reply().get_by_text("click me", exact=True).click()  # no href: goes nowhere
    app.page.wait_for_timeout(200)
    assert app.page.evaluate("window.__xss") is None

    app.reload()  # stored replies render through the one-shot path
    assert_inert(app)
