"""The concurrency seam: where work runs beside the server, and how results cross back to it.

Under eventlet, a plain threading.Thread or queue.Queue is green after monkey-patching: a model
forward pass inside one would freeze every client. So CPU-bound work runs in original OS threads
(os_thread), and its output crosses back through a Channel, which knows which async mode runs.
Code that only waits (on channels, locks, sleeps) is spawned beside the server: a green thread
under eventlet, an OS thread otherwise. Nothing else in Rill needs to know the async mode.
"""
from __future__ import annotations

import collections
import contextlib
import ctypes
import logging
import math
import os
import queue
import time
from pathlib import Path

import eventlet.patcher
import greenlet
from eventlet.hubs import get_hub

log = logging.getLogger(__name__)
real_threading = eventlet.patcher.original("threading")
real_queue = eventlet.patcher.original("queue")
real_os = eventlet.patcher.original("os")  # the pipe is read after the hub says it is ready
real_subprocess = eventlet.patcher.original("subprocess")  # a child waited on from an OS thread


def green() -> bool:
    return eventlet.patcher.is_monkey_patched("thread")


class _Parked:
    """A green thread waiting until the hub hands it a value: eventlet's Waiter without its
    checks and the hub's switch hooks (two of these wait and wake once a token, and each check
    is Python code)."""

    __slots__ = ("greenlet",)

    def __init__(self):
        self.greenlet = None

    def wait(self):
        self.greenlet = greenlet.getcurrent()
        hub = get_hub()
        if hub.greenlet.dead:  # a hub that stopped is made again
            hub.ensure_greenlet()
        try:
            return hub.greenlet.switch()
        finally:
            self.greenlet = None

    def switch(self, value) -> None:  # in the hub
        if self.greenlet is not None:
            try:
                self.greenlet.switch(value)
            except Exception:  # one that dies of it must not keep the others asleep
                log.exception("a green thread failed")

    def throw(self, error: type[BaseException]) -> None:  # in the hub
        if self.greenlet is not None:
            self.greenlet.throw(error)


class _GreenWaker:
    """Hands items from OS threads to green channels. One pipe, watched by the hub itself: an
    item's wake-up costs one hub turn, which switches straight into the channel's waiting green
    thread (no dispatcher green thread, no re-registering the pipe, no timer in between), and
    whoever that thread notifies (a turn log's readers) is woken in the same turn. Items put by a
    green producer wait for the hub's next turn."""

    def __init__(self):
        self.hub = get_hub()
        self.hub_thread = real_threading.get_ident()
        self.pending = collections.deque()
        self.woken: list | None = None  # while the hub hands items over: waiters (and their timeouts) to wake
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        os.set_blocking(self.write_fd, False)
        self.hub.add(self.hub.READ, self.read_fd, self._readable, lambda *_: None, lambda: None)

    def deliver(self, channel: _GreenChannel, item) -> None:  # called from any thread
        self.pending.append((channel, item))
        if real_threading.get_ident() == self.hub_thread:
            self.hub.schedule_call_global(0, self._drain)
        else:
            _wake(self.write_fd)

    def deliver_all(self, items: list) -> None:  # from an OS thread: one wake-up for them all
        self.pending.extend(items)
        _wake(self.write_fd)

    def _readable(self, _fd: int) -> None:  # in the hub
        try:
            real_os.read(self.read_fd, 65536)
        except BlockingIOError:
            pass
        self._drain()

    def _drain(self) -> None:  # in the hub
        self.woken = []
        try:
            while self.pending:
                channel, item = self.pending.popleft()
                channel.arrive(item)  # runs its consumer until that waits again
                while self.woken:
                    woken, self.woken = self.woken, []
                    _wake_all(woken)
        finally:
            self.woken = None


