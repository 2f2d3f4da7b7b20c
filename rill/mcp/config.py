"""RILL_MCP_CONFIG: the `{"mcpServers": {name: ...}}` file users already have from other MCP
clients. A server is a command (stdio) or a URL (Streamable HTTP); Rill adds `timeout_seconds` and
`ask_first` (each call waits for the user's approval). Anything else is an error that names it."""
from __future__ import annotations

import json
import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class StdioServer(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    command: str = Field(min_length=1)
    args: list[str] = []
    env: dict[str, str] = {}
    cwd: str | None = None
    timeout_seconds: float | None = Field(default=None, gt=0)
    ask_first: bool = False


class HttpServer(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    url: str = Field(pattern=r"^https?://")
    headers: dict[str, str] = {}
    timeout_seconds: float | None = Field(default=None, gt=0)
    ask_first: bool = False


Server = StdioServer | HttpServer


class McpConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mcpServers: dict[str, StdioServer | HttpServer]


def load(path: str) -> dict[str, Server]:
    """The servers named in the file; a file that cannot be used stops the start with why."""
    if not path:
        return {}
    try:
        raw = json.loads(Path(path).expanduser().read_text())
        servers = McpConfig.model_validate(raw).mcpServers
    except OSError as err:
        raise SystemExit(f"RILL_MCP_CONFIG={path!r}: {err.strerror}")
    except ValueError as err:  # not JSON, or not the shape (ValidationError is a ValueError)
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors()) \
            if isinstance(err, ValidationError) else str(err)
        raise SystemExit(f"RILL_MCP_CONFIG={path!r}: {detail}")
    for name in servers:
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", name):
            raise SystemExit(f"RILL_MCP_CONFIG={path!r}: server name {name!r}: use letters, digits, _ and - "
                             f"(it prefixes its tools' names)")
    return servers
