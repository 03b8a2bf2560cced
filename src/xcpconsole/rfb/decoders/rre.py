"""RRE encoding (2): a background colour plus solid sub-rectangles (painted in order)."""

from __future__ import annotations

import numpy as np

from ...errors import ProtocolError
from ..constants import Encoding
from ..pixelformat import RGB, PixelFormat
from ._common import check_rect, paint_rects, pixel_reader, read_u32


class RreDecoder:
    encoding = int(Encoding.RRE)

    def decode(self, data: memoryview, x: int, y: int, w: int, h: int,
               pf: PixelFormat, fb: RGB) -> int | None:
        check_rect("RRE", x, y, w, h, fb)
        reader = pixel_reader(pf)
        bpp = reader.nbytes
        if len(data) < 4 + bpp:
            return None
        count = read_u32(data, 0)
        if count > w * h + 1024:  # more than one per pixel is pointless; bounds buffering
            raise ProtocolError(f"RRE: {count} sub-rectangles in a {w}x{h} rectangle")
        stride = bpp + 8
        need = 4 + bpp + count * stride
        if len(data) < need:
            return None
        vals = np.full((h, w), reader.value(data, 4), dtype=np.uint32)
        if count:
            raw = np.frombuffer(data, np.uint8, count * stride, 4 + bpp).reshape(count, stride)
            colours = reader.values_of(raw[:, :bpp])
            geo = raw[:, bpp:].copy().view(">u2").astype(np.int64)
            xs, ys, ws, hs = geo[:, 0], geo[:, 1], geo[:, 2], geo[:, 3]
            if bool(((xs + ws) > w).any() or ((ys + hs) > h).any()):
                raise ProtocolError(f"RRE: sub-rectangle outside the {w}x{h} rectangle")
            paint_rects(vals, xs, ys, ws, hs, colours)
        if w and h:
            fb[y:y + h, x:x + w] = reader.rgb_of_values(vals)
        return need
