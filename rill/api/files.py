"""/api/files: uploads that messages refer to by id (a `file` part), never carrying the bytes.

POST takes one multipart field `file` of at most RILL_MAX_UPLOAD_BYTES; GET serves the bytes to
their owner only (and to a share link that shows the file: threads.py), with the SHA-256 as ETag
and caching for good (the bytes of an id never change).
"""
from __future__ import annotations

from flask import Blueprint, g, jsonify, request, send_file

from ..conversations.files import too_large
from ..conversations.images import normalised_type
from ..errors import ApiError
from ..services import current

bp = Blueprint("files", __name__, url_prefix="/api/files")
MULTIPART_SLACK = 64 * 1024  # the form's boundaries and part headers around the file
ONE_YEAR = 365 * 24 * 3600


def file_or_404(file_id: str) -> dict:
    found = current().files.get(file_id, g.user)
    if found is None:
        raise ApiError(404, "file_not_found", f"no file {file_id!r}")
    return found


@bp.post("")
def upload():
    """One file, as multipart field `file`: 201 {id, name, type, size, sha256, created_at, and
    width and height for an image}."""
    limit = current().settings.max_upload_bytes
    if (request.content_length or 0) > limit + MULTIPART_SLACK:
        raise too_large(limit)  # said before a byte of it is read
    if request.mimetype != "multipart/form-data":
        raise ApiError(415, "unsupported_media_type", "send the file as multipart/form-data, in a field named `file`")
    request.max_content_length = limit + MULTIPART_SLACK
    extra = sorted({*request.form, *request.files} - {"file"})
    if extra:
        raise ApiError(400, "invalid_request_error", f"unknown form fields: {', '.join(extra)} (only `file`)")
    uploads = request.files.getlist("file")
    if len(uploads) != 1:
        raise ApiError(400, "invalid_request_error", "one file, in a multipart field named `file`")
    name = (uploads[0].filename or "").strip() or "file"
    return jsonify(current().files.save(g.user, name[:255], uploads[0].stream, limit)), 201


def serve(found: dict, preview: bool = False):
    """A file's bytes (or an image's preview), cached for good: the bytes of an id never change."""
    files = current().files
    if not preview:
        response = send_file(files.blob(found["sha256"]), mimetype=found["type"], etag=found["sha256"],
                             download_name=found["name"], conditional=True, max_age=ONE_YEAR)
    elif found["type"].startswith("image/"):
        path = files.preview(found)
        with open(path, "rb") as head:
            kind = normalised_type(head.read(8))
        response = send_file(path, mimetype=kind, etag=f"{found['sha256']}-preview", conditional=True,
                             max_age=ONE_YEAR)
    else:
        raise ApiError(404, "file_not_found", f"{found['name']!r} is not an image: it has no preview")
    response.headers["Cache-Control"] = f"private, max-age={ONE_YEAR}, immutable"
    response.headers["Content-Security-Policy"] = "sandbox"  # opened directly, a file runs nothing
    return response


@bp.get("/<file_id>")
def download(file_id: str):
    return serve(file_or_404(file_id))


@bp.get("/<file_id>/preview")
def preview(file_id: str):
    """An image as models get it: upright, without its metadata, at most RILL_IMAGE_MAX_SIDE."""
    return serve(file_or_404(file_id), preview=True)


@bp.get("/<file_id>/info")
def info(file_id: str):
    return jsonify(file_or_404(file_id))


@bp.delete("/<file_id>")
def remove(file_id: str):
    if not current().files.delete(file_id, g.user):
        raise ApiError(404, "file_not_found", f"no file {file_id!r}")
    return "", 204
