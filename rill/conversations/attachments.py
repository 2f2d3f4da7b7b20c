"""What a document becomes for the model: a text file a fenced block under its name, a PDF its text
page by page under its name; each cut at RILL_FILE_TOKEN_LIMIT with a note that says where, never
silently. A PDF's pages are read once, when it is uploaded, and kept beside its bytes (images:
images.py)."""
from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Callable

from ..providers.token_count import count_tokens
from ..refusals import Refused

Count = Callable[[str], int]  # tokens in a text


def tokens(text: str) -> int:
    """Tokens in a file's text, as the default model's vocabulary counts them."""
    return count_tokens(text, len(text) // 4 + 1)


def pdf_pages(path: Path, name: str) -> list[str]:
    """The text of each page; a 400 for a file that does not read as a PDF."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(path)
        if reader.is_encrypted:
            raise Refused("invalid_request_error", f"{name!r} is an encrypted PDF: Rill cannot read its text")
        return [page.extract_text() or "" for page in reader.pages]
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as err:
        raise Refused("invalid_request_error", f"{name!r} does not read as a PDF: {err}") from None


def keep(path: Path, data: bytes) -> None:
    """What is read from a blob once (a PDF's pages, an image for models), kept beside it; moved
    into place whole, so two workers writing it at once leave one whole copy."""
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(handle, "wb") as out:
        out.write(data)
    os.replace(temp, path)


def pages_path(blob: Path) -> Path:
    return blob.with_name(blob.name + ".pages.json")


def image_path(blob: Path) -> Path:
    return blob.with_name(blob.name + ".image")


def fenced(text: str) -> str:
    """A Markdown fence longer than any run of backticks inside."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}\n{text}\n{fence}"


def cut(units: list[str], limit: int, count: Count) -> tuple[list[str], int | None]:
    """The units (pages, lines) that fit in `limit` tokens, and the number of the first one cut."""
    used = 0
    for n, unit in enumerate(units):
        used += count(unit)
        if used > limit:
            return units[:n], n + 1
    return units, None


def document(row: dict, blob: Path, limit: int, count: Count) -> str:
    """The text a PDF or a text file adds to its message."""
    if row["type"] == "application/pdf":
        return pdf_text(row["name"], json.loads(pages_path(blob).read_text()), limit, count)
    return text_file(row["name"], blob.read_text(encoding="utf-8"), limit, count)


def pdf_text(name: str, pages: list[str], limit: int, count: Count) -> str:
    kept, cut_at = cut(pages, limit, count)
    body = "\n\n".join(f"--- page {n} ---\n{text}" for n, text in enumerate(kept, 1))
    note = f"\n[truncated at page {cut_at} of {len(pages)}: RILL_FILE_TOKEN_LIMIT is {limit:,} tokens]" if cut_at else ""
    return f"{name} (PDF, {len(pages)} pages):\n{fenced(body)}{note}"


def text_file(name: str, text: str, limit: int, count: Count) -> str:
    lines = text[: limit * 16].splitlines(keepends=True)  # far past the cap already: not counted
    kept, cut_at = cut(lines, limit, count)
    if cut_at is None and len(text) > limit * 16:
        cut_at = len(lines) + 1
    note = f"\n[truncated at line {cut_at}: RILL_FILE_TOKEN_LIMIT is {limit:,} tokens]" if cut_at else ""
    return f"{name}:\n{fenced(''.join(kept).rstrip(chr(10)))}{note}"


def document_text(name: str, data: bytes, limit: int, count: Count) -> str:
    """A document sent inline (the /v1 APIs' file and document parts): a PDF or UTF-8 text."""
    if data.startswith(b"%PDF"):
        with tempfile.NamedTemporaryFile(suffix=".pdf") as temp:
            temp.write(data)
            temp.flush()
            return pdf_text(name, pdf_pages(Path(temp.name), name), limit, count)
    try:
        return text_file(name, data.decode("utf-8"), limit, count)
    except UnicodeDecodeError:
        raise Refused("unsupported_file_type", f"{name!r} is neither a PDF nor UTF-8 text") from None
