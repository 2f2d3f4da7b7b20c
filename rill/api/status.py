"""Health for people and orchestrators (/health, /livez, /readyz) and Prometheus (/metrics)."""
from __future__ import annotations

import hmac
import time

from flask import Blueprint, jsonify, request

from .. import __version__, metrics
from ..errors import ApiError
from ..services import current
from ..usage import day_of

bp = Blueprint("status", __name__)


def default_model() -> dict:
    rill = current()
    provider, model_id = rill.providers.find(None) or (None, None)
    if provider is None:
        return {"state": "error", "error": f"the default model {rill.providers.default!r} is not known"}
    return next((m for m in provider.models() if m["id"] == model_id), {"state": "ready"})


@bp.get("/health")
def health():
    rill = current()
    model = default_model()
    return jsonify({
        "status": "ok" if model["state"] == "ready" else model["state"],
        "version": __version__,
        "uptime_s": round(time.monotonic() - rill.started, 1),
        "async_mode": rill.settings.async_mode,
        "model": {"name": rill.providers.default, **{k: v for k, v in model.items() if k != "id"}},
        "engine": rill.providers.status(),
        "active_turns": len(rill.turns.running()),
    })


@bp.get("/livez")
def livez():
    """The process answers: restart it when this fails."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    """Send it traffic: the default model is loaded and the stores answer."""
    rill = current()
    checks = {"model": default_model()["state"]}
    for name, probe in (("threads", lambda: rill.threads.exists("readyz-probe", "readyz")),
                        ("usage", lambda: rill.usage.totals(day_of(time.time()), "readyz"))):
        try:
            probe()
            checks[name] = "ok"
        except Exception as exc:  # any store failure means not ready; say which and why
            checks[name] = f"unreachable: {exc}"
    failing = {k: v for k, v in checks.items() if v not in ("ok", "ready")}
    if not failing:
        return jsonify({"status": "ready", "checks": checks})
    message = "; ".join(f"{k}: {v}" for k, v in failing.items())
    return jsonify({"status": "not_ready", "checks": checks,
                    "error": {"type": "not_ready", "message": message}}), 503


@bp.get("/metrics")
def prometheus_metrics():
    """With auth on, only with RILL_METRICS_TOKEN (and off without one); a set token is always needed."""
    settings = current().settings
    if settings.metrics_token:
        sent = request.headers.get("Authorization", "")
        if not hmac.compare_digest(sent.encode(), f"Bearer {settings.metrics_token}".encode()):
            raise ApiError(401, "authentication_error", "metrics need `Authorization: Bearer <RILL_METRICS_TOKEN>`")
    elif current().auth.enabled:
        raise ApiError(404, "not_found_error", "metrics are off while auth is on and RILL_METRICS_TOKEN is not set")
    body, content_type = metrics.exposition()
    return body, 200, {"Content-Type": content_type}
