"""Run by tests/test_logs.py: under eventlet, with Rill's logging, lines logged at once from green
threads and from OS threads (as the model's thread and the MCP servers' loop do). Prints how many
OS threads finished; a green handler lock hangs them (eventlet issue 432)."""
import eventlet

eventlet.monkey_patch()

import logging  # noqa: E402
import sys  # noqa: E402

from rill import logs  # noqa: E402
from rill.config import Settings  # noqa: E402
from rill.runtime import os_thread, real_threading  # noqa: E402

LINES, THREADS = 3000, 3

logs.configure(Settings())
log = logging.getLogger("rill.test")
finished = real_threading.Semaphore(0)


def native(n: int) -> None:
    for i in range(LINES):
        log.info("native %d %d", n, i)
    finished.release()


def green() -> None:
    for i in range(LINES):
        log.info("green %d", i)
        eventlet.sleep(0)


for n in range(THREADS):
    os_thread(native, f"native-{n}", n)
for thread in [eventlet.spawn(green) for _ in range(THREADS)]:
    thread.wait()
print(sum(finished.acquire(timeout=10) for _ in range(THREADS)), file=sys.__stdout__, flush=True)
