"""Runs provider streams off the server's event loop and carries their output back to it.

Under eventlet, a plain threading.Thread or queue.Queue is green after monkey-patching: a model
forward pass inside one would freeze every client. So workers are original OS threads, and
their output crosses back through a Channel, the one place that knows which async mode runs.
Every provider gets one OS thread to load in and then run its own scheduler, if it has one (the
local model batches its turns there). Other providers (engine.Streamed) wait on upstream servers,
not on the CPU: under eventlet their streams run as green threads on the server's hub, because after
patching every lock their SDKs create is green, and a green lock contended by two OS threads
hangs the waiter for good ("Cannot switch to a different thread": seen with 8 concurrent
openai and google-genai streams). In threading mode they get a thread per stream.
"""
from __future__ import annotations

import collections
import ctypes
import logging
import os
from dataclasses import dataclass, field

import eventlet.patcher

from .. import metrics
from .base import ChatMessage, Failure, Finish, GenerationOptions, Piece, Provider, ProviderError

log = logging.getLogger(__name__)

real_threading = eventlet.patcher.original("threading")
real_queue = eventlet.patcher.original("queue")
real_os = eventlet.patcher.original("os")  # the pipe is read after trampoline says it is ready



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


@dataclass
class Job:
    provider: Provider
    model: str
    messages: list[ChatMessage]
    options: GenerationOptions
    channel: Channel = field(default_factory=Channel)
    cancel: object = field(default_factory=real_threading.Event)


def run_job(job: Job) -> None:
    """Feed a provider's stream into the job's channel, typed; the last item is a Finish or a Failure."""
    try:
        if job.cancel.is_set():
            job.channel.put(Finish("cancelled", 0, 0))
            return
        for item in job.provider.stream(job.model, job.messages, job.options, job.cancel):
            job.channel.put(Piece(item) if isinstance(item, str) else item)
            if isinstance(item, Finish):
                return
        job.channel.put(Failure(ProviderError("the model ended without finishing its reply", type="model_error")))
    except ProviderError as exc:
        if exc.status >= 500:  # the upstream failed, not the request
            metrics.UPSTREAM_ERRORS.labels(job.provider.name).inc()
        job.channel.put(Failure(exc))
    except Exception as exc:
        log.exception("provider %s failed", job.provider.name)
        metrics.UPSTREAM_ERRORS.labels(job.provider.name).inc()
        job.channel.put(Failure(ProviderError(f"{job.provider.name} model failed: {exc}", type="model_error")))


class Streamed:
    """The rest of the provider contract for providers that only stream (upstreams): each job's
    stream runs on its own (see the module docstring); there is nothing to schedule or close."""

    def run(self) -> None:
        pass

    def refuses_tools(self, model: str, tool_choice: str) -> str | None:
        return None  # the upstream takes tools, or says itself why not

    def start(self, job: Job) -> None:
        spawn(run_job, job)

    def status(self) -> dict | None:
        return None

    def close(self, reason: str) -> None:
        pass


class Engine:
    """Started by the server (or by the first job), not by create_app: a CLI command that builds
    the app must not load models."""

    def __init__(self):
        self._providers: list[Provider] = []
        self._on_load_failed: dict[int, object] = {}
        self._started = False

    def add(self, provider: Provider, on_load_failed=None) -> None:
        """`on_load_failed(provider)`, when given, is called if the provider cannot load; the
        engine then drops it and its thread ends (a model loaded while serving leaves nothing
        behind). Without it a provider that cannot load stays, answering every turn with why."""
        self._providers.append(provider)
        self._on_load_failed[id(provider)] = on_load_failed
        if self._started:
            self._start(provider)

    def start(self) -> None:
        if not self._started:
            self._started = True
            for provider in self._providers:
                self._start(provider)

    def _start(self, provider: Provider) -> None:
        def work() -> None:
            provider.load()
            on_load_failed = self._on_load_failed.pop(id(provider), None)
            if getattr(provider, "state", "ready") == "error" and on_load_failed:
                on_load_failed(provider)
                self._providers.remove(provider)
                provider.close(f"the model could not be loaded: {provider.error}")
            else:
                provider.run()

        real_threading.Thread(target=work, name=f"rill-{provider.name}", daemon=True).start()

    def submit(self, job: Job) -> Job:
        self.start()
        job.provider.start(job)
        return job

    def status(self) -> dict:
        """Providers that schedule their own jobs, by `provider/model`: rows running, turns waiting."""
        status = {}
        for provider in self._providers:
            if (state := provider.status()) is not None:
                status[f"{provider.name}/{provider.models()[0]['id']}"] = state
        return status
