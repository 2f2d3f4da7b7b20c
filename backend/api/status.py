"""GET /health."""
from __future__ import annotations

import time

from flask import Blueprint, jsonify

from .. import __version__, services

bp = Blueprint("status", __name__)


@bp.get("/health")
def health():
    rill = services()
    provider, model_id = rill.models.find(None) or (None, None)
    model = next((m for m in provider.models() if m["id"] == model_id), {"state": "ready"}) if provider else \
        {"state": "error", "error": f"the default model {rill.models.default!r} is not known"}
    return jsonify({
        "status": "ok" if model["state"] == "ready" else model["state"],
        "version": __version__,
        "uptime_s": round(time.monotonic() - rill.started, 1),
        "async_mode": rill.settings.async_mode,
        "model": {"name": rill.models.default, **{k: v for k, v in model.items() if k != "id"}},
        "engine": rill.engine.status(),
        "active_turns": len(rill.turns.running()),
    })
