"""Rectangle decoders, one module per RFB encoding, registered by encoding number.

A decoder is fed the bytes of one rectangle's payload (starting at the payload's
first byte) and paints the rectangle into the RGB frame buffer.  Decoders with
connection state (the zlib streams of Zlib, Tight and ZRLE) must not be shared
between connections, hence :func:`make_decoders` builds fresh instances.
"""

from __future__ import annotations

from typing import Protocol

from ..pixelformat import RGB, PixelFormat
from .copyrect import CopyRectDecoder
from .hextile import HextileDecoder
from .raw import RawDecoder
from .rre import RreDecoder
from .tight import TightDecoder
from .zlibenc import ZlibDecoder
from .zrle import ZrleDecoder

__all__ = [
    "CopyRectDecoder",
    "HextileDecoder",
    "RawDecoder",
    "RectDecoder",
    "RreDecoder",
    "TightDecoder",
    "ZlibDecoder",
    "ZrleDecoder",
    "make_decoders",
]


class RectDecoder(Protocol):
    encoding: int

    def decode(self, data: memoryview, x: int, y: int, w: int, h: int,
               pf: PixelFormat, fb: RGB) -> int | None:
        """Decode one rectangle whose payload starts at ``data[0]``.

        Returns the number of bytes consumed once the whole rectangle is decoded and
        written into ``fb[y:y+h, x:x+w]``; None while ``data`` does not yet hold the
        whole payload (call again with the same start and more bytes).  Raises
        ProtocolError / LimitExceededError on malformed or oversized input.
        """
        ...


def make_decoders() -> dict[int, RectDecoder]:
    """Fresh decoders for one connection, keyed by encoding number."""
    decoders: list[RectDecoder] = [
        RawDecoder(), CopyRectDecoder(), RreDecoder(), HextileDecoder(),
        ZlibDecoder(), TightDecoder(), ZrleDecoder(),
    ]
    return {d.encoding: d for d in decoders}

