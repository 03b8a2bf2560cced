"""ZRLE encoding (16): 64x64 tiles of compressed pixels (CPIXELs) in one zlib stream.

The zlib stream is fed only once the whole length-prefixed payload is present.
Tiles are decoded with NumPy: raw, solid and packed-palette tiles directly;
palette RLE by a vectorised parse (see :func:`_palette_rle`); plain RLE by
vectorised chunks of single-byte run lengths, looping only at long runs.
"""

from __future__ import annotations

import numpy as np

from ...errors import LimitExceededError, ProtocolError
from ..constants import Encoding
from ..pixelformat import RGB, PixelFormat
from ._common import (
    I64,
    Inflater,
    PixelReader,
    check_rect,
    compressed_cap,
    cpixel_reader,
    read_u32,
    unpack_indices,
)

TILE = 64


def output_cap(w: int, h: int, cp: int) -> int:
    """Most bytes the tiles of a ``w`` x ``h`` rectangle can take (all encodings)."""
    ntiles = ((w + TILE - 1) // TILE) * ((h + TILE - 1) // TILE)
    return ntiles * (1 + 127 * cp) + w * h * (cp + 2)


class ZrleDecoder:
    encoding = int(Encoding.ZRLE)

    def __init__(self) -> None:
        self._inflater = Inflater("ZRLE")

    def decode(self, data: memoryview, x: int, y: int, w: int, h: int,
               pf: PixelFormat, fb: RGB) -> int | None:
        check_rect("ZRLE", x, y, w, h, fb)
        if len(data) < 4:
            return None
        reader = cpixel_reader(pf)
        cap = output_cap(w, h, reader.nbytes)
        length = read_u32(data, 0)
        if length > compressed_cap(cap):
            raise LimitExceededError(f"ZRLE: {length} compressed bytes for a {w}x{h} rectangle")
        if len(data) < 4 + length:
            return None
        out = self._inflater.inflate(data[4:4 + length], cap)
        try:
            used = _decode_tiles(out, x, y, w, h, reader, fb)
        except (IndexError, ValueError) as exc:  # safety net: a truncated tile
            raise ProtocolError(f"ZRLE: malformed tile data ({exc})") from None
        if used != len(out):
            raise ProtocolError(f"ZRLE: {len(out) - used} bytes left after the last tile")
        return 4 + length


def _decode_tiles(buf: bytes, x: int, y: int, w: int, h: int,
                  reader: PixelReader, fb: RGB) -> int:
    pos = 0
    cp = reader.nbytes
    n_buf = len(buf)
    for ty in range(0, h, TILE):
        th = min(TILE, h - ty)
        for tx in range(0, w, TILE):
            tw = min(TILE, w - tx)
            n = tw * th
            if pos >= n_buf:
                raise ProtocolError("ZRLE: tile data truncated")
            sub = buf[pos]
            pos += 1
            dst = fb[y + ty:y + ty + th, x + tx:x + tx + tw]
            if sub == 0:
                dst[...] = reader.rgb(buf, pos, n).reshape(th, tw, 3)
                pos += n * cp
            elif sub == 1:
                dst[...] = reader.rgb(buf, pos, 1)[0]
                pos += cp
            elif sub <= 16:
                bits = 1 if sub == 2 else 2 if sub <= 4 else 4
                palette = _palette(reader, buf, pos, sub, 1 << bits)
                pos += sub * cp
                dst[...] = np.take(palette, unpack_indices(buf, pos, tw, th, bits), axis=0)
                pos += ((tw * bits + 7) // 8) * th
            elif sub == 128:
                rgb, pos = _plain_rle(buf, pos, n, reader)
                dst[...] = rgb.reshape(th, tw, 3)
            elif sub >= 130:
                palette = _palette(reader, buf, pos, sub - 128, 128)
                pos += (sub - 128) * cp
                rgb, pos = _palette_rle(buf, pos, n, palette)
                dst[...] = rgb.reshape(th, tw, 3)
            else:
                raise ProtocolError(f"ZRLE: invalid tile subencoding {sub}")
    return pos


def _palette(reader: PixelReader, buf: bytes, pos: int, size: int, room: int) -> RGB:
    """Palette as RGB padded to ``room`` entries, so any index a tile uses is valid."""
    palette = np.zeros((room, 3), dtype=np.uint8)
    palette[:size] = reader.rgb(buf, pos, size)
    return palette


def _plain_rle(buf: bytes, pos: int, n: int, reader: PixelReader) -> tuple[RGB, int]:
    """Runs of (CPIXEL, length).  Most lengths take one byte, so runs are read in
    vectorised chunks of fixed stride up to the next long (255-prefixed) run."""
    cp = reader.nbytes
    stride = cp + 1
    n_buf = len(buf)
    colours: list[RGB] = []
    lengths: list[I64] = []
    filled = 0
    while filled < n:
        remaining = n - filled
        m = min(remaining, (n_buf - pos) // stride)
        if m <= 0:
            raise ProtocolError("ZRLE: RLE tile truncated")
        chunk = np.frombuffer(buf, np.uint8, m * stride, pos).reshape(m, stride)
        lens = chunk[:, cp]
        long_runs = np.flatnonzero(lens == 255)
        k = int(long_runs[0]) if long_runs.size else m
        runs = lens[:k].astype(np.int64) + 1
        cum = np.cumsum(runs)
        j = int(np.searchsorted(cum, remaining))
        if j < k:  # the tile ends inside this chunk
            if cum[j] != remaining:
                raise ProtocolError("ZRLE: RLE run crosses the tile's end")
            colours.append(reader.rgb_of(chunk[:j + 1, :cp]))
            lengths.append(runs[:j + 1])
            return _expand(colours, lengths), pos + (j + 1) * stride
        if k:
            colours.append(reader.rgb_of(chunk[:k, :cp]))
            lengths.append(runs)
            filled += int(cum[-1])
            pos += k * stride
        if k < m:  # one long run, its length bytes read one by one
            colour = reader.rgb(buf, pos, 1)
            pos += cp
            run = 1
            while True:
                if pos >= n_buf:
                    raise ProtocolError("ZRLE: RLE run length truncated")
                b = buf[pos]
                pos += 1
                run += b
                if b != 255:
                    break
            if filled + run > n:
                raise ProtocolError("ZRLE: RLE run crosses the tile's end")
            colours.append(colour)
            lengths.append(np.array([run], dtype=np.int64))
            filled += run
    return _expand(colours, lengths), pos


def _expand(colours: list[RGB], lengths: list[I64]) -> RGB:
    if len(colours) == 1:
        return np.repeat(colours[0], lengths[0], axis=0)
    return np.repeat(np.concatenate(colours), np.concatenate(lengths), axis=0)


def _palette_rle(buf: bytes, pos: int, n: int, palette: RGB) -> tuple[RGB, int]:
    """Palette RLE parsed without a per-run loop.

    Each byte is either an index (top bit set: a run length follows) or part of a
    run length (255 means "more follows").  Whether byte i is an index depends only
    on the last byte < 128 or == 255 before it (which fixes the state) and on how
    many bytes in 128..254 (which flip it) came since, so it is a prefix scan.
    A tile's runs take at most 2 bytes per pixel, which bounds the window.
    """
    window = min(len(buf) - pos, 2 * n)
    if window <= 0:
        raise ProtocolError("ZRLE: palette RLE tile truncated")
    b = np.frombuffer(buf, np.uint8, window, pos)
    is_set = (b < 128) | (b == 255)
    set_val = b == 255  # state after the byte: True = "a length byte comes next"
    flips = np.cumsum(~is_set)
    last_set = np.maximum.accumulate(np.where(is_set, np.arange(window), -1))
    has_set = last_set >= 0
    ls = np.where(has_set, last_set, 0)
    base = np.where(has_set, set_val[ls], False)
    base_flips = np.where(has_set, flips[ls], 0)
    after_len = base ^ (((flips - base_flips) & 1) == 1)  # True: next byte is a length byte
    is_index = np.empty(window, dtype=bool)
    is_index[0] = True
    is_index[1:] = ~after_len[:-1]
    starts = np.flatnonzero(is_index)
    len_vals = np.where(is_index, 0, b).astype(np.int64)
    cs = np.cumsum(len_vals)
    ends = np.empty_like(starts)  # exclusive end of each run's bytes
    ends[:-1] = starts[1:]
    ends[-1] = window
    runs = 1 + cs[ends - 1] - cs[starts]
    cum = np.cumsum(runs)
    j = int(np.searchsorted(cum, n))
    if j >= len(cum) or cum[j] != n:
        raise ProtocolError("ZRLE: palette RLE runs do not fill the tile")
    if j == len(starts) - 1 and b[starts[j]] >= 128 and after_len[-1]:
        raise ProtocolError("ZRLE: palette RLE run length truncated")
    indices = b[starts[: j + 1]] & 127
    rgb = np.repeat(np.take(palette, indices, axis=0), runs[: j + 1], axis=0)
    return rgb, pos + int(ends[j])
