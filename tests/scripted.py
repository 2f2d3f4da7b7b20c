"""A scripted provider for transport tests that need exact pieces, delays or a failure.

It never stands in for the real model: integration tests of generation use the local model.
Model ids: `echo` (the last user message, word by word), `fail` (three pieces, then an
exception), `slow` (waits 1.5 s before each of two pieces, so keep-alives are sent).
"""
from __future__ import annotations

import eventlet.patcher

from backend.providers.base import Finish

sleep = eventlet.patcher.original("time").sleep  # this runs in a real OS thread


class ScriptedProvider:
    name = "scripted"
    serial = False
    passthrough = False

    def unavailable(self):
        return None

    def models(self):
        return [{"id": m, "state": "ready"} for m in ("echo", "fail", "slow")]

    def load(self):
        pass

    def stream(self, model, messages, options, cancel):
        if model == "echo":
            pieces = [w + " " for w in messages[-1].content.split()]
        elif model == "slow":
            pieces = ["slow ", "reply"]
        else:
            pieces = ["about ", "to ", "fail "]
        for n, piece in enumerate(pieces):
            if cancel.is_set():
                yield Finish("cancelled", 1, n)
                return
            if model == "slow":
                sleep(1.5)
            yield piece
        if model == "fail":
            raise RuntimeError("scripted failure in the middle of a reply")
        yield Finish("stop", 1, len(pieces))
