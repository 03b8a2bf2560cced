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
from ..constants import HEXTILE_ANY_SUBRECTS as ANY_SUBRECTS
from ..constants import HEXTILE_BACKGROUND_SPECIFIED as BACKGROUND
from ..constants import HEXTILE_FOREGROUND_SPECIFIED as FOREGROUND
from ..constants import HEXTILE_RAW as RAW
from ..constants import HEXTILE_SUBRECTS_COLOURED as SUBRECTS_COLOURED
from ..constants import Encoding
from ..pixelformat import RGB, PixelFormat
from ._common import I64, U32, PixelReader, check_rect, pixel_reader, scatter_rects


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
        """Build the rectangle tile by tile in a tile-major buffer, then convert once.

        Each tile owns 256 consecutive values, so a raw tile is one byte copy and
        sub-rectangle pixels are ``tile * 256 + row * 16 + column`` for all tiles at
        once (no per-tile NumPy calls: at 16x16 their overhead dwarfs the pixels).
        """
        ntx, ntiles = st.ntx, st.ntiles
        nty = ntiles // ntx
        tiles = np.empty((ntiles, 256), dtype=np.uint32)
        tiles[:] = np.array(st.tile_bg, dtype=np.uint32)[:, None]
        tw_last, th_last = w - 16 * (ntx - 1), h - 16 * (nty - 1)
        if st.raw_tiles:
            _paint_raw(tiles, st.raw_tiles, data, ntx, nty, tw_last, th_last, reader)
        if st.groups:
            _paint_subrects(tiles, st, data, ntx, nty, tw_last, th_last, reader)
        vals = tiles.reshape(nty, ntx, 16, 16).transpose(0, 2, 1, 3).reshape(nty * 16, ntx * 16)
        fb[y:y + h, x:x + w] = reader.rgb_of_values(vals)[:h, :w]


def _tile_sizes(t: I64, ntx: int, nty: int, tw_last: int, th_last: int) -> tuple[I64, I64]:
    tw = np.where(t % ntx == ntx - 1, tw_last, 16)
    th = np.where(t // ntx == nty - 1, th_last, 16)
    return tw, th


def _paint_raw(tiles: U32, raw: list[tuple[int, int]], data: memoryview, ntx: int, nty: int,
               tw_last: int, th_last: int, reader: PixelReader) -> None:
    """Copy every raw tile's bytes into its slot: one memcpy per tile (one per row
    for a tile narrower than 16), far cheaper than any per-tile NumPy call.

    Native 32-bit pixels are copied straight into the value buffer; other formats
    go through a staging buffer of wire pixels that is converted in one step.
    A slot's positions outside a short or narrow edge tile are cropped later.
    """
    bpp = reader.nbytes
    dtype = reader.pf.dtype
    direct = dtype == np.dtype(np.uint32)
    stage = tiles if direct else np.zeros(tiles.shape, dtype=dtype)
    dst = stage.reshape(-1).view(np.uint8).data
    src = data if data.format == "B" else data.cast("B")
    slot, row = 256 * bpp, 16 * bpp
    narrow_row = tw_last * bpp
    last_row = (nty - 1) * ntx
    for t, off in raw:
        th = 16 if t < last_row else th_last
        d = t * slot
        if tw_last == 16 or t % ntx != ntx - 1:
            n = th * row
            dst[d:d + n] = src[off:off + n]
        else:
            for _ in range(th):
                dst[d:d + narrow_row] = src[off:off + narrow_row]
                d += row
                off += narrow_row
    if not direct:
        which = np.array([t for t, _ in raw], dtype=np.int64)
        tiles[which] = stage[which]


def _paint_subrects(tiles: U32, st: _Progress, data: memoryview, ntx: int, nty: int,
                    tw_last: int, th_last: int, reader: PixelReader) -> None:
    g = np.array([gr[:4] for gr in st.groups], dtype=np.int64)
    fgs = np.array([gr[4] for gr in st.groups], dtype=np.uint32)
    gtiles, offs, counts, coloured = g[:, 0], g[:, 1], g[:, 2], g[:, 3].astype(bool)
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
    t = gtiles[grp]
    tw, th = _tile_sizes(t, ntx, nty, tw_last, th_last)
    if bool(((sx + sw) > tw).any() or ((sy + sh) > th).any()):
        raise ProtocolError("Hextile: sub-rectangle outside its tile")
    colours = fgs[grp]
    if col.any():
        cpos = base[col]
        colours[col] = reader.values_of(buf[cpos[:, None] + np.arange(bpp)])
    scatter_rects(tiles.reshape(-1), t * 256 + sy * 16 + sx, 16, sw, sh, colours,
                  limit=max(4 * tiles.size, 1 << 16))
