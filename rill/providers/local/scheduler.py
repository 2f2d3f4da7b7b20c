"""Continuous batching on one engine's thread: waiting turns join the running batch between
steps, finished and cancelled ones leave it at once, and beyond the batch turns wait in arrival
order (vLLM's scheduler, on a CPU's scale)."""
from __future__ import annotations

import collections
import logging
from typing import Callable

from ... import metrics
from ...runtime import deliver_held, held_deliveries, real_queue
from ..base import ChatMessage, EmbedJob, Failure, Finish, GenerationOptions, Job, Prompt, ProviderError
from .contract import Media, Model
from .embedding import answer
from .row import Row

log = logging.getLogger(__name__)

PromptFor = Callable[[list[ChatMessage], GenerationOptions], tuple[list[int], Media | None]]
UNLOAD = object()  # in the job queue: run() returns if nothing runs or waits, so the model can be freed
# With only finished chats' closing left to decode, how long the engine waits for new
# work first: a client that sends the next turn at once is there by then, and its turn prefills
# the closing itself (a step for it alone would delay that turn); a person takes longer.
CLOSING_GRACE = 0.25


class Scheduler:
    def __init__(self, max_batch: int, label: str):
        self.max_batch = max_batch  # rows decoded together
        self.label = label  # `local/<model>`, the metrics label
        # its series, looked up once: labels() is Python enough to show between two steps
        self.batch_size = metrics.BATCH_SIZE.labels(label)
        self.guessed = metrics.SPEC_DRAFT_TOKENS.labels(label)
        self.held = metrics.SPEC_ACCEPTED_TOKENS.labels(label)
        self.jobs = real_queue.SimpleQueue()  # Jobs for run(), close()'s None, unload()'s UNLOAD
        self.running = 0  # rows in the batch now
        self.waiting = 0  # turns queued for a place in it
        self.closed: str | None = None  # why it takes no more jobs

    def submit(self, job: Job) -> None:
        if self.closed:
            job.channel.put(Failure(ProviderError(self.closed, type="model_unavailable")))
        else:
            self.jobs.put(job)

    def status(self) -> dict:
        return {"busy": self.running > 0, "running": self.running, "queued": self.jobs.qsize() + self.waiting}

    def close(self, reason: str) -> None:
        """Refuse new turns and answer queued ones with `reason`; a running loop ends its turns so
        too and returns (its thread must not outlive the interpreter inside torch)."""
        self.closed = reason
        while not self.jobs.empty():
            if job := self.jobs.get_nowait():
                self.submit(job)
        self.jobs.put(None)

    def unload(self) -> None:
        """Ask run() to return when it is idle; turns queued after that wait for the next run()."""
        self.jobs.put(UNLOAD)

    def pending(self) -> bool:
        return not self.jobs.empty()

    def refuse_all(self, error: ProviderError) -> None:
        """The model never loaded: every turn gets the reason, until close()."""
        while job := self.jobs.get():
            job.channel.put(Failure(error))

    def _row_for(self, job: Job | None, model: Model, prompt_for: PromptFor) -> Row | None:
        """The job's row, or None when it is answered already (cancelled, or refused), or when it
        is close()'s None or an UNLOAD (which run() has noted)."""
        if job is None or job is UNLOAD:
            self.unload_asked = job is UNLOAD
            return None
        deliver_held()  # a prompt to render and tokenize, or embeddings to compute: the rows' news first
        if isinstance(job, EmbedJob):  # run now, between steps: only this thread touches the model
            answer(job)
            return None
        if job.cancel.is_set():
            job.channel.put(Finish("cancelled", 0, 0))
            return None
        try:
            prompt, media = prompt_for(job.messages, job.options)
            return Row(model, prompt, job.options, job.cancel, job.channel.put, media,
                       goes_on=any(m.role == "assistant" for m in job.messages))
        except ProviderError as exc:
            job.channel.put(Failure(exc))
        except Exception as exc:  # e.g. a chat template that rejects these messages
            job.channel.put(Failure(ProviderError(f"the local model cannot take this conversation: {exc}",
                                                  type="invalid_request_error")))
        return None

    def run(self, model: Model, prompt_for: PromptFor) -> bool:
        """Admit waiting turns between steps, until close() (False), or until an unload() finds
        nothing running or waiting (True). What the rows write reaches their turns just before
        each step (the model's decode lets go of the interpreter's lock), or before a wait."""
        with held_deliveries():
            return self._run(model, prompt_for)

    def _run(self, model: Model, prompt_for: PromptFor) -> bool:
        jobs = self.jobs
        batch = model.new_batch(self.max_batch)
        waiting: collections.deque[Row] = collections.deque()
        self.unload_asked = False
        while True:
            if not waiting and all(row.done for row in batch.rows):  # idle: block until work arrives
                deliver_held()
                try:  # (a moment, where finished chats' closing is left to decode)
                    if row := self._row_for(jobs.get(timeout=CLOSING_GRACE if batch.rows else None), model,
                                            prompt_for):
                        waiting.append(row)
                except real_queue.Empty:  # none: the closing is decoded now
                    pass
            while not jobs.empty():
                if row := self._row_for(jobs.get_nowait(), model, prompt_for):
                    waiting.append(row)
            if self.closed:
                for row in [*batch.rows, *waiting]:
                    if not row.done:
                        row.fail(ProviderError(self.closed, type="model_unavailable"))
                batch.close()
                self.running = self.waiting = 0
                return False
            if self.unload_asked and all(row.done for row in batch.rows) and not waiting and jobs.empty():
                batch.close()  # (a finished chat's closing is not decoded: its kept conversation goes too)
                return True
            self.unload_asked = False  # busy again: it stays loaded
            newcomers = []
            # (finished chats waiting to close take no place: a newcomer takes theirs)
            while waiting and sum(not row.done for row in batch.rows) + len(newcomers) < self.max_batch:
                if waiting[0].cancel.is_set():
                    waiting.popleft().finish("cancelled")
                elif batch.can_admit(waiting[0], newcomers):
                    newcomers.append(waiting.popleft())
                else:
                    break
            self.waiting = len(waiting)
            try:
                for row in newcomers:  # the turn leaves the queue
                    row.emit(Prompt(len(row.prompt)))
                if newcomers:
                    deliver_held()  # (a kept conversation may be copied back first)
                    batch.add(newcomers)
                for row in batch.rows:
                    if not row.done and row.cancel.is_set():
                        row.finish("cancelled")
                batch.drop_done()
                # (a newcomer that ended on its first token leaves its closing to the wait above)
                if batch.rows and not (newcomers and all(row.done for row in batch.rows)):
                    self.batch_size.observe(len(batch.rows))
                    batch.step()
                    guessed, held = batch.guesses
                    if guessed:
                        self.guessed.inc(guessed)
                        self.held.inc(held)
                    batch.drop_done()
            except Exception as exc:  # the model itself failed: every row in this batch ends
                log.exception("batched step failed")
                for row in {*batch.rows, *newcomers}:
                    if not row.done:
                        row.fail(ProviderError(f"local model failed: {exc}"))
                batch.close()
                batch = model.new_batch(self.max_batch)
            self.running = sum(not row.done for row in batch.rows)  # (not a finished chat's closing)
