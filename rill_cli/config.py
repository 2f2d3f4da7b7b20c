"""Which server to talk to: the Rill at RILL_URL by default, or a backend named in the config
file (`~/.config/rill/config.yaml`)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import ClientError

DEFAULT_URL = "http://127.0.0.1:5000"
DEFAULT_KEY_ENV = {"rill": "RILL_TOKEN", "openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}


class Backend(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["rill", "openai", "anthropic"] = "rill"
    url: str = DEFAULT_URL
    model: str | None = None
    key_env: str | None = None  # the environment variable holding the key or token
    token: str | None = None  # or the key itself (the variable wins when both are set)

    def key(self) -> str | None:
        return os.environ.get(self.key_env or DEFAULT_KEY_ENV[self.type]) or self.token


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    default: str | None = None
    backends: dict[str, Backend] = {}


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(os.environ.get("RILL_CONFIG") or Path(base) / "rill" / "config.yaml")


def state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "rill"


def load(path: Path) -> Config:
    """The config file, or an empty one when there is none; a clear error when it is wrong."""
    if not path.exists():
        return Config()
    try:
        return Config.model_validate(yaml.safe_load(path.read_text()) or {})
    except yaml.YAMLError as exc:
        raise ClientError(f"{path}: not valid YAML ({exc})".replace("\n", " "))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ClientError(f"{path}: {where}: {first['msg']} ({exc.error_count()} problem(s))")


def pick(config: Config, name: str | None, url: str | None) -> tuple[str, Backend]:
    """The backend to use: --backend, else the config's default, else Rill at RILL_URL; --url
    overrides its address."""
    name = name or config.default
    if name is None:
        backend = Backend(url=os.environ.get("RILL_URL") or DEFAULT_URL)
        name = "rill"
    elif name in config.backends:
        backend = config.backends[name]
    else:
        known = ", ".join(sorted(config.backends)) or "none"
        raise ClientError(f"no backend named {name!r} in {config_path()} (known: {known})")
    if url:
        backend = backend.model_copy(update={"url": url})
    return name, backend
