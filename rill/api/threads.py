"""/api/threads: the user's conversations, as trees of messages, kept on the server.

A device syncs with GET /api/threads?since=<revision> (what changed, deletions as ids), reads a
thread whole with GET /api/threads/<id>, and hears of changes as they happen: Socket.IO's
`threads_changed`, or the SSE stream GET /api/threads/changes. Turns that write into threads
start on the chat routes (thread_id, parent_id)."""
from __future__ import annotations

import re

from flask import Blueprint, g, jsonify, render_template, request, url_for

from ..errors import ApiError
from ..conversations.exchange import export, import_into, markdown
from ..conversations.parts import file_ids
from ..schemas.threads import ForkRequest, MessageCreate, MessageUpdate, ShareRequest, ThreadCreate, ThreadUpdate
from ..services import current
from ..transports.sse import PING, format_event, sse_response
from .files import serve
from .requests import json_body, parse

bp = Blueprint("threads", __name__, url_prefix="/api/threads")
search_bp = Blueprint("search", __name__, url_prefix="/api/search")
MAX_QUERY_CHARS = 500
REVISION = re.compile(r"[0-9]{1,18}")


def store():
    return current().threads


def revision_arg(name: str) -> int:
    raw = request.args.get(name, "0")
    if not REVISION.fullmatch(raw):
        raise ApiError(400, "invalid_request_error", f"{name} must be a revision (a whole number), not {raw[:30]!r}")
    return int(raw)


def thread_or_404(thread_id: str) -> dict:
    thread = store().tree(thread_id, g.user)
    if thread is None:
        raise ApiError(404, "thread_not_found", f"no thread {thread_id!r}")
    return thread


@bp.get("")
def index():
    """What changed since a revision (everything, from 0): {revision, threads, deleted}."""
    return jsonify(store().changes(g.user, revision_arg("since")))


@bp.post("")
def create():
    body = parse(ThreadCreate, json_body()) if request.content_length else ThreadCreate()
    return jsonify(store().create_thread(g.user, title=body.title or "")), 201


@bp.get("/<thread_id>")
def show(thread_id: str):
    return jsonify(thread_or_404(thread_id))


@bp.get("/<thread_id>/path")
def path(thread_id: str):
    """A page of the path down to `leaf` (default: the current leaf), newest first: the `limit`
    (1-500, default 50) messages above `before` (default: the end), with their siblings' ids, the
    files they have, and the replies being written in the thread (to follow)."""
    raw = request.args.get("limit", "50")
    if not re.fullmatch(r"[0-9]{1,3}", raw) or not 1 <= int(raw) <= 500:
        raise ApiError(400, "invalid_request_error", f"limit must be a whole number from 1 to 500, not {raw[:20]!r}")
    found = store().page(thread_id, g.user, int(raw), request.args.get("before"), request.args.get("leaf"))
    if found is None:
        raise ApiError(404, "thread_not_found", f"no thread {thread_id!r}")
    return jsonify({**found, "files": files_of(found["messages"]),
                    "running": current().turns.running_in(g.user, thread_id)})


def files_of(messages: list[dict]) -> dict[str, dict]:
    """The rows of the files the messages have (name, type, size, pixel size), by id."""
    return current().files.rows({f for m in messages for f in file_ids(m["parts"])}, g.user)


@bp.patch("/<thread_id>")
def update(thread_id: str):
    body = parse(ThreadUpdate, json_body())
    current().mcp.check(body.mcp_servers or ())
    return jsonify(store().update_thread(g.user, thread_id, title=body.title, current_leaf=body.current_leaf,
                                          branch=body.branch, mcp_servers=body.mcp_servers))


@bp.delete("/<thread_id>")
def delete(thread_id: str):
    if not store().delete_thread(g.user, thread_id):
        raise ApiError(404, "thread_not_found", f"no thread {thread_id!r}")
    return "", 204


