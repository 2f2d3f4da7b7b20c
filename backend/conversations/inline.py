"""Media sent inline on the /v1 APIs instead of uploaded: base64 bytes (or a data: URL), or an
http(s) URL. Rill never reads a file:// URL, and makes no request to a host that
RILL_MEDIA_URL_ALLOWLIST does not name: the refusal comes first."""
from __future__ import annotations

import base64
import binascii
from urllib.parse import urlsplit

from ..config import comma_list
from ..refusals import Refused
from .attachments import document_text, not_multimodal, text_file, tokens
from .files import too_large


def decoded(data: str, limit: int, what: str) -> bytes:
    """The bytes of base64 text or of a base64 data: URL, at most `limit` of them."""
    if data.startswith("data:"):
        header, _, data = data.partition(",")
        if not header.endswith(";base64"):
            raise Refused("invalid_request_error", f"{what}: a data: URL must be base64 (data:<type>;base64,...)")
    if len(data) * 3 // 4 > limit:
        raise too_large(limit)
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise Refused("invalid_request_error", f"{what}: not valid base64") from None


def check_url(url: str, allowlist: list[str], what: str) -> None:
    """A data: URL, or an http(s) URL whose host is allowed; anything else is refused unread."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "data":
        return
    if scheme not in ("http", "https"):
        raise Refused("invalid_request_error", f"{what}: a data: URL or an http(s) URL, not {scheme or 'a path'}"
                                               f"{':' if scheme else ''} (Rill never reads files by URL)")
    if (parts.hostname or "").lower() not in allowlist:
        raise Refused("invalid_request_error", f"{what}: Rill fetches media only from the hosts in "
                                               f"RILL_MEDIA_URL_ALLOWLIST, and {parts.hostname!r} is not one: send the "
                                               "bytes as a data: URL (base64) instead")


class InlineMedia:
    """What the /v1 APIs' media parts become for one request's model: a document its text (as
    an upload's would be), an image a refusal (no model Rill serves reads images yet) once its
    URL or bytes have been checked."""

    def __init__(self, files, owner: str, settings, model: str):
        self.files, self.owner, self.model = files, owner, model
        self.allowlist = [host.lower() for host in comma_list(settings.media_url_allowlist)]
        self.max_bytes, self.token_limit = settings.max_upload_bytes, settings.file_token_limit

    def image(self, what: str, url: str | None = None, data: str | None = None) -> None:
        if url is not None:
            check_url(url, self.allowlist, what)
        if data is not None or (url or "").startswith("data:"):
            decoded(data if data is not None else url, self.max_bytes, what)
        raise not_multimodal(self.model, what)

    def document(self, what: str, name: str, data: str | None = None, file_id: str | None = None,
                 text: str | None = None) -> str:
        if file_id is not None:
            if self.files.get(file_id, self.owner) is None:
                raise Refused("invalid_request_error", f"{what}: no file {file_id!r} of yours (POST /api/files)")
            return self.files.for_model(file_id, self.owner, self.token_limit, tokens, self.model)
        if text is not None:
            return text_file(name, text, self.token_limit, tokens)
        return document_text(name, decoded(data or "", self.max_bytes, what), self.token_limit, tokens)
