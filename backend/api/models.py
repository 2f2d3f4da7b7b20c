"""GET /api/models and POST /api/models/load (another local model, loaded while serving)."""
from __future__ import annotations

from pathlib import Path

import threading

from flask import Blueprint, current_app, g, jsonify
from pydantic import BaseModel, ConfigDict, Field

from ..errors import ApiError
from ..providers.local import LocalProvider
from ..schemas import json_body, parse

bp = Blueprint("models", __name__, url_prefix="/api/models")
_loading = threading.Lock()  # one check-then-add at a time, so a model is never added twice


class LoadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    path: str = Field(min_length=1, max_length=4096)


@bp.get("")
def index():
    return jsonify(current_app.extensions["rill"].models.listing())


@bp.post("/load")
def load():
    rill = current_app.extensions["rill"]
    settings = rill.settings
    if rill.auth.enabled and g.user not in settings.admin_users.split(","):
        raise ApiError(403, "permission_error", "loading models is for the users listed in RILL_ADMIN_USERS")
    req = parse(LoadRequest, json_body())
    path = checked_model_path(req.path)
    provider = LocalProvider(str(path.absolute()), settings.cache_dir, settings.dtype, settings.context_tokens,
                             settings.torch_threads, settings.max_batch)
    model_id = f"local/{provider.model_name}"
    with _loading:
        if rill.models.find(model_id):
            raise ApiError(409, "model_exists", f"{model_id} is already loaded")
        rill.models.add(provider)
    rill.engine.add(provider)  # loads on its own thread; GET /api/models shows the state
    return jsonify({"id": model_id, "state": provider.state}), 202


def checked_model_path(raw: str) -> Path:
    """A GGUF file or a Hugging Face model directory, or a 400 saying what it is instead."""
    bad = lambda why: ApiError(400, "invalid_model_path", f"{raw!r} {why}")  # noqa: E731
    try:
        path = Path(raw).expanduser()
        if not path.exists():
            raise bad("does not exist on the server")
        if path.is_file() and path.suffix.lower() != ".gguf":
            raise bad("is a file but not a .gguf file")
        if path.is_dir() and not (path / "config.json").is_file():
            raise bad("is a directory without config.json: not a Hugging Face model directory")
    except (RuntimeError, OSError, ValueError) as exc:  # ~nobody, unreadable directories, NUL bytes
        raise bad(f"cannot be used: {exc}")
    return path
