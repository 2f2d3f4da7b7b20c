"""GET /api/models and POST /api/models/load (another local model, loaded while serving)."""
from __future__ import annotations

import threading
from pathlib import Path

from flask import Blueprint, g, jsonify
from pydantic import BaseModel, ConfigDict, Field

from ..config import comma_list
from ..errors import ApiError
from ..providers.local import LocalProvider
from ..services import current
from .requests import json_body, parse

bp = Blueprint("models", __name__, url_prefix="/api/models")
GGUF_MAGIC = b"GGUF"
_loading = threading.Lock()  # one check-then-add at a time, so a model is never added twice


class LoadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [
        {"path": "/srv/models/qwen2.5-0.5b-instruct-q4_k_m.gguf"}, {"path": "~/models/SmolLM2-360M-Instruct"}]})
    path: str = Field(min_length=1, max_length=4096)


@bp.get("")
def index():
    return jsonify(current().providers.listing())


@bp.post("/load")
def load():
    rill = current()
    settings = rill.settings
    if rill.auth.enabled and g.user not in comma_list(settings.admin_users):
        raise ApiError(403, "permission_error", "loading models is for the users listed in RILL_ADMIN_USERS")
    req = parse(LoadRequest, json_body())
    path = checked_model_path(req.path)
    provider = LocalProvider(settings, str(path.absolute()))
    model_id = f"local/{provider.model_name}"
    with _loading:
        if rill.providers.find(model_id):
            raise ApiError(409, "model_exists", f"{model_id} is already loaded")
        # Loads on its own thread; GET /api/models shows the state. One that fails is removed again.
        rill.providers.add(provider, removable=True)
    return jsonify({"id": model_id, "state": provider.state}), 202


def checked_model_path(raw: str) -> Path:
    """A regular GGUF file or a Hugging Face model directory, or a 400 saying what it is instead."""
    bad = lambda why: ApiError(400, "invalid_model_path", f"{raw!r} {why}")  # noqa: E731
    try:
        path = Path(raw).expanduser()
        if not path.exists():
            raise bad("does not exist on the server")
        if path.is_dir():
            if not (path / "config.json").is_file():
                raise bad("is a directory without config.json: not a Hugging Face model directory")
        elif not path.is_file():
            raise bad("is neither a regular file nor a directory")
        elif path.suffix.lower() != ".gguf":
            raise bad("is a file but not a .gguf file")
        else:
            with path.open("rb") as f:
                if f.read(4) != GGUF_MAGIC:
                    raise bad("is not a GGUF file (it does not start with the GGUF header)")
    except (RuntimeError, OSError, ValueError) as exc:  # ~nobody, unreadable directories, NUL bytes
        raise bad(f"cannot be used: {exc}")
    return path
