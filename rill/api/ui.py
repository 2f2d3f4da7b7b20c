"""The browser UI: GET / serves the page; its scripts and styles come from /static."""
from __future__ import annotations

from flask import Blueprint, render_template

from ..services import current

bp = Blueprint("ui", __name__)


@bp.get("/")
def index():
    return render_template("index.html", max_upload_bytes=current().settings.max_upload_bytes)
