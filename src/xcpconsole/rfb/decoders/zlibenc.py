"""Zlib encoding (6): Raw pixels through one zlib stream kept for the connection.

(Named ``zlibenc`` so the module is never mistaken for the standard library's ``zlib``.)
"""

from __future__ import annotations

from ...errors import LimitExceededError
from ..constants import Encoding
from ..pixelformat import RGB, PixelFormat
from ._common import Inflater, check_rect, compressed_cap, pixel_reader, read_u32


class ZlibDecoder:
    encoding = int(Encoding.ZLIB)

    def __init__(self) -> None:
        self._inflater = Inflater("Zlib")

    def decode(self, data: memoryview, x: int, y: int, w: int, h: int,
               pf: PixelFormat, fb: RGB) -> int | None:
        check_rect("Zlib", x, y, w, h, fb)
        if len(data) < 4:
            return None
        reader = pixel_reader(pf)
        raw_len = w * h * reader.nbytes
        length = read_u32(data, 0)
        if length > compressed_cap(raw_len):
            raise LimitExceededError(f"Zlib: {length} compressed bytes for a {w}x{h} rectangle")
        if len(data) < 4 + length:
            return None
        # the stream is only fed once the whole payload is here: never the same bytes twice
        out = self._inflater.inflate(data[4:4 + length], raw_len, exact=raw_len)
        if raw_len:
            fb[y:y + h, x:x + w] = reader.rgb(out, 0, w * h).reshape(h, w, 3)
        return 4 + length
