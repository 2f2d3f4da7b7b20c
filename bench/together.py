"""Start several clients at the same moment and time them as one."""
from __future__ import annotations

import threading
import time
from typing import Callable


def all_at_once(work: Callable[[int], None], count: int) -> float:
    """Seconds from the moment `count` threads (each running work(n)) are released together until
    the last one ends."""
    barrier = threading.Barrier(count + 1)

    def run(n: int) -> None:
        barrier.wait()
        work(n)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - started
