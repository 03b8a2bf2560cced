"""Raw encoding (0): ``w*h`` pixels in the pixel format, row-major."""

from __future__ import annotations

from ..constants import Encoding
from ..pixelformat import RGB, PixelFormat
from ._common import check_rect, pixel_reader


class RawDecoder:
    encoding = int(Encoding.RAW)

    def decode(self, data: memoryview, x: int, y: int, w: int, h: int,
               pf: PixelFormat, fb: RGB) -> int | None:
        check_rect("Raw", x, y, w, h, fb)
        reader = pixel_reader(pf)
        need = w * h * reader.nbytes
        if len(data) < need:
            return None
        if need:
            fb[y:y + h, x:x + w] = reader.rgb(data, 0, w * h).reshape(h, w, 3)
        return need