@bp.post("/<thread_id>/messages")
def add_message(thread_id: str):
    """A message written by hand (an edit saved as a new branch without asking the model)."""
    body = parse(MessageCreate, json_body())
    return jsonify(store().add_message(g.user, thread_id, body.parent_id, body.role, owned_parts(body.parts))), 201


@bp.patch("/<thread_id>/messages/<message_id>")
def edit_message(thread_id: str, message_id: str):
    body = parse(MessageUpdate, json_body())
    return jsonify(store().edit_message(g.user, thread_id, message_id, owned_parts(body.parts)))


def owned_parts(parts) -> list[dict]:
    """The parts as dicts; a `file` part must name one of the user's uploads."""
    for n, part in enumerate(parts):
        if part.type == "file" and current().files.get(part.file_id, g.user) is None:
            raise ApiError(400, "invalid_request_error", f"parts.{n}: no file {part.file_id!r} of yours "
                                                         "(upload it with POST /api/files)")
    return [p.model_dump() for p in parts]


@bp.delete("/<thread_id>/messages/<message_id>")
def delete_message(thread_id: str, message_id: str):
    """The message and every message below it (a branch)."""
    thread_or_404(thread_id)
    if not store().delete_message(g.user, thread_id, message_id):
        raise ApiError(404, "message_not_found", f"no message {message_id!r} in thread {thread_id!r}")
    return "", 204


@bp.post("/import")
def import_file():
    """A Rill export, a ChatGPT conversations.json or an Open WebUI export, up to
    RILL_MAX_IMPORT_BYTES: {"imported", "skipped"} (importing the same file again adds nothing)."""
    limit = current().settings.max_import_bytes
    if (request.content_length or 0) > limit:
        raise ApiError(413, "request_too_large", f"the file is larger than RILL_MAX_IMPORT_BYTES ({limit} bytes)")
    request.max_content_length = limit
    files = current().files
    return jsonify(import_into(store(), g.user, json_body(lists=True), lambda f: files.get(f, g.user) is not None))


@bp.get("/<thread_id>/export")
def export_thread(thread_id: str):
    """?format=markdown: the current path as Markdown; ?format=json (the default): the whole tree."""
    kind = request.args.get("format", "json")
    thread = thread_or_404(thread_id)
    name = f"rill-{thread_id[:12]}"
    if kind == "markdown":
        path = store().path(thread_id, g.user)
        body = markdown(thread, path, {f: row["name"] for f, row in files_of(path).items()})
        return body, 200, {"Content-Type": "text/markdown; charset=utf-8",
                           "Content-Disposition": f'attachment; filename="{name}.md"'}
    if kind != "json":
        raise ApiError(400, "invalid_request_error", f"format must be markdown or json, not {kind[:20]!r}")
    response = jsonify(export([thread]))
    response.headers["Content-Disposition"] = f'attachment; filename="{name}.json"'
    return response


@bp.post("/<thread_id>/fork")
def fork(thread_id: str):
    """A new thread with a copy of the path down to `leaf` (default: the current leaf)."""
    body = parse(ForkRequest, json_body()) if request.content_length else ForkRequest()
    thread = thread_or_404(thread_id)
    leaf = body.leaf or thread["current_leaf"]
    if leaf is None:
        raise ApiError(400, "invalid_request_error", "the thread is empty: there is nothing to fork")
    return jsonify(store().fork(g.user, thread_id, leaf)), 201


@bp.post("/<thread_id>/share")
def share(thread_id: str):
    """A read-only snapshot of the branch down to `leaf` (the current one when none) at an
    unguessable URL, until revoked; deleted with its thread."""
    body = parse(ShareRequest, json_body()) if request.content_length else ShareRequest()
    shared = store().share(g.user, thread_id, body.leaf)
    return jsonify({**shared, "url": url_for("shared.page", token=shared["token"], _external=True)}), 201


