"""Hextile encoding (5): 16x16 tiles, each raw or background + subrectangles.

Vectorised with NumPy: solid tiles are found for the whole region at once (a
solid tile repeating the previous background costs one byte); other tiles get
their subrectangles from horizontal runs of equal non-background pixels,
merged vertically, all with array operations (no per-pixel Python loop).
A tile falls back to raw when that is smaller.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ..constants import HEXTILE_ANY_SUBRECTS as ANY_SUBRECTS
from ..constants import HEXTILE_BACKGROUND_SPECIFIED as BACKGROUND_SPECIFIED
from ..constants import HEXTILE_FOREGROUND_SPECIFIED as FOREGROUND_SPECIFIED
from ..constants import HEXTILE_RAW as RAW
from ..constants import HEXTILE_SUBRECTS_COLOURED as SUBRECTS_COLOURED
from ..constants import HEXTILE_TILE as TILE
from ..pixelformat import RGB, PixelFormat
from .raw import U8, U32, pixel_values, wire_bytes

_MAX_SUBRECTS = 255

I64 = npt.NDArray[np.int64]


def encode(rgb: RGB, pf: PixelFormat) -> bytes:
    """Hextile payload of an RGB region in the client's pixel format ``pf``."""
    h, w = rgb.shape[0], rgb.shape[1]
    if h == 0 or w == 0:
        return b""
    vals = pixel_values(rgb, pf)
    wire = wire_bytes(vals, pf)
    th, tw = -(-h // TILE), -(-w // TILE)
    # edge replication keeps a partial tile solid iff its real pixels are
    padded = np.pad(vals, ((0, th * TILE - h), (0, tw * TILE - w)), mode="edge")
    tiles = padded.reshape(th, TILE, tw, TILE).swapaxes(1, 2)
    first = tiles[:, :, 0, 0]
    solid = (tiles == first[:, :, None, None]).all(axis=(2, 3)).tolist()
    first_l = first.tolist()
    first_wire = wire_bytes(first, pf)
    out = bytearray()
    state = _State()
    for ty in range(th):
        y0 = ty * TILE
        for tx in range(tw):
            if solid[ty][tx]:
                c = first_l[ty][tx]
                if c == state.bg:
                    out.append(0)
                else:
                    out.append(BACKGROUND_SPECIFIED)
                    out += first_wire[ty, tx].tobytes()
                    state.bg = c
                continue
            x0 = tx * TILE
            _encode_tile(out, vals[y0:y0 + TILE, x0:x0 + TILE],
                         wire[y0:y0 + TILE, x0:x0 + TILE], state)
    return bytes(out)


class _State:
    """Background and foreground carried from tile to tile (None = not defined)."""

    __slots__ = ("bg", "fg")

    def __init__(self) -> None:
        self.bg: int | None = None
        self.fg: int | None = None


def _encode_tile(out: bytearray, tile: U32, wire: U8, st: _State) -> None:
    h, w = tile.shape
    bpp = wire.shape[2]
    raw_size = 1 + h * w * bpp
    colours, first_idx, counts = np.unique(tile, return_index=True, return_counts=True)
    ncol = len(colours)
    flat_wire = wire.reshape(h * w, bpp)
    if ncol > 2 and ncol * (2 + bpp) >= raw_size:  # can't beat raw
        _raw(out, wire, st)
        return
    bg_i = int(np.argmax(counts))
    bg = int(colours[bg_i])
    xs, ys, ws, hs = _subrects(tile, bg)
    n = len(xs)
    coloured = ncol > 2
    size = 1 + (bpp if bg != st.bg else 0)
    if coloured:
        size += 1 + n * (2 + bpp)
    else:
        fg = int(colours[1 - bg_i])
        size += 1 + 2 * n + (bpp if fg != st.fg else 0)
    if n > _MAX_SUBRECTS or size >= raw_size:
        _raw(out, wire, st)
        return
    flags = ANY_SUBRECTS
    head = bytearray()
    if bg != st.bg:
        flags |= BACKGROUND_SPECIFIED
        head += flat_wire[int(first_idx[bg_i])].tobytes()
        st.bg = bg
    if coloured:
        flags |= SUBRECTS_COLOURED
        st.fg = None
    elif fg != st.fg:
        flags |= FOREGROUND_SPECIFIED
        head += flat_wire[int(first_idx[1 - bg_i])].tobytes()
        st.fg = fg
    out.append(flags)
    out += head
    out.append(n)
    geom = np.empty((n, 2), dtype=np.uint8)
    geom[:, 0] = (xs << 4) | ys
    geom[:, 1] = ((ws - 1) << 4) | (hs - 1)
    if coloured:
        colour_bytes = flat_wire[ys * w + xs]
        out += np.concatenate([colour_bytes, geom], axis=1).tobytes()
    else:
        out += geom.tobytes()


def _raw(out: bytearray, wire: U8, st: _State) -> None:
    out.append(RAW)
    out += wire.tobytes()
    st.bg = st.fg = None  # decoders disagree on what a raw tile leaves behind


def _subrects(tile: U32, bg: int) -> tuple[I64, I64, I64, I64]:
    """Rectangles (x, y, w, h) covering every non-``bg`` pixel of a tile.

    Horizontal runs of one colour, then runs with the same x, width and colour
    in consecutive rows are merged into one rectangle.
    """
    mask = tile != bg
    cont = np.zeros_like(mask)
    cont[:, 1:] = mask[:, 1:] & mask[:, :-1] & (tile[:, 1:] == tile[:, :-1])
    starts = mask & ~cont
    ends = mask.copy()
    ends[:, :-1] &= ~cont[:, 1:]
    ys, xs = np.nonzero(starts)
    _, xe = np.nonzero(ends)
    lens = xe - xs + 1
    cols = tile[ys, xs]
    if len(xs) == 0:
        e = np.zeros(0, dtype=np.int64)
        return e, e, e, e
    order = np.lexsort((ys, lens, xs, cols))
    ys, xs, lens, cols = ys[order], xs[order], lens[order], cols[order]
    new = np.ones(len(xs), dtype=bool)
    new[1:] = (
        (cols[1:] != cols[:-1]) | (xs[1:] != xs[:-1]) | (lens[1:] != lens[:-1])
        | (ys[1:] != ys[:-1] + 1)
    )
    first = np.flatnonzero(new)
    heights = np.diff(np.append(first, len(xs)))
    return (xs[first].astype(np.int64), ys[first].astype(np.int64),
            lens[first].astype(np.int64), heights.astype(np.int64))