class _GreenChannel:
    """Timeouts share one timer, moved on only when it fires: a reader that takes a turn's output
    waits here once a token, each time until a little later (its keep-alive), and a timer of its
    own each time would be made, scheduled and cancelled in Python for every token."""

    def __init__(self, waker: _GreenWaker):
        self.waker = waker
        self.items = collections.deque()
        self.waiter = _Parked()
        self.until = math.inf  # when the waiting consumer gives up
        self.timer_at = math.inf

    def put(self, item) -> None:
        self.waker.deliver(self, item)

    def empty(self) -> bool:
        return not self.items

    def arrive(self, item) -> None:  # in the hub: run the consumer now if it waits
        if self.waiter.greenlet is not None:
            self.waiter.switch(item)
        else:
            self.items.append(item)

    def get(self, timeout: float | None = None):
        if self.items:
            return self.items.popleft()
        if timeout is not None:
            self.until = time.monotonic() + timeout
            if self.until < self.timer_at:
                self._arm(self.until)
        try:
            return self.waiter.wait()
        finally:
            self.until = math.inf

    def _arm(self, at: float) -> None:
        self.timer_at = at
        self.waker.hub.schedule_call_global(max(0.0, at - time.monotonic()), self._expire, at)

    def _expire(self, at: float) -> None:  # in the hub
        if at != self.timer_at:  # one armed since for an earlier time
            return
        self.timer_at = math.inf
        if self.until <= time.monotonic():
            self.waiter.throw(queue.Empty)
        elif self.until < math.inf:
            self._arm(self.until)


_waker: _GreenWaker | None = None
_write = ctypes.PyDLL(None).write  # libc's write(2), called without releasing the GIL (PyDLL)
_write.argtypes, _write.restype = (ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t), ctypes.c_ssize_t


def _wake(fd: int) -> None:
    """One byte into the wake-up pipe, keeping the GIL. os.write lets it go: the woken hub took it
    and ran its Python for the token, and the model's thread waited for that before its next step
    (at c=1 on llama.cpp: 0.9 ms between decode calls, 0.4 ms keeping it). Kept, the hub runs while
    the model decodes. A full pipe (EAGAIN, -1) already holds wake-ups enough."""
    _write(fd, b".", 1)


class Channel:
    """A one-way queue from any thread to one consumer, green thread or real thread:
    put(item), get(timeout=None), which raises queue.Empty after `timeout` seconds, and empty(). An OS
    thread that holds its deliveries (held_deliveries) hands its items over when it calls
    deliver_held()."""

    def __init__(self):
        global _waker
        if green():
            if _waker is None:
                _waker = _GreenWaker()
            self.inner = _GreenChannel(_waker)
        else:
            self.inner = real_queue.SimpleQueue()
        self.get, self.empty = self.inner.get, self.inner.empty

    def put(self, item) -> None:
        held = _held.items
        if held is None:
            self.inner.put(item)
        else:
            held.append((self.inner, item))


class _Held(real_threading.local):
    items: list | None = None  # (channel, item) put by this thread since it last delivered them


_held = _Held()


@contextlib.contextmanager
def held_deliveries():
    """While this OS thread runs the block, what it puts into channels waits for its next
    deliver_held() (and the block's end). A model's thread delivers a step's tokens just before
    its next step, which lets go of the interpreter's lock: the server's thread, woken then, runs
    at once, where a wake-up as each token came had it wait for the lock (a sleep and a wake-up
    more a token), and a step's tokens for many streams cost one wake-up, not one each."""
    _held.items = []
    try:
        yield
    finally:
        deliver_held()
        _held.items = None


def deliver_held() -> None:
    """Hand over what this thread held back (held_deliveries); call it before anything long."""
    items = _held.items
    if items:
        _held.items = []
        if _waker is not None:
            _waker.deliver_all(items)
        else:
            for channel, item in items:
                channel.put(item)


