"""Who is told when a user's threads change: every change bumps the owner's revision, and the
feed hands it to whoever waits for that owner (a page's change stream; Socket.IO's room).

One process: a condition variable (green under eventlet, real otherwise, as the turn log's).
Several workers: a Redis channel carries each change to every worker's own feed."""
from __future__ import annotations

import json
import logging
import threading
import time
from typing import Callable, Iterator

from ..runtime import spawn

log = logging.getLogger(__name__)


class ChangeFeed:
    def __init__(self):
        self.changed = threading.Condition()
        self.latest: dict[str, int] = {}  # owner -> the newest revision seen
        self.listeners: list[Callable[[str, int], None]] = []  # called on the worker where the change is made

    def publish(self, owner: str, revision: int) -> None:
        """A change made here: tell this worker's waiters and listeners (and other workers, with Redis)."""
        self.arrived(owner, revision)
        for listener in self.listeners:
            try:
                listener(owner, revision)
            except Exception:  # a listener that fails must not fail the write that is already made
                log.exception("a change listener failed")

    def arrived(self, owner: str, revision: int) -> None:
        with self.changed:
            if revision > self.latest.get(owner, 0):
                self.latest[owner] = revision
                self.changed.notify_all()

    def follow(self, owner: str, after: int, keepalive: float) -> Iterator[int | None]:
        """Revisions of the owner's newer than `after` as they come (None after `keepalive` seconds
        of quiet: a chance to send a ping); until the caller stops."""
        while True:
            with self.changed:
                if self.latest.get(owner, 0) <= after:
                    self.changed.wait(keepalive)
                newest = self.latest.get(owner, 0)
            if newest > after:
                after = newest
                yield newest
            else:
                yield None


class RedisChangeFeed(ChangeFeed):
    """Changes made on any worker reach every worker's waiters through one Redis channel."""

    def __init__(self, client, prefix: str = "rill:"):
        super().__init__()
        self.client = client
        self.channel = f"{prefix}thread-changes"
        spawn(self._listen_forever)

    def publish(self, owner: str, revision: int) -> None:
        super().publish(owner, revision)
        try:
            self.client.publish(self.channel, json.dumps([owner, revision]))
        except Exception as exc:  # readers on other workers catch up at their next sync
            log.warning("could not announce a change on Redis: %s", exc)

    def _listen_forever(self) -> None:
        while True:
            try:
                pubsub = self.client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(self.channel)
                for message in pubsub.listen():
                    owner, revision = json.loads(message["data"])
                    self.arrived(owner, revision)
            except Exception as exc:
                log.warning("the change channel lost Redis (%s); listening again", exc)
                time.sleep(1.0)
