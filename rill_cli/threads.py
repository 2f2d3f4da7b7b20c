"""`rill threads`: the conversations kept on a Rill server, from the terminal (list, search,
show, export), on the same API as the web UI (/api/threads, /api/search)."""
from __future__ import annotations

import html
import re

import httpx2

from .errors import ClientError, http_error


class ThreadsClient:
    def __init__(self, url: str, token: str | None):
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx2.Client(headers=headers, timeout=30.0)

    def get(self, path: str, **params):
        try:
            response = self.http.get(f"{self.url}{path}", params=params)
        except httpx2.HTTPError as exc:
            raise ClientError(f"cannot reach Rill at {self.url} ({exc})")
        if response.status_code != 200:
            try:
                message = response.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = response.text[:200] or response.reason_phrase
            raise http_error(response.status_code, message, response.headers.get("Retry-After"))
        return response

    def list(self) -> list[dict]:
        threads = self.get("/api/threads").json()["threads"]
        return sorted(threads, key=lambda t: t["updated_at"], reverse=True)

    def search(self, words: str) -> list[dict]:
        return self.get("/api/search", q=words).json()["hits"]

    def markdown(self, thread_id: str) -> str:
        return self.get(f"/api/threads/{thread_id}/export", format="markdown").text

    def export(self, thread_id: str, kind: str) -> str:
        return self.get(f"/api/threads/{thread_id}/export", format=kind).text


def plain(snippet: str) -> str:
    """A search snippet (HTML: matches in <mark>) as terminal text, matches in [brackets]."""
    return html.unescape(re.sub(r"</?mark>", lambda m: "]" if m.group(0) == "</mark>" else "[", snippet))
