"""Every provider, by name: what `provider/model` names resolve to, and where jobs go.

Each provider loads in an OS thread of its own and then runs its scheduler there, if it has one
(the local model batches its turns there). Loading starts when the server opens the directory (or
with the first job), not when the app is built: a CLI command that builds the app must not load
models. Local models beyond `max_loaded` in memory: the least recently used idle one is unloaded
before another loads, and loads again with its next turn (as Ollama does).
"""
from __future__ import annotations

import logging
import time

from .. import metrics
from ..refusals import Refused
from ..runtime import os_thread, real_threading
from .base import Job, Provider

log = logging.getLogger(__name__)


class ProviderDirectory:
    def __init__(self, default: str, max_loaded: int = 0):
        self.default = default  # the model of requests that name none
        self.max_loaded = max_loaded  # local models in memory at once; 0: no limit
        self.used: dict[int, float] = {}  # id(provider): when a turn last went to it
        self._reloading = real_threading.Lock()  # one reload per unloaded model
        self.providers: list[Provider] = []
        self._removable: set[int] = set()  # ids of providers dropped when they cannot load
        self.failed: dict[str, str] = {}  # `provider/model` of those dropped: why
        self._opened = False

    def add(self, provider: Provider, removable: bool = False) -> None:
        """A `removable` provider that cannot load is dropped again, and its thread ends (a model
        loaded while serving leaves nothing behind); any other stays, answering every turn with why."""
        self.providers.append(provider)
        if removable:
            self._removable.add(id(provider))
        for model in provider.models():
            self.failed.pop(f"{provider.name}/{model['id']}", None)  # tried again
            metrics.declare_model(f"{provider.name}/{model['id']}")
        if self._opened and getattr(provider, "state", None) != "unloaded":
            self._load(provider)

    def open(self) -> None:
        """Load every provider, each in its own thread (those found unloaded: with their first turn)."""
        if not self._opened:
            self._opened = True
            for provider in self.providers:
                if getattr(provider, "state", None) != "unloaded":
                    self._load(provider)

    def _load(self, provider: Provider) -> None:
        def work() -> None:
            if fetch := getattr(provider, "fetch", None):
                fetch()  # a pull from the hub: nothing in memory yet
            while True:
                self._make_room(provider)
                provider.load()
                if getattr(provider, "state", "ready") == "error" and id(provider) in self._removable:
                    self._drop(provider)
                    return
                provider.run()  # until closed, or unloaded
                with self._reloading:  # as submit() checks: a turn sent while it unloaded is not lost
                    if getattr(provider, "state", None) != "unloaded" or not provider.pending():
                        return
                    provider.reload()

        os_thread(work, f"rill-{provider.name}")

    def _drop(self, provider: Provider) -> None:
        log.warning("%s could not be loaded, so it is not listed: %s", self._label(provider), provider.error)
        self.providers.remove(provider)
        self.failed[self._label(provider)] = provider.error
        while len(self.failed) > 10:  # the latest failures, not every one since the start
            del self.failed[next(iter(self.failed))]
        provider.close(f"the model could not be loaded: {provider.error}")

    @staticmethod
    def _label(provider: Provider) -> str:
        return f"{provider.name}/{provider.models()[0]['id']}"

    def _make_room(self, coming: Provider) -> None:
        """Unload the least recently used idle local models until `coming` fits in max_loaded."""
        if not self.max_loaded or not hasattr(coming, "unload"):
            return
        held = [p for p in self.providers if p is not coming and hasattr(p, "unload")
                and p.state in ("loading", "ready")]
        for provider in sorted(held, key=lambda p: self.used.get(id(p), 0.0)):
            if len(held) < self.max_loaded:
                return
            if provider.unload():
                held.remove(provider)
        if len(held) >= self.max_loaded:
            log.warning("%d local models are busy: %s loads beside them, past RILL_MAX_LOADED_MODELS=%d",
                        len(held), self._label(coming), self.max_loaded)

    def submit(self, job: Job) -> None:
        self.open()
        provider = job.provider
        self.used[id(provider)] = time.monotonic()
        with self._reloading:  # with the check in _load's work(): a turn never waits for a model nobody loads
            if getattr(provider, "state", None) == "unloaded":
                provider.reload()
                self._load(provider)
            provider.submit(job)

    def status(self) -> dict:
        """Providers that schedule their own jobs, by `provider/model`: rows running, turns waiting."""
        return {self._label(p): state for p in self.providers if (state := p.status()) is not None}

    def names(self) -> list[str]:
        return [f"{p.name}/{m['id']}" for p in self.providers for m in p.models()]

    def find(self, name: str | None) -> tuple[Provider, str] | None:
        name = name or self.default
        prefix, _, model = name.partition("/")
        for provider in self.providers:
            if any(m["id"] == model for m in provider.models()) and provider.name == prefix:
                return provider, model
        for provider in self.providers:
            if provider.name == prefix and model and provider.passthrough:
                return provider, model
        for provider in self.providers:  # a bare model name: whichever provider has it
            if any(m["id"] == name for m in provider.models()):
                return provider, name
        return None

    def resolve(self, name: str | None) -> tuple[Provider, str]:
        found = self.find(name)
        if found is None:
            raise Refused("model_not_found",
                          f"unknown model {name or self.default!r}; available: {', '.join(self.names()) or 'none'}")
        reason = found[0].unavailable()
        if reason:
            raise Refused("provider_not_configured", reason)
        return found

    def listing(self) -> dict:
        return {
            "default": self.default,
            "providers": [
                {"name": p.name, "available": p.unavailable() is None,
                 "models": [{**m, "id": f"{p.name}/{m['id']}", "input_modalities": p.input_modalities(m["id"])}
                            for m in p.models()]}
                for p in self.providers
            ],
            "failed": [{"id": name, "error": error} for name, error in self.failed.items()],
        }