@bp.get("/<thread_id>/shares")
def shares(thread_id: str):
    thread_or_404(thread_id)
    return jsonify({"shares": store().shares_of(g.user, thread_id)})


@bp.delete("/<thread_id>/share/<token>")
def unshare(thread_id: str, token: str):
    if not store().unshare(g.user, thread_id, token):
        raise ApiError(404, "share_not_found", f"no share {token!r} of thread {thread_id!r}")
    return "", 204


@search_bp.get("")
def search():
    """The user's messages with every word of `q`, on any branch: {"hits": [{thread_id,
    message_id, snippet}]}; a snippet is HTML (the text escaped, the matches in <mark>)."""
    query = request.args.get("q", "")
    if len(query) > MAX_QUERY_CHARS:
        raise ApiError(400, "invalid_request_error", f"q is {len(query)} characters; the limit is {MAX_QUERY_CHARS}")
    return jsonify({"hits": store().search(g.user, query)})


@bp.get("/changes")
def changes():
    """An SSE stream of the user's revisions as changes happen (for a page without Socket.IO):
    `event: changed` with {"revision"}, first at once when the client is behind `since`, else a
    ping: the headers go out with the first bytes, and a client should not wait a keepalive to
    know that its stream is open."""
    since, user, rill = revision_arg("since"), g.user, current()
    now = rill.threads.revision(user)
    if since > now:
        raise ApiError(400, "invalid_request_error", f"since={since} is not a revision of yours (the newest is {now})")

    def events():
        after = since
        if now > after:
            after = now
            yield [format_event({"revision": now}, "changed")]
        else:
            yield [PING]
        for revision in rill.threads.feed.follow(user, after, rill.settings.keepalive_seconds):
            yield [PING if revision is None else format_event({"revision": revision}, "changed")]

    return sse_response(events(), encoder=lambda chunk: chunk)  # batches of one event, already encoded


shared_bp = Blueprint("shared", __name__)  # not among the protected blueprints: a share may be public
NOINDEX = {"X-Robots-Tag": "noindex, nofollow", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}


def snapshot_or_404(token: str) -> dict:
    rill = current()
    if not rill.settings.share_public:
        rill.auth.user_for_request()  # with auth on, any signed-in user; a 401 otherwise
    snapshot = rill.threads.shared(token)
    if snapshot is None:
        raise ApiError(404, "share_not_found", "this share link does not exist, or was revoked")
    return snapshot


@shared_bp.get("/api/shared/<token>")
def shared_json(token: str):
    """{title, messages, shared_at, files}: the snapshot, and the rows of the files it shows."""
    snapshot = snapshot_or_404(token)
    owner = snapshot.pop("owner")
    return jsonify({**snapshot, "files": current().files.rows(shared_file_ids(snapshot), owner)}), 200, NOINDEX


def shared_file_ids(snapshot: dict) -> set[str]:
    return {f for m in snapshot["messages"] for f in file_ids(m["parts"])}


@shared_bp.get("/api/shared/<token>/files/<file_id>", defaults={"preview": False})
@shared_bp.get("/api/shared/<token>/files/<file_id>/preview", defaults={"preview": True})
def shared_file(token: str, file_id: str, preview: bool):
    """A file the share link shows (pinned by it), or its preview; an image only as its preview,
    which has no camera data or place in it."""
    snapshot = snapshot_or_404(token)
    found = current().files.get(file_id, snapshot["owner"]) if file_id in shared_file_ids(snapshot) else None
    if found is None:
        raise ApiError(404, "file_not_found", f"this share link shows no file {file_id!r}")
    response = serve(found, preview or found["type"].startswith("image/"))
    response.headers.update(NOINDEX)  # not kept by the browser: a revoked link shows nothing more
    return response


@shared_bp.get("/s/<token>")
def page(token: str):
    """The page a share link opens: static/js/shared.js reads /api/shared/<token> and shows it."""
    return render_template("shared.html", token=token), 200, NOINDEX
