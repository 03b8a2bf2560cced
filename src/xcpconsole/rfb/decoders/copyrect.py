"""CopyRect encoding (1): copy a rectangle of the frame buffer to another place."""

from __future__ import annotations

from ...errors import ProtocolError
from ..constants import Encoding
from ..pixelformat import RGB, PixelFormat
from ._common import check_rect


class CopyRectDecoder:
    encoding = int(Encoding.COPYRECT)

    def decode(self, data: memoryview, x: int, y: int, w: int, h: int,
               pf: PixelFormat, fb: RGB) -> int | None:
        check_rect("CopyRect", x, y, w, h, fb)
        if len(data) < 4:
            return None
        sx = int.from_bytes(data[0:2], "big")
        sy = int.from_bytes(data[2:4], "big")
        fh, fw = fb.shape[0], fb.shape[1]
        if sx + w > fw or sy + h > fh:
            raise ProtocolError(
                f"CopyRect source {w}x{h}+{sx}+{sy} outside the {fw}x{fh} frame buffer"
            )
        # NumPy copies through a temporary when source and destination overlap
        fb[y:y + h, x:x + w] = fb[sy:sy + h, sx:sx + w]
        return 4
