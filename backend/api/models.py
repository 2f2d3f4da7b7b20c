"""GET /api/models and POST /api/models/load (another local model, loaded while serving)."""
from __future__ import annotations

from pathlib import Path

from flask import Blueprint, current_app, jsonify
from pydantic import BaseModel, ConfigDict, Field

from ..errors import ApiError
from ..providers.local import LocalProvider
from ..schemas import json_body, parse

bp = Blueprint("models", __name__, url_prefix="/api/models")


class LoadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    path: str = Field(min_length=1, max_length=4096)


@bp.get("")
def index():
    return jsonify(current_app.extensions["rill"].models.listing())


@bp.post("/load")
def load():
    req = parse(LoadRequest, json_body())
    path = Path(req.path).expanduser()
    if not path.exists():
        raise ApiError(400, "invalid_model_path", f"{req.path!r} does not exist on the server")
    if path.is_file() and path.suffix.lower() != ".gguf":
        raise ApiError(400, "invalid_model_path", f"{req.path!r} is a file but not a .gguf file")
    if path.is_dir() and not (path / "config.json").is_file():
        raise ApiError(400, "invalid_model_path",
                       f"{req.path!r} is a directory without config.json: not a Hugging Face model directory")
    rill = current_app.extensions["rill"]
    settings = rill.settings
    provider = LocalProvider(str(path.absolute()), settings.cache_dir, settings.dtype, settings.context_tokens,
                             settings.torch_threads, settings.max_batch)
    model_id = f"local/{provider.model_name}"
    if rill.models.find(model_id):
        raise ApiError(409, "model_exists", f"{model_id} is already loaded")
    rill.models.add(provider)
    rill.engine.add(provider)  # loads on its own thread; GET /api/models shows the state
    return jsonify({"id": model_id, "state": provider.state}), 202
