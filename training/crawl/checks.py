"""What makes a fetched file a photo worth keeping: it decodes completely (a truncated file or a
decompression bomb is refused with its reason), it is a photo type, it is large enough; and its
EXIF stays, less the GPS block (a crawled photo's position is not the fleet's and may be a
person's home)."""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

import imagehash
import piexif
from PIL import Image, ImageFile

TYPES = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "TIFF": ".tif"}
MAX_PIXELS = 80_000_000  # above this a file is a decompression bomb, whatever its bytes say (> 9000x9000)
MAX_BYTES = 40 << 20


class Refused(ValueError):
    """A file not kept, with the rule that refused it (`reason`) and the detail."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


@dataclass(frozen=True)
class Photo:
    data: bytes  # what is stored: the original bytes, GPS removed from a JPEG's EXIF
    sha256: str  # of the stored bytes
    phash: str  # perceptual hash (hex, 64 bits)
    width: int
    height: int
    format: str  # JPEG, PNG, ...
    exif: bool  # EXIF kept

    @property
    def suffix(self) -> str:
        return TYPES[self.format]


def check(data: bytes, min_side: int = 480, strip_gps: bool = True) -> Photo:
    """The photo in `data`, or Refused: `too_large`, `not_an_image`, `type`, `bomb`, `truncated`,
    `too_small`."""
    if len(data) > MAX_BYTES:
        raise Refused("too_large", f"{len(data)} bytes (at most {MAX_BYTES})")
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as exc:
            raise Refused("bomb", str(exc)) from None
        except Image.DecompressionBombWarning as exc:
            raise Refused("bomb", str(exc)) from None
        except Exception as exc:  # Pillow says UnidentifiedImageError, or worse
            raise Refused("not_an_image", type(exc).__name__) from None
        if img.format not in TYPES:
            raise Refused("type", f"{img.format} is not a photo type ({', '.join(TYPES)})")
        width, height = img.size
        if width * height > MAX_PIXELS:
            raise Refused("bomb", f"{width}x{height} pixels from {len(data)} bytes (at most {MAX_PIXELS} pixels)")
        try:
            img.load()  # every pixel: a truncated file fails here
        except Image.DecompressionBombWarning as exc:
            raise Refused("bomb", str(exc)) from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise Refused("truncated", str(exc)[:120]) from None
    if min(width, height) < min_side:
        raise Refused("too_small", f"{width}x{height} (the shorter side under {min_side} px)")
    stored, exif = data, False
    if img.format == "JPEG" and "exif" in img.info:
        exif = True
        if strip_gps:
            stored = _without_gps(data)
    return Photo(stored, hashlib.sha256(stored).hexdigest(), str(imagehash.phash(img.convert("RGB"))),
                 width, height, img.format, exif)


def _without_gps(jpeg: bytes) -> bytes:
    """The JPEG with its EXIF GPS block removed, nothing else changed (no re-encoding)."""
    try:
        exif = piexif.load(jpeg)
    except Exception:  # EXIF piexif cannot parse: drop it all rather than keep a position
        out = io.BytesIO()
        piexif.remove(jpeg, out)
        return out.getvalue()
    if not exif.get("GPS"):
        return jpeg
    exif["GPS"] = {}
    out = io.BytesIO()
    piexif.insert(piexif.dump(exif), jpeg, out)
    return out.getvalue()
