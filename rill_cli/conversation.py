"""A conversation as the client keeps it: Rill keeps the history itself (the session id is
enough); for other servers the messages are kept here. The last one per backend is saved in the
state directory, so `--continue` finds it."""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class Conversation:
    backend: str
    session_id: str | None = None
    messages: list[dict] = field(default_factory=list)
    model: str | None = None
    system: str | None = None
    tools: list[str] | None = None  # Rill's mcp_servers for the next questions (None: what the thread keeps)


class Conversations:
    def __init__(self, directory: Path):
        self.path = directory / "conversations.json"

    def _all(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def last(self, backend: str) -> Conversation | None:
        saved = self._all().get(backend)
        return Conversation(**saved) if saved else None

    def save(self, conversation: Conversation) -> None:
        everything = self._all()
        everything[conversation.backend] = asdict(conversation)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".tmp")
        partial.write_text(json.dumps(everything))
        os.replace(partial, self.path)