class _GreenCondition:
    """threading.Condition's wait and notify_all for green threads, without its locks: between two
    switches nothing else runs, so a check and the wait after it need none. A notify switches into
    every waiting green thread in the hub's next turn, or in this one where a channel's consumer
    notifies. Timeouts share one timer: one per wait would wake the hub again, for nothing, as
    each expired (a turn log's readers wait once a token)."""

    def __init__(self):
        self.waiters: list[tuple[_Parked, float]] = []  # and when each gives up (monotonic)
        self.timer = None
        self.timer_at = math.inf

    def __enter__(self):
        return self

    def __exit__(self, *_):
        return None

    def wait(self, timeout: float | None = None) -> bool:
        entry = (_Parked(), math.inf if timeout is None else time.monotonic() + timeout)
        self.waiters.append(entry)
        if entry[1] < self.timer_at:
            self._arm(entry[1])
        try:
            return entry[0].wait()
        finally:
            if entry in self.waiters:  # killed
                self.waiters.remove(entry)

    def notify_all(self) -> None:
        if self.waiters:
            waiters, self.waiters = self.waiters, []
            if _waker is not None and _waker.woken is not None:  # a channel's consumer, run by the hub
                _waker.woken.extend(waiters)
            else:
                get_hub().schedule_call_global(0, _wake_all, waiters)

    def _arm(self, at: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer, self.timer_at = get_hub().schedule_call_global(max(0.0, at - time.monotonic()), self._expire), at

    def _expire(self) -> None:  # in the hub
        self.timer, self.timer_at, now = None, math.inf, time.monotonic()
        due = [entry for entry in self.waiters if entry[1] <= now]
        self.waiters = [entry for entry in self.waiters if entry[1] > now]
        if (soonest := min((at for _, at in self.waiters), default=math.inf)) < math.inf:
            self._arm(soonest)
        for waiter, _ in due:
            waiter.switch(False)


def _wake_all(waiters: list[tuple[_Parked, float]]) -> None:  # in the hub
    for waiter, _ in waiters:
        waiter.switch(True)


class _GreenLock:
    """threading.Lock for green threads: eventlet's green lock is several Python calls each way,
    and a turn takes its lock once a token. Whoever lets go hands the lock to the first green
    thread still waiting for it."""

    __slots__ = ("held", "waiters")

    def __init__(self):
        self.held, self.waiters = False, collections.deque()

    def acquire(self, blocking: bool = True) -> bool:
        if not self.held:
            self.held = True
            return True
        if not blocking:
            return False
        parked = _Parked()
        self.waiters.append(parked)
        try:
            parked.wait()  # it returns with the lock handed over
        except BaseException:  # killed while waiting
            if parked in self.waiters:
                self.waiters.remove(parked)
            else:  # the lock was on its way to it: on to the next one
                self.release()
            raise
        return True

    def release(self) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if waiter.greenlet is not None:
                get_hub().schedule_call_global(0, waiter.switch, None)
                return
        self.held = False

    def locked(self) -> bool:
        return self.held

    def __enter__(self):  # acquire and release, their usual case inline: a call less each way
        if self.held:
            self.acquire()
        else:
            self.held = True
        return self

    def __exit__(self, *_):
        if self.waiters:
            self.release()
        else:
            self.held = False


def lock():
    """A lock for code that runs beside the server (spawn), held across waits (a save to the
    store): green threads share one, real threads get threading.Lock."""
    return _GreenLock() if green() else real_threading.Lock()


class _Condition(real_threading.Condition):
    """threading.Condition whose notify_all is one check when nobody waits: a turn's log notifies
    twice a token, and its readers mostly take the model's output themselves instead of waiting."""

    def notify_all(self) -> None:
        if self._waiters:
            super().notify_all()


def condition():
    """A condition variable for code that runs beside the server (spawn): green threads share one
    without locks; real threads get threading.Condition."""
    return _GreenCondition() if green() else _Condition()


def spawn(function, *args) -> None:
    """Run `function` beside the server: a green thread under eventlet, else an OS thread. Only
    for code that waits (on channels, locks, sleeps), never for CPU-bound work."""
    if green():
        import eventlet

        eventlet.spawn(function, *args)
    else:
        real_threading.Thread(target=function, args=args, daemon=True).start()


def os_thread(target, name: str, *args) -> None:
    """Start a real OS thread (daemon), whatever the async mode: for CPU-bound or blocking C work.
    The system knows it by its name too (top -H, /proc), and so do the math library's workers it
    starts: what the model costs can be told from what serving costs (bench/serve_cost.py)."""

    def named() -> None:
        try:
            Path(f"/proc/self/task/{real_threading.get_native_id()}/comm").write_text(name[:15])
        except OSError:  # not Linux
            pass
        target(*args)

    real_threading.Thread(target=named, name=name, daemon=True).start()


def off_hub(function, *args):
    """Call CPU-bound `function` and return its result; under eventlet it runs in a pool of OS
    threads meanwhile (a PDF being read would otherwise stall every client), else right here."""
    if green():
        from eventlet import tpool

        return tpool.execute(function, *args)
    return function(*args)
