"""Runs provider streams off the server's event loop and carries their output back to it.

Under eventlet, a plain threading.Thread or queue.Queue is green after monkey-patching: a model
forward pass inside one would freeze every client. So workers are original OS threads, and
their output crosses back through a Channel, the one place that knows which async mode runs.
A provider with a serve() method (the local model) gets one worker thread and a FIFO queue and
schedules its turns itself (batching them). Other providers wait on upstream servers, not on the
CPU: under eventlet their streams run as green threads on the server's hub, because after
patching every lock their SDKs create is green, and a green lock contended by two OS threads
hangs the waiter for good ("Cannot switch to a different thread": seen with 8 concurrent
openai and google-genai streams). In threading mode they get a thread per stream.
"""
from __future__ import annotations

import collections
import logging
import os
from dataclasses import dataclass, field

import eventlet.patcher

from .base import ChatMessage, Finish, GenerationOptions, Provider, ProviderError

log = logging.getLogger(__name__)

real_threading = eventlet.patcher.original("threading")
real_queue = eventlet.patcher.original("queue")
real_os = eventlet.patcher.original("os")  # green os.write refuses two greenlets on one fd

Empty = real_queue.Empty  # eventlet.queue raises this same class


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
        try:
            real_os.write(self.write_fd, b".")
        except BlockingIOError:
            pass  # the pipe is full of wake-ups already

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
        """The next item; raises Empty after `timeout` seconds without one."""
        return self._queue.get(timeout=timeout)


def spawn(function, *args) -> None:
    """Run `function` beside the server: a green thread under eventlet, else an OS thread. Only
    for code that waits (on channels, locks, sleeps), never for CPU-bound work."""
    if green():
        import eventlet

        eventlet.spawn(function, *args)
    else:
        real_threading.Thread(target=function, args=args, daemon=True).start()


END = object()  # the last item a job puts on its channel


@dataclass
class Job:
    provider: Provider
    model: str
    messages: list[ChatMessage]
    options: GenerationOptions
    channel: Channel = field(default_factory=Channel)
    cancel: object = field(default_factory=real_threading.Event)


def run_job(job: Job) -> None:
    """Feed a provider's output into the job's channel; always ends with END."""
    try:
        if job.cancel.is_set():
            job.channel.put(Finish("cancelled", 0, 0))
        else:
            for item in job.provider.stream(job.model, job.messages, job.options, job.cancel):
                job.channel.put(item)
    except ProviderError as exc:
        job.channel.put(exc)
    except Exception as exc:
        log.exception("provider %s failed", job.provider.name)
        job.channel.put(ProviderError(f"{job.provider.name} model failed: {exc}", type="model_error"))
    finally:
        job.channel.put(END)


class Engine:
    """Started by the server (or by the first job), not by create_app: a CLI command that builds
    the app must not load models."""

    def __init__(self):
        self._queues: dict[int, object] = {}  # by id(provider), for providers that serve()
        self._providers: list[Provider] = []
        self._on_load_failed: dict[int, object] = {}
        self._started = False

    def add(self, provider: Provider, on_load_failed=None) -> None:
        """`on_load_failed(provider)`, when given, is called if the provider cannot load; the
        engine then forgets it and its worker ends (a model loaded while serving leaves nothing
        behind). Without it a provider that cannot load stays, answering every turn with why."""
        self._providers.append(provider)
        if hasattr(provider, "serve"):
            self._queues[id(provider)] = real_queue.SimpleQueue()
        self._on_load_failed[id(provider)] = on_load_failed
        if self._started:
            self._start(provider)

    def start(self) -> None:
        if not self._started:
            self._started = True
            for provider in self._providers:
                self._start(provider)

    def _start(self, provider: Provider) -> None:
        """A provider that serves its own queue gets one worker: load, then serve forever."""
        queue = self._queues.get(id(provider))

        def work() -> None:
            provider.load()
            on_load_failed = self._on_load_failed.get(id(provider))
            if getattr(provider, "state", "ready") == "error" and on_load_failed:
                on_load_failed(provider)
                self._forget(provider)
            elif queue is not None:
                provider.serve(queue)

        real_threading.Thread(target=work, name=f"rill-{provider.name}", daemon=True).start()

    def _forget(self, provider: Provider) -> None:
        """Drop a provider that could not load; turns that queued for it meanwhile get the reason."""
        self._providers.remove(provider)
        self._on_load_failed.pop(id(provider), None)
        queue = self._queues.pop(id(provider), None)
        while queue is not None and not queue.empty():
            job = queue.get_nowait()
            job.channel.put(ProviderError(f"the model could not be loaded: {provider.error}",
                                          type="model_unavailable", status=503))
            job.channel.put(END)

    def submit(self, job: Job) -> Job:
        self.start()
        queue = self._queues.get(id(job.provider))
        if queue is not None:
            queue.put(job)
        else:
            spawn(run_job, job)
        return job

    def status(self) -> dict:
        """Self-serving providers by `provider/model`: rows running, turns waiting."""
        status = {}
        for provider in self._providers:
            if id(provider) in self._queues:
                running = provider.running
                queued = self._queues[id(provider)].qsize() + provider.waiting
                status[f"{provider.name}/{provider.models()[0]['id']}"] = {
                    "busy": running > 0, "running": running, "queued": queued}
        return status
