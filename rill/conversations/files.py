"""Uploaded files: a row each (owner, name, type, size, pixel size) in the conversation database,
the bytes once per SHA-256 under `<directory>/<first two hex digits>/<sha256>`.

The bytes are streamed to disk while they are hashed, never held whole; the type is sniffed from
them (a PNG named notes.pdf is a PNG) and only what Rill can read is kept: images, PDFs, text.
Several workers may share the directory: a blob is moved into place atomically, and a blob is
removed only by the transaction that deletes its last row (on PostgreSQL under a lock on its hash,
which an upload of the same bytes takes too).
"""
from __future__ import annotations

import codecs
import hashlib
import json
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import BinaryIO

import filetype
from sqlalchemy import delete, func, insert, select

from ..refusals import Refused
from ..runtime import off_hub
from ..providers.base import Image
from .attachments import Count, document, image_path, keep, pages_path, pdf_pages
from .images import kept, normalise
from .schema import files, message_files, share_files
from .store import ThreadStore, iso

CHUNK = 1 << 16
SNIFF_BYTES = 8192
IMAGES = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WebP", "image/gif": "GIF"}
DOCUMENTS = {"application/pdf": "PDF"}
TEXT = "text/plain"
ACCEPTED = "images (PNG, JPEG, WebP, GIF), PDFs and text files (UTF-8)"


class FileStore:
    def __init__(self, threads: ThreadStore, directory: Path, image_max_side: int = 1024):
        self.threads = threads
        self.image_max_side = image_max_side
        self.directory = Path(directory)
        self.incoming = self.directory / "incoming"  # on the same disk, so that a rename moves a blob
        self.incoming.mkdir(parents=True, exist_ok=True)
        threads.released = self.forget_unused  # a file goes with the last message that refers to it

    def save(self, owner: str, name: str, stream: BinaryIO, limit: int) -> dict:
        """Store an upload of at most `limit` bytes: its public row. Refused: too large, a type Rill
        does not read, an image that does not decode."""
        handle, temp = tempfile.mkstemp(dir=self.incoming)
        try:
            with os.fdopen(handle, "wb") as out:
                sha256, size, head, text = copy(stream, out, limit)
            kind = sniff(head, text)
            if kind is None:
                found = filetype.guess_mime(head) or "binary data"
                raise Refused("unsupported_file_type", f"{name!r} is {found}: Rill reads {ACCEPTED}")
            width = height = None
            if kind in IMAGES:  # decoded once, now: what models get is kept beside the original
                for_models, width, height = off_hub(normalise, temp, name, self.image_max_side)
            pages = off_hub(pdf_pages, Path(temp), name) if kind in DOCUMENTS else None
            row = {"id": uuid.uuid4().hex, "owner": owner, "sha256": sha256, "type": kind, "size": size,
                   "name": name, "width": width, "height": height, "created": time.time()}
            with self.threads.writing() as conn:
                self._lock_blob(conn, sha256)
                blob = self.blob(sha256)
                blob.parent.mkdir(exist_ok=True)
                os.replace(temp, blob)  # the same bytes again: the same blob
                if pages is not None:
                    keep(pages_path(blob), json.dumps(pages).encode())
                if kind in IMAGES:
                    keep(image_path(blob), for_models)
                conn.execute(insert(files).values(**row))
            return public(row)
        finally:
            Path(temp).unlink(missing_ok=True)

    def get(self, file_id: str, owner: str) -> dict | None:
        with self.threads.engine.connect() as conn:
            row = conn.execute(select(files).where(files.c.id == file_id, files.c.owner == owner)).first()
            return None if row is None else public(row._mapping)

    def rows(self, file_ids: set[str], owner: str) -> dict[str, dict]:
        """The public rows of those of the files that are the owner's, by id."""
        with self.threads.engine.connect() as conn:
            found = conn.execute(select(files).where(files.c.id.in_(file_ids), files.c.owner == owner)).all()
            return {row.id: public(row._mapping) for row in found}

    def for_model(self, file_id: str, owner: str, limit: int, count: Count) -> str | Image:
        """What the file adds to a question (attachments.py): its text, or an image."""
        row = self.get(file_id, owner)
        if row is None:  # deleted since it was sent
            return f"[a file that was deleted: {file_id}]"
        if row["type"] not in IMAGES:
            return document(row, self.blob(row["sha256"]), limit, count)
        return kept(self.preview(row).read_bytes(), row["name"])

    def preview(self, row: dict) -> Path:
        """An image as models get it (upright, no metadata, at most image_max_side): also what a
        thread shows, smaller than most originals."""
        blob = self.blob(row["sha256"])
        if not image_path(blob).exists():  # uploaded by a release that kept only the original
            keep(image_path(blob), off_hub(normalise, blob, row["name"], self.image_max_side)[0])
        return image_path(blob)

    def blob(self, sha256: str) -> Path:
        return self.directory / sha256[:2] / sha256

    def delete(self, file_id: str, owner: str) -> bool:
        """The row, and the bytes once no other row has them."""
        with self.threads.writing() as conn:
            sha256 = conn.scalar(select(files.c.sha256).where(files.c.id == file_id, files.c.owner == owner))
            if sha256 is not None:
                self._drop(conn, file_id, sha256)
            return sha256 is not None

    def forget_unused(self, file_ids: set[str]) -> None:
        """Of the files deleted messages (or revoked share links) referred to, those no message and
        no share link refers to any more."""
        if not file_ids:
            return
        with self.threads.writing() as conn:
            used = set(conn.scalars(select(message_files.c.file_id).where(message_files.c.file_id.in_(file_ids))
                                    .union(select(share_files.c.file_id).where(share_files.c.file_id.in_(file_ids)))))
            for file_id, sha256 in conn.execute(select(files.c.id, files.c.sha256)
                                                .where(files.c.id.in_(file_ids - used))).all():
                self._drop(conn, file_id, sha256)

    def _drop(self, conn, file_id: str, sha256: str) -> None:
        self._lock_blob(conn, sha256)
        conn.execute(delete(files).where(files.c.id == file_id))
        if not conn.scalar(select(func.count()).select_from(files).where(files.c.sha256 == sha256)):
            for path in (self.blob(sha256), pages_path(self.blob(sha256)), image_path(self.blob(sha256))):
                path.unlink(missing_ok=True)

    @staticmethod
    def _lock_blob(conn, sha256: str) -> None:
        """On PostgreSQL, uploads and deletes of the same bytes take turns (SQLite has one writer)."""
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({int(sha256[:15], 16)})")


