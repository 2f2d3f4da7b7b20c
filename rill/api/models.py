"""GET /api/models (and its changes as server events), and another local model while serving:
loaded from a path (POST /api/models/load) or pulled from the hub by name (POST /api/models/pull,
cancelled with POST /api/models/cancel). Loading and pulling are for admins when auth is on."""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from flask import Blueprint, Response, g, jsonify
from pydantic import BaseModel, ConfigDict, Field

from ..errors import ApiError
from ..providers.local import LocalProvider
from ..providers.local.hub import PullError, parse as parse_name
from ..services import current
from ..transports.sse import PING, SSE_HEADERS, format_event
from .requests import json_body, parse

bp = Blueprint("models", __name__, url_prefix="/api/models")
GGUF_MAGIC = b"GGUF"
_loading = threading.Lock()  # one check-then-add at a time, so a model is never added twice


class LoadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [
        {"path": "/srv/models/qwen2.5-0.5b-instruct-q4_k_m.gguf"}, {"path": "~/models/SmolLM2-360M-Instruct"}]})
    path: str = Field(min_length=1, max_length=4096)


class PullRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [
        {"name": "Qwen/Qwen2.5-0.5B-Instruct-GGUF:Q4_K_M"}, {"name": "HuggingFaceTB/SmolLM2-360M-Instruct"}]})
    name: str = Field(min_length=3, max_length=200)


class CancelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [
        {"id": "local/qwen2.5-0.5b-instruct-gguf:q4_k_m"}]})
    id: str = Field(min_length=1, max_length=300)


@bp.get("")
def index():
    return jsonify(current().providers.listing())


@bp.get("/events")
def events():
    """The listing as a `models` event now and whenever it changes (a pull's progress, a model
    loading, ready, failed, unloaded), checked twice a second; pings while nothing changes."""
    rill = current()
    directory, keepalive = rill.providers, rill.settings.keepalive_seconds

    def body():
        last, quiet = None, 0.0
        while True:
            listing = json.dumps(directory.listing(), separators=(",", ":"))
            if listing != last:
                yield format_event(listing, "models")
                last, quiet = listing, 0.0
            elif quiet >= keepalive:
                yield PING
                quiet = 0.0
            time.sleep(0.5)
            quiet += 0.5

    return Response(body(), mimetype="text/event-stream", headers=SSE_HEADERS)


def admin_only(what: str) -> None:
    if not current().auth.is_admin(g.user):
        raise ApiError(403, "permission_error", f"{what} models is for the users listed in RILL_ADMIN_USERS")


def add_model(provider: LocalProvider):
    """Loads (or pulls, then loads) on its own thread; GET /api/models shows the state. One that
    fails is removed again, its error listed under `failed`."""
    directory = current().providers
    model_id = f"local/{provider.model_name}"
    with _loading:
        if directory.find(model_id):
            raise ApiError(409, "model_exists", f"{model_id} is already on this server (GET /api/models)")
        directory.add(provider, removable=True)
    return jsonify({"id": model_id, "state": provider.state}), 202


@bp.post("/load")
def load():
    admin_only("loading")
    path = checked_model_path(parse(LoadRequest, json_body()).path)
    return add_model(LocalProvider(current().settings, str(path.absolute())))


@bp.post("/pull")
def pull():
    admin_only("pulling")
    name = parse(PullRequest, json_body()).name
    try:
        parse_name(name)
    except PullError as err:
        raise ApiError(400, "invalid_model_name", str(err))
    return add_model(LocalProvider(current().settings, "hf:" + name.removeprefix("hf:")))


@bp.post("/cancel")
def cancel():
    admin_only("pulling")
    model_id = parse(CancelRequest, json_body()).id
    found = current().providers.find(model_id)
    if found is None:
        raise ApiError(404, "model_not_found", f"no model {model_id} on this server")
    provider = found[0]
    if getattr(provider, "state", None) != "pulling":
        raise ApiError(409, "not_pulling", f"{model_id} is not being pulled")
    provider.pull.cancel()
    return jsonify({"id": model_id, "state": "cancelling"}), 202


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
