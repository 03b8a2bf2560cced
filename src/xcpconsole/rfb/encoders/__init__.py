"""Server-side rectangle encoders, one module per RFB encoding.

Raw and Hextile are functions ``encode(rgb_region, pf) -> bytes``; ZRLE is a
per-connection object (its zlib stream spans rectangles); CopyRect encodes a
source position.  All honour the client's pixel format.
"""

from __future__ import annotations

from . import copyrect, hextile, raw
from .copyrect import CopyRegion
from .zrle import ZrleEncoder

__all__ = ["CopyRegion", "ZrleEncoder", "copyrect", "hextile", "raw"]
