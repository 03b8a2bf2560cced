"""Where a screenshot goes: the format from the file name, ``-`` for stdout, written
atomically with the mode the umask gives (like any file the user's tools write).

Checked before connecting (:func:`image_format`, :func:`check_destination`), so a
typo in the name costs no login.  Pillow is imported only when a picture is encoded.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import NotFoundError, UsageError, XcpConsoleError

STDOUT = "-"

#: file name extension -> Pillow format
FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".ppm": "PPM", ".webp": "WEBP"}
#: the formats ``--quality`` applies to
LOSSY = ("JPEG", "WEBP")
DEFAULT_QUALITY = 90

if TYPE_CHECKING:
    from ..rfb.pixelformat import RGB


def image_format(name: str) -> str:
    """The Pillow format ``name`` asks for (``-``: PNG); UsageError for anything else."""
    if name == STDOUT:
        return "PNG"
    if Path(name).is_dir():
        raise XcpConsoleError(f"cannot write {name}: it is a directory (name a file in it)")
    fmt = FORMATS.get(os.path.splitext(name)[1].lower())
    if fmt is None:
        raise UsageError(f"cannot tell the image format of {name!r} from its extension: "
                         f"use {', '.join(sorted(FORMATS))} (or - for PNG on stdout)")
    if fmt == "WEBP":
        from PIL import features

        if not features.check("webp"):
            raise UsageError("this Pillow was built without WebP: use .png or .jpg")
    return fmt


def check_destination(name: str, fmt: str, quality: int | None) -> None:
    """Refuse now what writing would refuse later (a directory, no such directory...)."""
    if quality is not None and fmt not in LOSSY:
        raise UsageError(f"--quality applies to JPEG and WebP, not {fmt}")
    if name == STDOUT:
        if sys.stdout.isatty():
            raise UsageError("not writing a picture to a terminal: redirect stdout "
                             "(> shot.png) or name a file")
        return
    parent = Path(name).parent
    if not parent.is_dir():
        raise NotFoundError(f"cannot write {name}: no directory {str(parent)!r}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise XcpConsoleError(f"cannot write {name}: the directory {str(parent)!r} is not "
                              "writable")


def encode(rgb: RGB, fmt: str, quality: int | None = None) -> bytes:
    """An RGB frame buffer (``uint8`` array ``(h, w, 3)``) as the bytes of a ``fmt`` file."""
    from PIL import Image

    image = Image.fromarray(rgb, "RGB")
    out = io.BytesIO()
    if fmt == "PNG":
        # zlib level 1: 8x faster than Pillow's default 6 on busy screens
        # (0.05 s vs 0.38 s at 1024x768), for a file about 20 % larger
        image.save(out, format="PNG", compress_level=1)
    elif fmt in LOSSY:
        image.save(out, format=fmt, quality=quality or DEFAULT_QUALITY)
    else:
        image.save(out, format=fmt)
    return out.getvalue()


def current_umask() -> int:
    """The process umask (reading it means setting it: done once, before any thread)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_image(name: str, data: bytes, umask: int) -> None:
    """``data`` to stdout (``-``) or to ``name``: a temporary file renamed over it, mode
    ``0666 & ~umask``; XcpConsoleError (one line) if the system refuses."""
    if name == STDOUT:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    target = Path(name)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp",
                                   dir=target.parent)
    except OSError as exc:
        raise XcpConsoleError(f"cannot write {name}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise XcpConsoleError(f"cannot write {name}: {exc.strerror or exc}") from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
