"""Hextile encoding (5): 16x16 tiles, each raw or a background plus sub-rectangles.

Tiles have variable length, so finding them needs a per-tile loop; everything
else is batched.  The loop only records where things are (tile backgrounds, raw
tiles, sub-rectangle lists); pixels are produced at the end in a few vectorised
steps.  The loop's progress is kept between calls, so a large rectangle that
arrives in many pieces is scanned once, not once per piece.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from ...errors import ProtocolError
from ..constants import Encoding
from ..pixelformat import RGB, PixelFormat
from ._common import U32, PixelReader, check_rect, paint_rects, pixel_reader

RAW = 1
BACKGROUND = 2
FOREGROUND = 4
ANY_SUBRECTS = 8
SUBRECTS_COLOURED = 16


@dataclass
class _Progress:
    """What the tile scan has found so far for one rectangle."""

    key: tuple[int, int, int, int, PixelFormat]
    ntx: int
    ntiles: int
    tile_bg: list[int]
    pos: int = 0
    tile: int = 0
    bg: int = 0
    fg: int = 0
    raw_tiles: list[tuple[int, int]] = field(default_factory=list)  # (tile, offset)
    # sub-rectangle groups: (tile, offset, count, coloured, foreground)
    groups: list[tuple[int, int, int, bool, int]] = field(default_factory=list)


class HextileDecoder:
    encoding = int(Encoding.HEXTILE)

    def __init__(self) -> None:
        self._progress: _Progress | None = None

    def decode(self, data: memoryview, x: int, y: int, w: int, h: int,
               pf: PixelFormat, fb: RGB) -> int | None:
        check_rect("Hextile", x, y, w, h, fb)
        if w == 0 or h == 0:
            return 0
        key = (x, y, w, h, pf)
        st = self._progress
        if st is None or st.key != key:
            ntx = (w + 15) // 16
            ntiles = ntx * ((h + 15) // 16)
            st = self._progress = _Progress(key, ntx, ntiles, [0] * ntiles)
        reader = pixel_reader(pf)
        try:
            if not self._scan(st, data, w, h, reader):
                return None
            self._paint(st, data, x, y, w, h, reader, fb)
        except BaseException:
            self._progress = None
            raise
        self._progress = None
        return st.pos

    def _scan(self, st: _Progress, data: memoryview, w: int, h: int,
              reader: PixelReader) -> bool:
        """Walk tiles from where the last call stopped; True once all are complete."""
        n = len(data)
        bpp = reader.nbytes
        order: Literal["big", "little"] = "big" if reader.pf.big_endian else "little"
        ntx, ntiles = st.ntx, st.ntiles
        last_w, last_h = w - 16 * (ntx - 1), h - 16 * (ntiles // ntx - 1)
        ntx_rows = ntiles // ntx
        pos, t, bg, fg = st.pos, st.tile, st.bg, st.fg
        tile_bg, raw_tiles, groups = st.tile_bg, st.raw_tiles, st.groups
        while t < ntiles:
            if pos >= n:
                break
            sub = data[pos]
            if sub & RAW:
                tw = 16 if t % ntx != ntx - 1 else last_w
                th = 16 if t // ntx != ntx_rows - 1 else last_h
                end = pos + 1 + tw * th * bpp
                if end > n:
                    break
                raw_tiles.append((t, pos + 1))
                pos = end
            else:
                p = pos + 1
                hdr = p + (bpp if sub & BACKGROUND else 0) + (bpp if sub & FOREGROUND else 0)
                if sub & ANY_SUBRECTS:
                    if hdr >= n:
                        break
                    count = data[hdr]
                    stride = bpp + 2 if sub & SUBRECTS_COLOURED else 2
                    end = hdr + 1 + count * stride
                else:
                    end = hdr
                if end > n:
                    break
                if sub & BACKGROUND:
                    bg = int.from_bytes(data[p:p + bpp], order)
                    p += bpp
                if sub & FOREGROUND:
                    fg = int.from_bytes(data[p:p + bpp], order)
                tile_bg[t] = bg
                if sub & ANY_SUBRECTS and count:
                    groups.append((t, hdr + 1, count, bool(sub & SUBRECTS_COLOURED), fg))
                pos = end
            t += 1
        st.pos, st.tile, st.bg, st.fg = pos, t, bg, fg
        return t >= ntiles

    def _paint(self, st: _Progress, data: memoryview, x: int, y: int, w: int, h: int,
               reader: PixelReader, fb: RGB) -> None:
        if st.ntiles == 0:
            return
        ntx = st.ntx
        grid = np.array(st.tile_bg, dtype=np.uint32).reshape(-1, ntx)
        vals = np.ascontiguousarray(np.repeat(np.repeat(grid, 16, 0), 16, 1)[:h, :w])
        for t, off in st.raw_tiles:
            tx, ty = (t % ntx) * 16, (t // ntx) * 16
            tw, th = min(16, w - tx), min(16, h - ty)
            vals[ty:ty + th, tx:tx + tw] = reader.values(data, off, tw * th).reshape(th, tw)
        if st.groups:
            self._paint_subrects(st, data, w, h, reader, vals)
        fb[y:y + h, x:x + w] = reader.rgb_of_values(vals)

    @staticmethod
    def _paint_subrects(st: _Progress, data: memoryview, w: int, h: int,
                        reader: PixelReader, vals: U32) -> None:
        g = np.array([gr[:4] for gr in st.groups], dtype=np.int64)
        fgs = np.array([gr[4] for gr in st.groups], dtype=np.uint32)
        tiles, offs, counts, coloured = g[:, 0], g[:, 1], g[:, 2], g[:, 3].astype(bool)
        bpp = reader.nbytes
        total = int(counts.sum())
        grp = np.repeat(np.arange(len(counts)), counts)
        j = np.arange(total, dtype=np.int64) - (np.cumsum(counts) - counts)[grp]
        col = coloured[grp]
        base = offs[grp] + j * np.where(col, bpp + 2, 2)
        xypos = base + np.where(col, bpp, 0)
        buf = np.frombuffer(data, dtype=np.uint8, count=st.pos)
        xy = buf[xypos].astype(np.int64)
        wh = buf[xypos + 1].astype(np.int64)
        sx, sy = xy >> 4, xy & 15
        sw, sh = (wh >> 4) + 1, (wh & 15) + 1
        t = tiles[grp]
        tx, ty = (t % st.ntx) * 16, (t // st.ntx) * 16
        if bool(((tx + sx + sw) > np.minimum(tx + 16, w)).any()
                or ((ty + sy + sh) > np.minimum(ty + 16, h)).any()):
            raise ProtocolError("Hextile: sub-rectangle outside its tile")
        colours = fgs[grp]
        if col.any():
            cpos = base[col]
            colours[col] = reader.values_of(buf[cpos[:, None] + np.arange(bpp)])
        paint_rects(vals, tx + sx, ty + sy, sw, sh, colours)
