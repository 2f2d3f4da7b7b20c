"""GET /api/usage: tokens and cost by day and model, the caller's own or (admins) anyone's."""
from __future__ import annotations

from flask import Blueprint, g, jsonify, request

from ..errors import ApiError
from ..services import current
from ..usage import report

bp = Blueprint("usage", __name__, url_prefix="/api/usage")
MAX_DAYS = 366


@bp.get("")
def usage():
    rill = current()
    raw_days = request.args.get("days", "30")
    if not raw_days.isdigit() or not 1 <= int(raw_days) <= MAX_DAYS:
        raise ApiError(400, "invalid_request_error", f"days must be a whole number from 1 to {MAX_DAYS}, "
                                                     f"not {raw_days[:20]!r}")
    who = request.args.get("user", g.user)
    if who != g.user and not rill.auth.is_admin(g.user):
        raise ApiError(403, "permission_error", "only RILL_ADMIN_USERS may see other users' usage")
    return jsonify(report(rill.usage, rill.prices, int(raw_days), None if who == "*" else who))
