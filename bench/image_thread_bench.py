"""Opening a thread with 50 images in the browser: time from navigation to its first paint and
until every picture is shown, and what was fetched for them (the previews, at most RILL_IMAGE_MAX_SIDE px) against what
the originals would have cost the same page in the same run.

The real server (no local model: the scripted `sees` model answers) keeps 50 camera-sized JPEGs
(3000 x 2000, ~1 MB each), sent ten to a question; headless Chromium opens the thread cold (a new
context each run, nothing cached).

Usage: python bench/image_thread_bench.py [--runs 3] [--images 50]
"""
from __future__ import annotations

import argparse
import io
import json
import random
import statistics
import sys
import tempfile
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PIL import Image  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

from e2e.browser import CHROMIUM, launch  # noqa: E402
from tests.server import start_server, stop_server  # noqa: E402

PER_QUESTION = 10  # the most files a question takes

# From navigation (the app opens the thread changed last): the first message painted, then
# every picture decoded.
WATCH = """(() => {
  window.__opened = {};
  const pictures = () => [...document.querySelectorAll(".from-user .file img")];
  const look = () => {
    if (!window.__opened.painted && document.querySelector(".from-user")) window.__opened.painted = performance.now();
    const all = pictures();
    if (all.length && all.every((i) => i.complete && i.naturalWidth) && all.length === window.__expected) {
      window.__opened.shown = performance.now();
      return;
    }
    requestAnimationFrame(look);
  };
  requestAnimationFrame(look);
})();"""

PREVIEW_BYTES = """() => performance.getEntriesByType("resource").filter((e) => e.name.includes("/preview"))
  .reduce((sum, e) => sum + e.encodedBodySize, 0)"""

# The same page fetching the originals, all at once, for comparison.
ORIGINALS = """async (ids) => {
  const started = performance.now();
  const sizes = await Promise.all(ids.map((id) => fetch(`/api/files/${id}`).then((r) => r.blob()).then((b) => b.size)));
  return {ms: performance.now() - started, bytes: sizes.reduce((a, b) => a + b, 0)};
}"""


def camera_photo(seed: int) -> bytes:
    """A 3000 x 2000 JPEG with noise (so it compresses like a photo, ~1 MB)."""
    rng = random.Random(seed)
    small = Image.frombytes("RGB", (300, 200), bytes(rng.randrange(256) for _ in range(300 * 200 * 3)))
    out = io.BytesIO()
    small.resize((3000, 2000), Image.Resampling.BICUBIC).save(out, "JPEG", quality=90)
    return out.getvalue()


def make_thread(url: str, count: int) -> list[str]:
    ids = []
    for n in range(count):
        r = requests.post(f"{url}/api/files", files={"file": (f"photo{n}.jpg", camera_photo(n))}, timeout=60)
        r.raise_for_status()
        ids.append(r.json()["id"])
    thread = None
    for start in range(0, count, PER_QUESTION):
        body = {"message": f"Photos {start + 1} to {start + PER_QUESTION}", "model": "scripted/sees",
                "files": ids[start:start + PER_QUESTION], **({"thread_id": thread} if thread else {})}
        r = requests.post(f"{url}/api/chat", json=body, timeout=120)
        r.raise_for_status()
        thread = r.json()["thread_id"]
    return ids


def open_once(browser, url: str, ids: list[str]) -> dict:
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    try:
        page = context.new_page()
        page.add_init_script(f"window.__expected = {len(ids)};")
        page.add_init_script(WATCH)
        page.goto(url + "/")
        page.wait_for_function("() => window.__opened && window.__opened.shown", timeout=120_000)
        opened = page.evaluate("window.__opened")
        preview_bytes = page.evaluate(PREVIEW_BYTES)
        originals = page.evaluate(ORIGINALS, ids)
    finally:
        context.close()
    return {"painted_ms": opened["painted"], "shown_ms": opened["shown"], "preview_mb": preview_bytes / 1e6,
            "originals_ms": originals["ms"], "originals_mb": originals["bytes"] / 1e6}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--images", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as logs:
        server = start_server("eventlet", Path(logs), RILL_MODEL_PATH="/nonexistent/model.gguf",
                              RILL_MODEL="scripted/sees")
        try:
            ids = make_thread(server.url, args.images)
            with sync_playwright() as playwright:
                browser = launch(playwright)
                runs = [open_once(browser, server.url, ids) for _ in range(args.runs)]
                browser.close()
        finally:
            stop_server(server)
    median = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    print(f"Opening a thread of {args.images} camera JPEGs (3000x2000), median of {args.runs} cold runs "
          f"(Chromium {CHROMIUM})")
    print(json.dumps({k: round(v, 1) for k, v in median.items()}))
    after_paint = median["shown_ms"] - median["painted_ms"]
    print(f"first paint {median['painted_ms']:.0f} ms from navigation; every picture shown {after_paint:.0f} ms "
          f"after it ({median['preview_mb']:.1f} MB of previews). Only fetching the originals, undecoded, takes "
          f"{median['originals_ms']:.0f} ms ({median['originals_ms'] / after_paint:.2f}x) for {median['originals_mb']:.1f} MB "
          f"({median['originals_mb'] / max(median['preview_mb'], 1e-9):.1f}x the bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
