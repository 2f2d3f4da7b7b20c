"""The concurrency seam in both async modes: channels from OS threads and green threads, an OS
thread's held deliveries, the lock a turn takes, and the condition the turn log's readers wait on."""
import subprocess
import sys
import textwrap

import pytest

from tests.server import ROOT

SCRIPT = textwrap.dedent("""
    import sys
    from rill import entry
    if sys.argv[1] == "eventlet":
        entry.patch()
    import queue, threading, time
    from rill import runtime
    assert runtime.green() == (sys.argv[1] == "eventlet")

    # An OS thread's items arrive in order, however fast they come; a green producer's too.
    channel = runtime.Channel()
    runtime.os_thread(lambda: [channel.put(i) for i in range(5000)], "rill-test")
    assert [channel.get(timeout=10) for _ in range(5000)] == list(range(5000))
    runtime.spawn(lambda: [channel.put(i) for i in range(3)])
    assert [channel.get(timeout=10) for _ in range(3)] == [0, 1, 2]
    started = time.monotonic()
    try:
        channel.get(timeout=0.05)
        raise AssertionError("an empty channel gave an item")
    except queue.Empty:
        assert time.monotonic() - started >= 0.04

    # Every waiter wakes on notify_all; a wait that times out says so and leaves nothing behind.
    changed, woken = runtime.condition(), runtime.Channel()
    def wait():
        with changed:
            woken.put(changed.wait(10))
    for _ in range(3):
        runtime.spawn(wait)
    time.sleep(0.1)
    with changed:
        changed.notify_all()
    assert [woken.get(timeout=10) for _ in range(3)] == [True] * 3
    with changed:
        assert changed.wait(0.02) is False
    # Timeouts end on time, the shorter one too when it began after a longer one.
    started, timed = time.monotonic(), runtime.Channel()
    def wait_for(seconds):
        with changed:
            timed.put((seconds, changed.wait(seconds), time.monotonic() - started))
    runtime.spawn(wait_for, 0.6)
    time.sleep(0.01)
    runtime.spawn(wait_for, 0.05)
    first, second = timed.get(timeout=10), timed.get(timeout=10)
    assert first[:2] == (0.05, False) and second[:2] == (0.6, False) and second[2] >= 0.55  # in that order

    # A channel's consumer, given an OS thread's item, notifies: its waiters wake (in the same hub turn).
    items, seen = runtime.Channel(), runtime.Channel()
    def consume():
        items.get(timeout=10)
        with changed:
            changed.notify_all()
    def watch():
        with changed:
            seen.put(changed.wait(10))
    runtime.spawn(watch)
    runtime.spawn(consume)
    time.sleep(0.1)
    runtime.os_thread(lambda: items.put("x"), "rill-test")
    assert seen.get(timeout=10) is True
    assert not getattr(changed, "waiters", None) and not getattr(changed, "_waiters", None)

    # An OS thread that holds its deliveries (a model's, between two steps) hands them over in order
    # when it says so, and at the end of the block; nothing comes before.
    held, said, ended = runtime.Channel(), runtime.real_threading.Event(), runtime.real_threading.Event()
    def producer():
        with runtime.held_deliveries():
            for i in range(3):
                held.put(i)
            said.wait(10)
            runtime.deliver_held()
            held.put(3)
            ended.wait(10)
    runtime.os_thread(producer, "rill-test")
    for gate in (said, ended):
        try:
            held.get(timeout=0.2)
            raise AssertionError("a held item came before it was handed over")
        except queue.Empty:
            pass
        gate.set()
        if gate is said:
            assert [held.get(timeout=10) for _ in range(3)] == [0, 1, 2]
    assert held.get(timeout=10) == 3
    runtime.spawn(lambda: held.put("green"))  # another thread's puts are not held
    assert held.get(timeout=10) == "green"

    # The lock (a turn's): one holder at a time, held across a wait, handed over in turn; a
    # waiter killed while it waits leaves it to the next one.
    guard, seen = runtime.lock(), runtime.Channel()
    def hold(name):
        with guard:
            seen.put(f"{name} in")
            time.sleep(0.05)
            seen.put(f"{name} out")
    for name in "abc":
        runtime.spawn(hold, name)
        time.sleep(0.01)
    assert [seen.get(timeout=10) for _ in range(6)] == ["a in", "a out", "b in", "b out", "c in", "c out"]
    if runtime.green():
        import eventlet
        with guard:
            doomed = eventlet.spawn(hold, "doomed")
            runtime.spawn(hold, "next")
            time.sleep(0.01)
            doomed.kill()
        assert [seen.get(timeout=10) for _ in range(2)] == ["next in", "next out"]
    with guard:
        pass
    print("done")
""")


@pytest.mark.parametrize("mode", ["eventlet", "threading"])
def test_channels_and_conditions_work_in_both_async_modes(mode):
    result = subprocess.run([sys.executable, "-c", SCRIPT, mode], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "done", result.stderr[-2000:]