def too_large(limit: int) -> Refused:
    return Refused("request_too_large", f"the file is larger than RILL_MAX_UPLOAD_BYTES ({limit:,} bytes)")


def copy(stream: BinaryIO, out: BinaryIO, limit: int) -> tuple[str, int, bytes, bool]:
    """Copy in chunks: (sha256, size, the first SNIFF_BYTES, whether it is all UTF-8 text)."""
    digest, size, head = hashlib.sha256(), 0, b""
    decoder, text = codecs.getincrementaldecoder("utf-8")(), True
    while chunk := stream.read(CHUNK):
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        digest.update(chunk)
        out.write(chunk)
        if len(head) < SNIFF_BYTES:
            head += chunk[: SNIFF_BYTES - len(head)]
        if text:
            try:
                decoder.decode(chunk)
                text = b"\0" not in chunk
            except UnicodeDecodeError:
                text = False
    if text:
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            text = False
    return digest.hexdigest(), size, head, text


def sniff(head: bytes, text: bool) -> str | None:
    """The type by the bytes: an image or PDF Rill reads, UTF-8 text, or None."""
    found = filetype.guess_mime(head)
    if found in IMAGES or found in DOCUMENTS:
        return found
    if found is None and text:
        return TEXT
    return None


def public(row) -> dict:
    out = {"id": row["id"], "name": row["name"], "type": row["type"], "size": row["size"], "sha256": row["sha256"],
           "created_at": iso(row["created"])}
    if row["width"] is not None:
        out.update(width=row["width"], height=row["height"])
    return out
