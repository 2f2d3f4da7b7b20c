"""Browser render cost per token: a 400-token and a 4,000-token Markdown reply, streamed.

The real server streams the scripted `long` model (Markdown: headings, paragraphs, lists, code,
quotes) to the UI in headless Chromium. The UI measures each frame's render ("rill:render"
User Timing entries: Markdown, sanitizing, DOM and the scroll-follow layout); a
PerformanceObserver collects long tasks (> 50 ms on the main thread). The cost per token must
not grow with the length of the reply: the ratio of the two is the figure to watch.

Usage: python bench/ui_bench.py [--runs 3] [--sizes 400 4000] [--transport sse|socketio]
Exit status 1 when the per-token cost at the largest size is over twice that at the smallest.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from playwright.sync_api import sync_playwright  # noqa: E402

from e2e.browser import CHROMIUM, launch  # noqa: E402
from tests.server import start_server, stop_server  # noqa: E402

OBSERVE_LONG_TASKS = """
window.__longTasks = [];
new PerformanceObserver((list) => window.__longTasks.push(...list.getEntries().map((e) => e.duration)))
    .observe({type: "longtask", buffered: true});
"""

WARM_UP = 100

COLLECT = """() => {
    const frames = performance.getEntriesByName("rill:render").map((e) => e.duration);
    return {frames, longTasks: window.__longTasks};
}"""


def run_once(browser, url: str, tokens: int, transport: str) -> dict:
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    try:
        page = context.new_page()
        page.add_init_script(OBSERVE_LONG_TASKS)
        settings = {"model": "scripted/long", "transport": transport, "maxTokens": 4096}
        page.add_init_script(f"localStorage.setItem('rill.settings', {json.dumps(json.dumps(settings))})")
        page.goto(url + "/")
        page.wait_for_selector("html[data-ready]")
        for ask in (WARM_UP, tokens):  # a short reply first: the code is loaded and compiled
            page.evaluate("performance.clearMeasures(); window.__longTasks = []")
            page.fill("#prompt", str(ask))
            page.press("#prompt", "Enter")
            page.wait_for_selector("#stop", state="hidden", timeout=180_000)
        stats = page.locator(".from-assistant .stats").last.inner_text()
        assert stats.startswith(f"{tokens} tokens"), stats
        data = page.evaluate(COLLECT)
    finally:
        context.close()
    frames = data["frames"]
    tenth = max(1, len(frames) // 10)
    return {
        "tokens": tokens,
        "frames": len(frames),
        "render_ms": sum(frames),
        "per_token_us": sum(frames) / tokens * 1000,
        "frame_mean_ms": statistics.fmean(frames),
        "frame_max_ms": max(frames),
        "first_tenth_ms": statistics.fmean(frames[:tenth]),   # the reply's first frames...
        "last_tenth_ms": statistics.fmean(frames[-tenth:]),   # ...and its last: the same work?
        "long_tasks": len(data["longTasks"]),
        "longest_task_ms": max(data["longTasks"], default=0.0),
    }


def median_run(runs: list[dict]) -> dict:
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[400, 4000])
    parser.add_argument("--transport", choices=["sse", "socketio"], default="sse")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as logs:
        server = start_server("eventlet", Path(logs))
        try:
            with sync_playwright() as playwright:
                browser = launch(playwright)
                results = [median_run([run_once(browser, server.url, n, args.transport) for _ in range(args.runs)])
                           for n in args.sizes]
                browser.close()
        finally:
            stop_server(server)

    print(f"UI render cost, {args.transport}, median of {args.runs} runs (Chromium {CHROMIUM})")
    print(f"{'tokens':>7} {'frames':>7} {'render ms':>10} {'µs/token':>9} {'ms/frame':>9} {'max frame':>10} "
          f"{'first 10%':>10} {'last 10%':>9} {'long tasks':>11} {'longest':>8}")
    for r in results:
        print(f"{r['tokens']:>7.0f} {r['frames']:>7.0f} {r['render_ms']:>10.1f} {r['per_token_us']:>9.1f} "
              f"{r['frame_mean_ms']:>9.2f} {r['frame_max_ms']:>10.2f} {r['first_tenth_ms']:>10.2f} "
              f"{r['last_tenth_ms']:>9.2f} {r['long_tasks']:>11.0f} {r['longest_task_ms']:>8.1f}")
    ratio = results[-1]["per_token_us"] / results[0]["per_token_us"]
    verdict = "flat" if ratio <= 2 else "GROWS with the reply"
    print(f"per-token cost ratio {results[-1]['tokens']:.0f} / {results[0]['tokens']:.0f} tokens: {ratio:.2f} ({verdict})")
    return 0 if ratio <= 2 else 1


if __name__ == "__main__":
    sys.exit(main())
