"""The pure modules, run in the browser as the page loads them: the SSE parser, Markdown, the
usage figures, tool call arguments and the export format."""
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
def page(app):
    app.open()
    return app.page


def parse(page, pieces):
    """Events from feeding the parser these text pieces in order."""
    return page.evaluate("""async (pieces) => {
        const { SSEParser } = await import("/static/js/sse.js");
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
        const { readEvents } = await import("/static/js/sse.js");
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


def usage(page, body, *calls):
    """Runs usage.js's functions on a GET /api/usage body: {name: result}."""
    return page.evaluate("""async ([body, calls]) => {
        const usage = await import("/static/js/usage.js");
        return Object.fromEntries(calls.map((name) => [name, usage[name](body)]));
    }""", [body, list(calls)])


def usage_row(day, model, turns, prompt, completion, cost=None):
    return {"day": day, "user": "alice", "model": model, "turns": turns, "prompt_tokens": prompt,
            "completion_tokens": completion, "duration_ms": 12.5, "cost": cost}


def test_usage_day_slots_cover_every_day_and_sum_models(page):
    body = {"user": "alice", "days": 30, "since": "2026-10-24", "until": "2026-11-22", "rows": [
        usage_row("2026-10-20", "a/m", 9, 9, 9),            # before `since`: left out
        usage_row("2026-10-24", "a/m", 1, 10, 20, 0.5),
        usage_row("2026-11-01", "a/m", 2, 5, 6),
        usage_row("2026-11-22", "a/m", 3, 100, 200, 0.0012),
        usage_row("2026-11-22", "b/x", 1, 1, 2),           # a second model the same day: summed
    ], "totals": {}}
    result = usage(page, body, "daySlots", "modelTotals")
    slots = result["daySlots"]
    assert len(slots) == 30
    assert slots[0]["day"] == "2026-10-24" and slots[-1]["day"] == "2026-11-22"
    assert "2026-10-31" in [s["day"] for s in slots] and "2026-11-01" in [s["day"] for s in slots]
    assert len({s["day"] for s in slots}) == 30  # consecutive days, none twice (a DST change is no matter: UTC)
    assert slots[0] == {"day": "2026-10-24", "turns": 1, "prompt": 10, "completion": 20, "cost": 0.5}
    assert slots[-1] == {"day": "2026-11-22", "turns": 4, "prompt": 101, "completion": 202, "cost": 0.0012}
    empty = [s for s in slots if s["day"] not in ("2026-10-24", "2026-11-01", "2026-11-22")]
    assert len(empty) == 27 and all(s == {"day": s["day"], "turns": 0, "prompt": 0, "completion": 0, "cost": None}
                                    for s in empty)
    assert result["modelTotals"] == [
        {"model": "a/m", "turns": 6, "prompt": 115, "completion": 226, "tokens": 341, "cost": 0.5012},
        {"model": "b/x", "turns": 1, "prompt": 1, "completion": 2, "tokens": 3, "cost": None},
    ]


def test_usage_day_slots_across_a_leap_day_and_bad_bodies(page):
    body = {"since": "2028-02-01", "until": "2028-03-01", "rows": [usage_row("2028-02-29", "a/m", 1, 2, 3)]}
    slots = usage(page, body, "daySlots")["daySlots"]
    assert len(slots) == 30 and slots[28] == {"day": "2028-02-29", "turns": 1, "prompt": 2, "completion": 3, "cost": None}
    for bad in [{}, {"since": "2026-11-22", "until": "2026-10-24", "rows": []},
                {"since": "2026-02-30", "until": "2026-03-02", "rows": []},
                {"since": "2020-01-01", "until": "2026-01-01", "rows": []},
                {"since": "2026-10-24", "until": "2026-11-22"}]:
        error = page.evaluate("""async (body) => {
            const { daySlots } = await import("/static/js/usage.js");
            try { daySlots(body); return null; } catch (err) { return err.message; }
        }""", bad)
        assert error == "The server's usage answer is not in the expected form.", bad


def test_usage_words_and_numbers(page):
    result = page.evaluate("""async () => {
        const u = await import("/static/js/usage.js");
        return {
            costs: [0.0012, 0.000015, 0.016, 0.5, 12.3456, 0].map(u.formatCost),
            totals: u.totalsText({turns: 1234, prompt_tokens: 1, completion_tokens: 200, cost: 0.0012}),
            unpriced: u.totalsText({turns: 0, prompt_tokens: 0, completion_tokens: 0, cost: null}),
            title: u.slotTitle({day: "2026-11-22", turns: 3, prompt: 100, completion: 2000}),
            idle: u.slotTitle({day: "2026-11-21", turns: 0, prompt: 0, completion: 0}),
            axis: [[0], [1], [3], [10], [11], [999], [150, 60]].map(
                (totals) => u.axisMax(totals.map((t) => ({prompt: t, completion: 0})))),
        };
    }""")
    assert result["costs"] == ["$0.0012", "$0.000015", "$0.016", "$0.50", "$12.35", "$0.00"]
    assert result["totals"] == "1,234 turns · 1 prompt token · 200 completion tokens · $0.0012"
    assert result["unpriced"] == "0 turns · 0 prompt tokens · 0 completion tokens"
    assert result["title"] == "Sun 2026-11-22: 3 turns, 100 prompt + 2,000 completion tokens"
    assert result["idle"] == "Sat 2026-11-21: no usage"
    assert result["axis"] == [1, 1, 5, 10, 20, 1000, 200]


def test_tool_call_arguments_are_pretty_only_once_complete_and_valid(page):
    result = page.evaluate("""async () => {
        const { formatArguments } = await import("/static/js/view/message.js");
        return [
            formatArguments('{"city": "Par', false),         // streaming: the raw text so far
            formatArguments('{"city":"Paris","n":0}', false), // whole, but the call has not ended
            formatArguments('{"city":"Paris","n":0}', true),
            formatArguments('{"city": "Par', true),          // ended but not JSON: shown as it came
            formatArguments("", true),
        ];
    }""")
    assert result == ['{"city": "Par', '{"city":"Paris","n":0}', '{\n  "city": "Paris",\n  "n": 0\n}',
                      '{"city": "Par', ""]


def test_a_servers_message_parts_become_what_the_view_draws(page):
    views = page.evaluate("""async () => {
        const { viewMessage } = await import("/static/js/threads.js");
        return [
            viewMessage({ id: "q", parent_id: null, role: "user", status: "complete",
                          parts: [{ type: "text", text: "weather?" }] }),
            viewMessage({ id: "r", parent_id: "q", role: "assistant", status: "interrupted", model: "m", turn_id: "t",
                          usage: { completion_tokens: 7 }, timings: { ttft_ms: 12, duration_ms: 90, tokens_per_second: 80 },
                          parts: [{ type: "reasoning", text: "I should " }, { type: "reasoning", text: "call it." },
                                  { type: "tool_call", id: "c0", name: "get_weather", arguments: '{"city": "Paris"}' },
                                  { type: "text", text: "Sunny." }] }),
        ].map(({ id, parentId, content, reasoning, toolCalls, status, stats }) => ({ id, parentId, content, reasoning, toolCalls, status, stats }));
    }""")
    assert views == [
        {"id": "q", "parentId": None, "content": "weather?", "reasoning": "", "toolCalls": [], "status": "complete",
         "stats": None},
        {"id": "r", "parentId": "q", "content": "Sunny.", "reasoning": "I should call it.", "status": "stopped",
         "toolCalls": [{"id": "c0", "name": "get_weather", "arguments": '{"city": "Paris"}', "done": True}],
         "stats": {"tokens": 7, "ttftMs": 12, "tokensPerSecond": 80, "durationMs": 90}},
    ]


def test_a_tool_rill_ran_shows_its_result_on_the_call_card(page):
    """A saved reply with a call, its result and the answer after it: the card carries the result
    (open when short, folded when long; an error in the error colour)."""
    cards = page.evaluate("""async () => {
        const { viewMessage } = await import("/static/js/threads.js");
        const { messageItem } = await import("/static/js/view/message.js");
        const message = viewMessage({ id: "r", parent_id: "q", role: "assistant", status: "complete",
            parts: [{ type: "tool_call", id: "c0", name: "t_add", arguments: '{"a": 2, "b": 3}' },
                    { type: "tool_result", tool_call_id: "c0", content: "5" },
                    { type: "tool_call", id: "c1", name: "t_long", arguments: "{}" },
                    { type: "tool_result", tool_call_id: "c1", content: "x".repeat(500) },
                    { type: "text", text: "The result is 5." }] });
        const item = messageItem(message);
        return [...item.querySelectorAll(".tool-call")].map((card) => {
            const result = card.querySelector(".tool-call-result");
            return { name: card.querySelector(".tool-call-name").textContent, hidden: result.hidden, open: result.open,
                     label: result.querySelector("summary").textContent, length: result.querySelector("code").textContent.length };
        });
    }""")
    assert cards == [{"name": "t_add", "hidden": False, "open": True, "label": "Result", "length": 1},
                     {"name": "t_long", "hidden": False, "open": False, "label": "Result", "length": 500}]
