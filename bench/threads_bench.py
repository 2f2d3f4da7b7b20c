"""Threads at scale, SQLite and PostgreSQL side by side: opening a 10,000-message thread (its
newest page, as the UI asks for it, and the whole tree), a search over 100,000 messages, and a
sync of 1,000 changes, each the median of --rounds requests through the routes (an in-process
app: the store's and the route's cost, not the network's); and the UI's first paint of that
thread in Chromium (a real server, a fresh browser profile each round: nothing cached), beside
the first paint of a 2-message thread in the same run.

Usage: python bench/threads_bench.py [--messages 100000] [--rounds 20] [--paints 5]
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rill import create_app  # noqa: E402
from rill.config import Settings  # noqa: E402
from deploy.cluster import start_postgres  # noqa: E402
from e2e.browser import launch  # noqa: E402
from bench.timing import median_ms  # noqa: E402
from tests.server import free_port, start_server, stop_server  # noqa: E402

WORDS = ("river delta estuary bank current meander source mouth flood basin tributary valley canyon lake "
         "rain snow glacier spring stream brook creek ford bridge mill harbour").split()


def sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 30)))


def chain(rng: random.Random, count: int) -> list[dict]:
    ids = [uuid.uuid4().hex for _ in range(count)]
    return [{"id": ids[n], "parent_id": ids[n - 1] if n else None, "role": "user" if n % 2 == 0 else "assistant",
             "parts": [{"type": "text", "text": sentence(rng)}]} for n in range(count)]


def answered(response) -> None:
    assert response.status_code == 200, response.get_data(as_text=True)[:300]


def first_paint_ms(browser, url: str, count: int, rounds: int) -> float:
    """From navigation to the open thread's newest messages drawn (`count` of them)."""
    times = []
    for _ in range(rounds):
        context = browser.new_context()
        page = context.new_page()
        page.goto(url)
        page.wait_for_function(f"() => document.querySelectorAll('#messages .message').length === {count}",
                               timeout=60_000)
        times.append(page.evaluate("performance.now()"))
        context.close()
    return statistics.median(times)


def first_paints(database_url: str, store, rounds: int) -> dict:
    """The 10,000-message thread is the newest, so the page opens it; then a small one is."""
    from playwright.sync_api import sync_playwright

    server = start_server("eventlet", Path(tempfile.mkdtemp(prefix="rill-paint-")), RILL_DATABASE_URL=database_url)
    try:
        with sync_playwright() as playwright:
            browser = launch(playwright)
            big = first_paint_ms(browser, server.url, 50, rounds)
            store.import_thread("anonymous", uuid.uuid4().hex, "two", chain(random.Random(1), 2), None)
            small = first_paint_ms(browser, server.url, 2, rounds)
            browser.close()
    finally:
        stop_server(server)
    return {"first paint: 10,000 messages": big, "first paint: 2 messages": small}


def measure(name: str, database_url: str, messages: int, rounds: int, paints: int) -> dict:
    data = Path(tempfile.mkdtemp(prefix="rill-threads-bench-"))
    app = create_app(Settings(async_mode="threading", data_dir=str(data), database_url=database_url,
                              model_path=str(data / "no-model.gguf")))
    store, client, rng = app.extensions["rill"].threads, app.test_client(), random.Random(7)
    started = time.perf_counter()
    for _ in range(max(0, messages - 10_000) // 1000):
        store.import_thread("anonymous", uuid.uuid4().hex, "a thousand", chain(rng, 1000), None)
    big = uuid.uuid4().hex
    store.import_thread("anonymous", big, "ten thousand", chain(rng, 10_000), None)  # the newest
    filled = time.perf_counter() - started
    figures = {
        "open: newest page (50)": median_ms(lambda: answered(client.get(f"/api/threads/{big}/path?limit=50")), rounds),
        "open: whole tree (10,000)": median_ms(lambda: answered(client.get(f"/api/threads/{big}")),
                                               max(3, rounds // 4)),
        f"search ({messages:,} messages)": median_ms(lambda: answered(client.get(f"/api/search?q={rng.choice(WORDS)} "
                                                                                 f"{rng.choice(WORDS)}")), rounds),
    }
    since = store.revision("anonymous")
    threads = [t["id"] for t in store.list("anonymous") if t["id"] != big]  # the big one stays as it is
    for n in range(1000 if threads else 0):
        store.add_message("anonymous", threads[n % len(threads)], None, "user", [{"type": "text", "text": "new"}])
    figures["sync: 1,000 changes"] = median_ms(lambda: answered(client.get(f"/api/threads?since={since}")), rounds)
    store.update_thread("anonymous", big, title="ten thousand")  # the newest again
    if paints:
        figures.update(first_paints(database_url, store, paints))
    store.close()
    print(f"{name}: filled {messages:,} messages in {filled:.1f} s", flush=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--paints", type=int, default=5, help="first paints per thread (0: none)")
    args = parser.parse_args()
    results = {"SQLite": measure("SQLite", f"sqlite:///{tempfile.mkdtemp()}/threads.db", args.messages, args.rounds,
                                 args.paints)}
    where = Path(tempfile.mkdtemp(prefix="rill-pg-bench-"))
    where.chmod(0o755)  # as root, PostgreSQL runs as its own user and makes its data inside
    postgres, url = start_postgres(free_port(), where / "data")
    try:
        results["PostgreSQL"] = measure("PostgreSQL", url, args.messages, args.rounds, args.paints)
    finally:
        postgres.terminate()
        postgres.wait(20)
    print(f"\n{'p50, ms':30}" + "".join(f"{name:>14}" for name in results))
    for key in results["SQLite"]:
        print(f"{key:30}" + "".join(f"{results[name][key]:14.1f}" for name in results))


if __name__ == "__main__":
    main()
