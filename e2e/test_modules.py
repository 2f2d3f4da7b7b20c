"""The pure modules, run in the browser as the page loads them: the SSE parser and Markdown."""
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
def page(app):
    app.open()
    return app.page


def parse(page, pieces):
    """Events from feeding the parser these text pieces in order."""
    return page.evaluate("""async (pieces) => {
        const { SSEParser } = await import("/static/js/api.js");
        const parser = new SSEParser();
        return pieces.flatMap((p) => parser.push(p));
    }""", pieces)


def test_sse_line_endings_fields_and_comments(page):
    stream = "event: start\r\ndata: {\"a\": 1}\r\nid: 0\r\n\r\n: ping\n\nevent: token\rdata: x\rdata:y\r\r" \
             "data\n\nretry: 10\nunknown: field\ndata:  two spaces\n\n"
    expected = [
        {"type": "start", "data": '{"a": 1}', "id": "0"},
        {"type": "token", "data": "x\ny", "id": "0"},  # multi-line data; the id carries over
        {"type": "message", "data": "", "id": "0"},     # a bare `data` line is an empty value
        {"type": "message", "data": " two spaces", "id": "0"},  # only one leading space goes
    ]
    assert parse(page, [stream]) == expected
    # The same events whatever the pieces: split at every character, CR LF split included.
    assert parse(page, list(stream)) == expected


def test_sse_ignores_dataless_events_and_drops_an_unfinished_one(page):
    assert parse(page, ["event: ping\n\n", "id: 7\n\n", "data: done\n\n", "data: cut off\n"]) == [
        {"type": "message", "data": "done", "id": "7"}]
    assert parse(page, ["id: a\u0000b\ndata: x\n\n"]) == [{"type": "message", "data": "x", "id": ""}]


def test_sse_reader_decodes_utf8_split_across_reads(page):
    events = page.evaluate("""async () => {
        const { readEvents } = await import("/static/js/api.js");
        const bytes = new TextEncoder().encode("event: token\\ndata: {\\"token\\": \\"h\\u00e9llo \\u{1F30A}\\"}\\n\\ndata: unfinished");
        const body = new ReadableStream({
            start(controller) {
                for (const byte of bytes) controller.enqueue(new Uint8Array([byte]));  // one byte per read
                controller.close();
            },
        });
        const events = [];
        for await (const event of readEvents(body)) events.push(event);
        return events;
    }""")
    assert events == [{"type": "token", "data": '{"token": "h\u00e9llo \U0001F30A"}', "id": ""}]


DOCUMENTS = [
    "# Title\n\nA paragraph with **bold**, `code` and a [link](https://example.com).\n\n"
    "- one\n- two\n  continued\n\n```python\ndef f(x):\n\n    return x\n```\n\n> quote\nlazy line\n\nThe end.",
    "Setext heading\n---\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n1. first\n2. second\n\n***\n\nLast words\r\nwith CRLF\r\n",
    "Text then fence\n```js\nlet open = true;\nno closing fence",
]


@pytest.mark.parametrize("document", DOCUMENTS)
@pytest.mark.parametrize("piece", [1, 3, 17])
def test_streamed_markdown_matches_the_one_shot_rendering(page, document, piece):
    result = page.evaluate("""async ([text, size]) => {
        const { StreamingMarkdown, renderMarkdown } = await import("/static/js/markdown.js");
        const md = new StreamingMarkdown();
        let html = "", live = "", settledOnce = 0;
        for (let i = 0; i < text.length; i += size) {
            md.append(text.slice(i, i + size));
            const out = md.render();
            html += out.settled;
            live = out.live;
            if (out.settled) settledOnce += 1;
        }
        return { streamed: html + live, whole: renderMarkdown(text), settledOnce, pending: md.tail.length };
    }""", [document, piece])
    assert result["streamed"] == result["whole"]
    assert result["settledOnce"] >= 1  # earlier blocks became final and were not parsed again
    assert result["pending"] < len(document)


def test_sanitizer_keeps_only_safe_links(page):
    html = page.evaluate("""async () => {
        const { renderMarkdown } = await import("/static/js/markdown.js");
        return renderMarkdown([
            "[a](javascript:alert(1)) [b](vbscript:x) [c](data:text/html,x) [d](//evil.example/x)",
            "[e](https://ok.example/) [f](mailto:me@example.com) [g](HTTP://CAPS.example/)",
            "![img](https://tracker.example/pixel.png)",
        ].join("\\n\\n"));
    }""")
    assert "javascript:" not in html and "vbscript:" not in html and "data:" not in html
    assert "//evil.example" not in html
    assert 'href="https://ok.example/"' in html and 'href="mailto:me@example.com"' in html
    assert 'href="HTTP://CAPS.example/"' in html
    assert "<img" not in html and 'href="https://tracker.example/pixel.png"' in html  # a link, not a load
