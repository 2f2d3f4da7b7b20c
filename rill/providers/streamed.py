"""The rest of the provider contract for providers that only stream (the upstreams).

They wait on upstream servers, not on the CPU: under eventlet each stream runs as a green thread
on the server's hub, because after patching every lock their SDKs create is green, and a green
lock contended by two OS threads hangs the waiter for good ("Cannot switch to a different thread":
seen with 8 concurrent openai and google-genai streams). In threading mode a stream gets a thread.
"""
from __future__ import annotations

import logging

from .. import metrics
from ..runtime import spawn
from .base import EmbedJob, Embeddings, Failure, Finish, Job, Piece, ProviderError

log = logging.getLogger(__name__)


def run_job(job: Job | EmbedJob) -> None:
    """Feed a provider's stream into the job's channel, typed; the last item is a Finish or a Failure.
    An EmbedJob gets its Embeddings or a Failure."""
    try:
        if isinstance(job, EmbedJob):
            job.channel.put(job.provider.embed(job.model, job.inputs))
            return
        if job.cancel.is_set():
            job.channel.put(Finish("cancelled", 0, 0))
            return
        for item in job.provider.stream(job.model, job.messages, job.options, job.cancel):
            job.channel.put(Piece(item) if isinstance(item, str) else item)
            if isinstance(item, Finish):
                return
        job.channel.put(Failure(ProviderError("the model ended without finishing its reply")))
    except ProviderError as exc:
        if not exc.request_fault:  # the upstream failed, not the request
            metrics.UPSTREAM_ERRORS.labels(job.provider.name).inc()
        job.channel.put(Failure(exc))
    except Exception as exc:
        log.exception("provider %s failed", job.provider.name)
        metrics.UPSTREAM_ERRORS.labels(job.provider.name).inc()
        job.channel.put(Failure(ProviderError(f"{job.provider.name} model failed: {exc}")))


class Streamed:
    """Each job's stream runs on its own (see the module docstring); nothing to schedule or close."""

    def run(self) -> None:
        pass

    def refuses_tools(self, model: str, tool_choice: str) -> str | None:
        return None  # the upstream takes tools, or says itself why not

    def refuses_schemas(self, model: str, options) -> str | None:
        return None  # sent on: the upstream holds to it, or says itself why not

    def input_modalities(self, model: str) -> list[str]:
        return ["text", "image"]  # the upstream reads images, or says itself why not

    def embed(self, model: str, inputs: list) -> Embeddings:
        raise ProviderError(f"{self.name}/{model}: Rill does not take embeddings from this provider",
                            type="invalid_request_error")

    def submit(self, job: Job | EmbedJob) -> None:
        spawn(run_job, job)

    def status(self) -> dict | None:
        return None

    def close(self, reason: str) -> None:
        pass
