"""How the benchmarks time a piece of work they can call in process."""
import statistics
import time


def median_ms(work, repeats: int) -> float:
    """The median of `repeats` calls of `work`, in milliseconds."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000
