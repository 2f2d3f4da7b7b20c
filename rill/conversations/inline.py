"""Media sent inline on the /v1 APIs instead of uploaded: base64 bytes (or a data: URL), or an
http(s) URL. Rill never reads a file:// URL, and makes no request to a host that
RILL_MEDIA_URL_ALLOWLIST does not name: the refusal comes first. An allowed URL is fetched once,
without following redirects, and the model gets its bytes like any others."""
from __future__ import annotations

import base64
import binascii
import urllib.error
import urllib.request
from urllib.parse import urlsplit

import filetype

from ..config import comma_list
from ..refusals import Refused, not_multimodal
from ..runtime import off_hub
from ..providers.base import Image
from .attachments import document_text, text_file, tokens
from .files import too_large
from .images import checked


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


MAX_IMAGES = 20  # in one request: each may be fetched and decoded


class NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        fp.close()
        raise Refused("invalid_request_error", f"{req.full_url} redirects to {newurl}: Rill does not follow media "
                                               "redirects; give the final URL")


def fetched(url: str, limit: int, timeout: float, what: str) -> bytes:
    """The body of an allowed URL, at most `limit` bytes."""
    opener = urllib.request.build_opener(NoRedirects)
    try:
        with opener.open(urllib.request.Request(url, headers={"User-Agent": "Rill"}), timeout=timeout) as response:
            body = response.read(limit + 1)
    except urllib.error.HTTPError as err:
        err.close()
        raise Refused("invalid_request_error", f"{what}: {url} answered HTTP {err.code}") from None
    except (urllib.error.URLError, OSError, ValueError) as err:
        raise Refused("invalid_request_error", f"{what}: {url} could not be read: "
                                               f"{getattr(err, 'reason', None) or err}") from None
    if len(body) > limit:
        raise too_large(limit)
    return body


class InlineMedia:
    """What the /v1 APIs' media parts become for one request's model: a document its text (as an
    upload's would be), an image its bytes, checked to decode; for a model that reads text only an
    image is refused before anything is fetched or decoded."""

    def __init__(self, files, owner: str, settings, model: str, reads_images: bool):
        self.files, self.owner, self.model, self.reads_images = files, owner, model, reads_images
        self.allowlist = [host.lower() for host in comma_list(settings.media_url_allowlist)]
        self.max_bytes, self.token_limit = settings.max_upload_bytes, settings.file_token_limit
        self.timeout = settings.upstream_timeout_seconds
        self.images = 0

    def image(self, what: str, url: str | None = None, data: str | None = None, detail: str | None = None) -> Image:
        if url is not None:
            check_url(url, self.allowlist, what)
        self._count(what)
        return off_hub(checked, self._bytes(what, url, data), what, detail)  # decoding stalls no other client

    def _count(self, what: str) -> None:
        if not self.reads_images:
            raise not_multimodal(self.model, what)
        self.images += 1
        if self.images > MAX_IMAGES:
            raise Refused("invalid_request_error", f"{what}: at most {MAX_IMAGES} images in a request")

    def _bytes(self, what: str, url: str | None, data: str | None) -> bytes:
        """Base64 `data`, or what `url` (a data: URL, or an allowed http(s) one) holds."""
        if url is None:
            return decoded(data or "", self.max_bytes, what)
        check_url(url, self.allowlist, what)
        if urlsplit(url).scheme.lower() in ("http", "https"):
            return fetched(url, self.max_bytes, self.timeout, what)
        return decoded(url, self.max_bytes, what)

    def document(self, what: str, name: str, data: str | None = None, file_id: str | None = None,
                 text: str | None = None, url: str | None = None) -> str | Image:
        """A file part: its text, or an image (an uploaded picture, or picture bytes)."""
        if file_id is not None:
            if self.files.get(file_id, self.owner) is None:
                raise Refused("invalid_request_error", f"{what}: no file {file_id!r} of yours (POST /api/files)")
            return self.files.for_model(file_id, self.owner, self.token_limit, tokens)
        if text is not None:
            return text_file(name, text, self.token_limit, tokens)
        raw = self._bytes(what, url, data)
        if (filetype.guess_mime(raw[:8192]) or "").startswith("image/"):
            self._count(what)
            return off_hub(checked, raw, what)
        return document_text(name, raw, self.token_limit, tokens)
