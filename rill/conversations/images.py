"""Images, decoded with Pillow: checked when they arrive, and an upload normalised once for the
models (EXIF and other metadata dropped, turned upright, WebP and GIF made PNG or JPEG, the long
side at most RILL_IMAGE_MAX_SIDE pixels). The original stays what its owner downloads."""
from __future__ import annotations

import io
from pathlib import Path

from ..providers.base import Image
from ..refusals import Refused

FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}


def undecodable(name: str, err: Exception) -> Refused:
    return Refused("invalid_request_error", f"{name!r} does not decode as an image: {err}")


def checked(data: bytes, name: str, detail: str | None = None) -> Image:
    """Bytes sent inline (the /v1 APIs), as they are, once they are known to decode as an image
    of a type every vision API takes."""
    from PIL import Image as Pillow, UnidentifiedImageError

    try:
        with Pillow.open(io.BytesIO(data)) as image:
            kind = FORMATS.get(image.format)
            image.load()  # every pixel decodes, not only the header
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Pillow.DecompressionBombError) as err:
        raise undecodable(name, err) from None
    if kind is None:
        raise Refused("unsupported_file_type", f"{name!r} is a {image.format} image: send PNG, JPEG, WebP or GIF")
    return Image(data, kind, name, detail)


def normalise(path: str | Path, name: str, max_side: int) -> tuple[bytes, int, int]:
    """An upload as models get it: (PNG or JPEG bytes, the original's width and height)."""
    from PIL import Image as Pillow, ImageOps, UnidentifiedImageError

    try:
        with Pillow.open(path) as image:
            size = image.size
            image.seek(0)  # an animated GIF: its first frame
            upright = ImageOps.exif_transpose(image)
            upright.thumbnail((max_side, max_side), Pillow.Resampling.LANCZOS)
            alpha = upright.mode in ("RGBA", "LA", "PA") or "transparency" in upright.info
            out = io.BytesIO()
            if alpha or image.format in ("PNG", "GIF"):  # drawings and screenshots stay lossless
                upright.convert("RGBA" if alpha else "RGB").save(out, "PNG", optimize=False)
            else:
                upright.convert("RGB").save(out, "JPEG", quality=90)
            return out.getvalue(), *size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Pillow.DecompressionBombError) as err:
        raise undecodable(name, err) from None


def normalised_type(head: bytes) -> str:
    """A normalised image's type, by its first bytes: PNG or JPEG."""
    return "image/png" if head.startswith(b"\x89PNG") else "image/jpeg"


def kept(data: bytes, name: str) -> Image:
    """A normalised upload read back."""
    return Image(data, normalised_type(data), name)
