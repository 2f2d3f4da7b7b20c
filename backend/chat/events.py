"""The one event stream every transport maps to its own wire format."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["start", "reasoning", "token", "tool_call_start", "tool_call_delta", "tool_call_end", "done", "error",
               "ping"]


@dataclass(frozen=True)
class StreamEvent:
    kind: Kind
    data: dict
    turn_id: str
    seq: int  # position in the turn, from 0; pings carry the seq of the last real event

    @property
    def final(self) -> bool:
        return self.kind in ("done", "error")
