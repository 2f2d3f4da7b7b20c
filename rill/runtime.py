"""The concurrency seam: where work runs beside the server, and how results cross back to it.

Under eventlet, a plain threading.Thread or queue.Queue is green after monkey-patching: a model
forward pass inside one would freeze every client. So CPU-bound work runs in original OS threads
(os_thread), and its output crosses back through a Channel, which knows which async mode runs.
Code that only waits (on channels, locks, sleeps) is spawned beside the server: a green thread
under eventlet, an OS thread otherwise. Nothing else in Rill needs to know the async mode.
"""
from __future__ import annotations

import collections
import ctypes
import os

import eventlet.patcher

real_threading = eventlet.patcher.original("threading")
real_queue = eventlet.patcher.original("queue")
real_os = eventlet.patcher.original("os")  # the pipe is read after trampoline says it is ready
real_subprocess = eventlet.patcher.original("subprocess")  # a child waited on from an OS thread


def green() -> bool:
    return eventlet.patcher.is_monkey_patched("thread")


class _GreenWaker:
    """Hands items from OS threads to green queues: one pipe wakes one dispatcher greenlet.
    Items put on the hub's own thread (by a green producer) go straight in."""

    def __init__(self):
        import eventlet

        self.hub_thread = real_threading.get_ident()
        self.pending = collections.deque()
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        os.set_blocking(self.write_fd, False)
        eventlet.spawn(self._dispatch)

    def deliver(self, green_queue, item) -> None:  # called from any thread
        if real_threading.get_ident() == self.hub_thread:
            green_queue.put(item)
            return
        self.pending.append((green_queue, item))
        _wake(self.write_fd)

    def _dispatch(self) -> None:
        from eventlet.hubs import trampoline

        while True:
            trampoline(self.read_fd, read=True)
            try:
                real_os.read(self.read_fd, 65536)
            except BlockingIOError:
                pass
            while self.pending:
                green_queue, item = self.pending.popleft()
                green_queue.put(item)


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
    """A one-way queue from an OS thread to one consumer, green thread or real thread."""

    def __init__(self):
        global _waker
        if green():
            import eventlet.queue

            if _waker is None:
                _waker = _GreenWaker()
            self._queue = eventlet.queue.LightQueue()
            self.put = lambda item: _waker.deliver(self._queue, item)
        else:
            self._queue = real_queue.SimpleQueue()
            self.put = self._queue.put

    def get(self, timeout: float | None = None):
        """The next item; raises queue.Empty after `timeout` seconds without one."""
        return self._queue.get(timeout=timeout)


def spawn(function, *args) -> None:
    """Run `function` beside the server: a green thread under eventlet, else an OS thread. Only
    for code that waits (on channels, locks, sleeps), never for CPU-bound work."""
    if green():
        import eventlet

        eventlet.spawn(function, *args)
    else:
        real_threading.Thread(target=function, args=args, daemon=True).start()


def os_thread(target, name: str, *args) -> None:
    """Start a real OS thread (daemon), whatever the async mode: for CPU-bound or blocking C work."""
    real_threading.Thread(target=target, args=args, name=name, daemon=True).start()


def off_hub(function, *args):
    """Call CPU-bound `function` and return its result; under eventlet it runs in a pool of OS
    threads meanwhile (a PDF being read would otherwise stall every client), else right here."""
    if green():
        from eventlet import tpool

        return tpool.execute(function, *args)
    return function(*args)
