"""Finding a user's messages by their words, on every branch of every thread: SQLite's FTS5 or
PostgreSQL's text search. Snippets come as HTML: the text escaped, each match in <mark>."""
from __future__ import annotations

import html
import re

from sqlalchemy import text as sql
from sqlalchemy.engine import Connection

from ..refusals import Refused

WORDS = re.compile(r"\w+", re.UNICODE)
OPEN, CLOSE = "\x02", "\x03"  # match markers no message text contains, swapped for <mark> after escaping
MAX_WORDS = 16


def terms(query: str) -> list[str]:
    words = WORDS.findall(query)
    if not words:
        raise Refused("invalid_request_error", "q: give at least one word to search for")
    if len(words) > MAX_WORDS:
        raise Refused("invalid_request_error", f"q: {len(words)} words; at most {MAX_WORDS}")
    return words


def search(conn: Connection, owner: str, query: str, limit: int) -> list[dict]:
    """Messages that have every word (a word may be the start of a longer one), best first."""
    words = terms(query)
    if conn.dialect.name == "postgresql":  # ts_headline reads the text as HTML: the snippet is made here
        rows = conn.execute(sql(
            "SELECT m.thread_id, m.id, m.text FROM messages m JOIN threads t ON t.id = m.thread_id, "
            "to_tsquery('simple', :query) q WHERE t.owner = :owner AND m.search @@ q "
            "ORDER BY ts_rank(m.search, q) DESC, m.created DESC LIMIT :limit"),
            {"query": " & ".join(f"{w}:*" for w in words), "owner": owner, "limit": limit}).all()
        rows = [(thread_id, message_id, snippet(text, words)) for thread_id, message_id, text in rows]
    else:
        rows = conn.execute(sql(
            "SELECT m.thread_id, m.id, snippet(messages_fts, 0, :open, :close, '…', 16) AS snippet "
            "FROM messages_fts JOIN messages m ON m.rowid = messages_fts.rowid "
            "JOIN threads t ON t.id = m.thread_id "
            "WHERE messages_fts MATCH :query AND t.owner = :owner ORDER BY rank LIMIT :limit"),
            {"query": " ".join('"' + w.replace('"', '""') + '"*' for w in words), "owner": owner,
             "open": OPEN, "close": CLOSE, "limit": limit}).all()
    return [{"thread_id": thread_id, "message_id": message_id, "snippet": marked(snippet)}
            for thread_id, message_id, snippet in rows]


def snippet(text: str, words: list[str], width: int = 120) -> str:
    """Up to `width` characters around the first match, each word's matches marked."""
    found = re.compile(r"\b(" + "|".join(re.escape(w) for w in words) + r")\w*", re.IGNORECASE | re.UNICODE)
    first = found.search(text)
    start = max(0, (first.start() if first else 0) - width // 3)
    piece = text[start:start + width]
    piece = found.sub(lambda m: OPEN + m.group(0) + CLOSE, piece)
    return ("…" if start else "") + piece + ("…" if start + width < len(text) else "")


def marked(snippet: str) -> str:
    return html.escape(snippet).replace(OPEN, "<mark>").replace(CLOSE, "</mark>")
