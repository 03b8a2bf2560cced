"""CopyRect encoding (1): the client copies a rectangle of its own frame buffer.

Cheap for scrolling consoles: a scroll is one CopyRect plus the new line.
"""

from __future__ import annotations

import struct
from typing import NamedTuple


class CopyRegion(NamedTuple):
    """Copy the ``width`` x ``height`` rectangle at (src_x, src_y) to (x, y)."""

    src_x: int
    src_y: int
    x: int
    y: int
    width: int
    height: int


def encode(src_x: int, src_y: int) -> bytes:
    """CopyRect payload: the source position (the rect header holds destination and size)."""
    return struct.pack(">HH", src_x, src_y)
