"""A turn's figures, kept apart from the turn: Prometheus metrics as it moves and streams, and
when it ends its usage record and one log line."""
from __future__ import annotations

import logging
import time

from .. import metrics
from ..providers.base import Finish
from ..services import UsageStore
from ..usage import TurnUsage
from .turn import Turn, TurnState

log = logging.getLogger(__name__)

GAUGES = {TurnState.WAITING: metrics.REQUESTS_WAITING, TurnState.RUNNING: metrics.REQUESTS_RUNNING}


class Accounting:
    def __init__(self, usage: UsageStore, log_content: bool = False):
        self.usage = usage
        self.log_content = log_content  # RILL_LOG_CONTENT: the message and reply in the log line
        self.series: dict[tuple[str, str], tuple] = {}  # (model, api) -> its first-token and inter-token series

    def moved(self, turn: Turn, before: TurnState) -> None:
        """The waiting and running gauges; the queue time once the model takes the turn."""
        if before in GAUGES:
            GAUGES[before].labels(turn.model).dec()
        if turn.state in GAUGES:
            GAUGES[turn.state].labels(turn.model).inc()
        if turn.state is TurnState.RUNNING:
            metrics.QUEUE_TIME.labels(turn.model, turn.caller.api).observe(time.perf_counter() - turn.created)

    def first_piece(self, turn: Turn) -> None:
        self._series(turn)[0].observe(turn.first_at - turn.created)

    def gaps(self, turn: Turn, gaps: list[float]) -> None:
        metrics.observe_all(self._series(turn)[1], gaps)

    def _series(self, turn: Turn) -> tuple:
        """The turn's first-token and inter-token series, looked up once per model and api
        (labels() is slow)."""
        key = (turn.model, turn.caller.api)
        series = self.series.get(key)
        if series is None:
            series = self.series[key] = (metrics.TIME_TO_FIRST_TOKEN.labels(*key),
                                         metrics.INTER_TOKEN_LATENCY.labels(*key))
        return series

    def ended(self, turn: Turn, finish: Finish | None) -> None:
        seconds = time.perf_counter() - turn.created
        reason = finish.reason if finish else "interrupted" if turn.state is TurnState.INTERRUPTED else "error"
        prompt = (finish.prompt_tokens if finish else turn.prompt_tokens) or 0
        completion = finish.completion_tokens if finish else len(turn.pieces)
        labels = (turn.model, turn.caller.api)
        metrics.E2E_LATENCY.labels(*labels).observe(seconds)
        metrics.REQUESTS_FINISHED.labels(*labels, reason).inc()
        metrics.PROMPT_TOKENS.labels(*labels).inc(prompt)
        metrics.GENERATION_TOKENS.labels(*labels).inc(completion)
        self.usage.record(TurnUsage(turn.user, turn.model, prompt, completion, seconds * 1000, time.time()))
        fields = {"request_id": turn.caller.request_id, "turn_id": turn.id, "user": turn.user, "model": turn.model,
                  "api": turn.caller.api, "status": turn.state.value, "finish_reason": reason,
                  "prompt_tokens": prompt, "completion_tokens": completion, "duration_ms": round(seconds * 1000, 1),
                  "ttft_ms": round((turn.first_at - turn.created) * 1000, 1) if turn.first_at else None}
        if turn.error:
            fields["error"] = f"{turn.error.type}: {turn.error.message}"
        if self.log_content:
            fields.update(message=turn.message, reply="".join(turn.pieces))
        log.info("turn finished", extra=fields)
