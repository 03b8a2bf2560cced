"""Pieces shared by the rectangle decoders.

* :class:`PixelReader` turns packed wire pixels (RFB ``PIXEL``, ZRLE ``CPIXEL``,
  Tight ``TPIXEL``) into RGB rows without per-pixel Python work: byte picking
  when every colour channel is a whole byte, a lookup table for 8/16 bpp, the
  generic shift-and-mask conversion of :class:`PixelFormat` otherwise.
* :class:`Inflater` is one zlib stream whose output is capped per rectangle, so
  a hostile server cannot make us allocate more than the rectangle can hold.
* :func:`paint_rects` paints many solid sub-rectangles (Hextile, RRE) at once.
"""

from __future__ import annotations

import zlib
from functools import lru_cache
from typing import cast

import numpy as np
import numpy.typing as npt

from ...errors import LimitExceededError, ProtocolError
from ..pixelformat import RGB, PixelFormat, is_tpixel3

U8 = npt.NDArray[np.uint8]
U32 = npt.NDArray[np.uint32]
I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]


def check_rect(name: str, x: int, y: int, w: int, h: int, fb: RGB) -> None:
    """Refuse a rectangle that does not lie inside the frame buffer."""
    fh, fw = fb.shape[0], fb.shape[1]
    if x < 0 or y < 0 or w < 0 or h < 0 or x + w > fw or y + h > fh:
        raise ProtocolError(f"{name} rectangle {w}x{h}+{x}+{y} outside the {fw}x{fh} frame buffer")


def read_u32(data: memoryview, pos: int) -> int:
    return int.from_bytes(data[pos:pos + 4], "big")


def read_compact_length(data: memoryview, pos: int) -> tuple[int, int] | None:
    """Tight compact length at ``data[pos]``: (value, bytes used), or None if incomplete."""
    value = 0
    for i in range(3):
        if pos + i >= len(data):
            return None
        b = data[pos + i]
        if i == 2:
            return value | (b << 14), 3
        value |= (b & 0x7F) << (7 * i)
        if not b & 0x80:
            return value, i + 1
    raise AssertionError("unreachable")  # pragma: no cover


class Inflater:
    """One persistent zlib stream (a connection keeps it across rectangles)."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._d = zlib.decompressobj()

    def reset(self) -> None:
        self._d = zlib.decompressobj()

    def inflate(self, data: memoryview | bytes, cap: int, exact: int | None = None) -> bytes:
        """Decompress all of ``data``; never produce more than ``cap`` bytes.

        ``exact`` (if given) is the one valid output size.  Asking zlib for one byte
        more than allowed lets a trailing sync-flush marker be consumed while still
        catching a bomb without inflating it further.
        """
        try:
            out = self._d.decompress(data, cap + 1)
        except zlib.error as exc:
            raise ProtocolError(f"{self._name}: corrupt zlib data ({exc})") from None
        if len(out) > cap or self._d.unconsumed_tail:
            raise LimitExceededError(
                f"{self._name}: compressed data expands beyond the {cap} bytes the rectangle holds"
            )
        if self._d.unused_data:
            raise ProtocolError(f"{self._name}: data after the end of the zlib stream")
        if exact is not None and len(out) != exact:
            raise ProtocolError(f"{self._name}: zlib data gave {len(out)} bytes, expected {exact}")
        return out


def compressed_cap(raw_cap: int) -> int:
    """Largest compressed length we accept for ``raw_cap`` bytes of output.

    Deflate never grows data by more than a few bytes per 16 KiB block; the
    generous slack leaves room for extra flush markers without letting a server
    make us buffer gigabytes for a small rectangle.
    """
    return raw_cap + raw_cap // 16 + 65536


class PixelReader:
    """Converts packed wire pixels of one kind (PIXEL/CPIXEL/TPIXEL) to RGB."""

    def __init__(self, pf: PixelFormat, nbytes: int, *, tpixel: bool = False) -> None:
        if not pf.true_colour:
            raise ProtocolError("colour-map pixel formats are not supported by the decoders")
        self.pf = pf
        self.nbytes = nbytes
        self._big = pf.big_endian
        self._pick: list[int] | slice | None = None
        self._lut: RGB | None = None
        # byte index of each colour channel inside the *pixel value* (little-endian view)
        self._value_pick: list[int] | slice | None = None
        maxes = (pf.red_max, pf.green_max, pf.blue_max)
        shifts = (pf.red_shift, pf.green_shift, pf.blue_shift)
        aligned = all(m == 255 for m in maxes) and all(s % 8 == 0 for s in shifts)
        if aligned and pf.bits_per_pixel == 32:
            self._value_pick = _as_slice([s // 8 for s in shifts])
        if tpixel:
            self._pick = slice(0, 3)
        elif aligned and nbytes in (3, 4):
            self._pick = _as_slice(self._byte_pick(shifts))
        elif pf.bits_per_pixel in (8, 16):
            values = np.arange(1 << pf.bits_per_pixel, dtype=np.uint32)
            self._lut = _to_rgb(pf, values)

    def _byte_pick(self, shifts: tuple[int, int, int]) -> list[int] | None:
        """Wire byte index of each channel inside one ``nbytes`` group, if whole bytes."""
        n = self.nbytes
        # a 3-byte CPIXEL drops the high byte ("fits in LS") or the low byte ("fits in MS")
        drop_low = n == 3 and not _fits_ls3(self.pf)
        pick = []
        for s in shifts:
            k = s // 8 - (1 if drop_low else 0)  # byte number counted from the LSB
            if not 0 <= k < n:
                return None
            pick.append(n - 1 - k if self._big else k)
        return pick

    # -- wire bytes -> values / RGB ------------------------------------------
    def values_of(self, b: U8) -> U32:
        """Pixel values of a ``(k, nbytes)`` byte array (as uint32)."""
        v = b.astype(np.uint32)
        n = self.nbytes
        cols = range(n) if self._big else range(n - 1, -1, -1)
        out = np.zeros(b.shape[0], dtype=np.uint32)
        for c in cols:
            out <<= 8
            out |= v[:, c]
        if n == 3 and self.pf.bits_per_pixel == 32 and not _fits_ls3(self.pf):
            out <<= 8
        return out

    def rgb_of(self, b: U8) -> RGB:
        """RGB ``(k, 3)`` of a ``(k, nbytes)`` byte array."""
        if self._pick is not None:
            return b[:, self._pick]
        if self._lut is not None:
            if self.nbytes == 1:
                return np.take(self._lut, b[:, 0], axis=0)
            return np.take(self._lut, self.values_of(b), axis=0)
        return _to_rgb(self.pf, self.values_of(b))

    def rgb(self, data: memoryview | bytes, pos: int, count: int) -> RGB:
        """RGB ``(count, 3)`` of ``count`` packed pixels at ``data[pos]``."""
        end = pos + count * self.nbytes
        if end > len(data):
            raise ProtocolError(f"pixel data truncated: need {end} bytes, have {len(data)}")
        if self._lut is not None and self.nbytes == 2:
            px = np.frombuffer(data, dtype=self.pf.dtype, count=count, offset=pos)
            return np.take(self._lut, px, axis=0)
        b = np.frombuffer(data, dtype=np.uint8, count=count * self.nbytes, offset=pos)
        return self.rgb_of(b.reshape(count, self.nbytes))

    def values(self, data: memoryview | bytes, pos: int, count: int) -> U32:
        end = pos + count * self.nbytes
        if end > len(data):
            raise ProtocolError(f"pixel data truncated: need {end} bytes, have {len(data)}")
        if self.nbytes == self.pf.bytes_per_pixel:
            px = np.frombuffer(data, dtype=self.pf.dtype, count=count, offset=pos)
            return px.astype(np.uint32)
        b = np.frombuffer(data, dtype=np.uint8, count=count * self.nbytes, offset=pos)
        return self.values_of(b.reshape(count, self.nbytes))

    def value(self, data: memoryview | bytes, pos: int) -> int:
        """One pixel value (for Hextile/RRE background and foreground)."""
        chunk = data[pos:pos + self.nbytes]
        if len(chunk) != self.nbytes:
            raise ProtocolError("pixel value truncated")
        v = int.from_bytes(chunk, "big" if self._big else "little")
        if self.nbytes == 3 and self.pf.bits_per_pixel == 32 and not _fits_ls3(self.pf):
            v <<= 8
        return v

    def rgb_of_values(self, v: U32) -> RGB:
        """RGB ``(..., 3)`` of pixel values of any shape."""
        if self._value_pick is not None:
            b = v.astype("<u4", copy=False).view(np.uint8).reshape(*v.shape, 4)
            return b[..., self._value_pick]
        if self._lut is not None:
            return np.take(self._lut, v, axis=0)
        return _to_rgb(self.pf, v)


def _as_slice(pick: list[int] | None) -> list[int] | slice | None:
    """A basic slice for channel picks like [2, 1, 0]: a view instead of a gather."""
    if pick is None:
        return None
    a, b, c = pick
    if b - a == c - b == 1:
        return slice(a, c + 1)
    if b - a == c - b == -1:
        return slice(a, c - 1 if c else None, -1)
    return pick


def _to_rgb(pf: PixelFormat, v: U32) -> RGB:
    return pf.to_rgb(cast("npt.NDArray[np.unsignedinteger[npt.NBitBase]]", v))


def _fits_ls3(pf: PixelFormat) -> bool:
    return all(
        (mx << sh) < (1 << 24)
        for mx, sh in ((pf.red_max, pf.red_shift), (pf.green_max, pf.green_shift),
                       (pf.blue_max, pf.blue_shift))
    )


def _fits_ms3(pf: PixelFormat) -> bool:
    return min(pf.red_shift, pf.green_shift, pf.blue_shift) >= 8


@lru_cache(maxsize=32)
def pixel_reader(pf: PixelFormat) -> PixelReader:
    """Reader for plain ``PIXEL`` values (bytes-per-pixel of ``pf``)."""
    return PixelReader(pf, pf.bytes_per_pixel)


@lru_cache(maxsize=32)
def cpixel_reader(pf: PixelFormat) -> PixelReader:
    """Reader for ZRLE ``CPIXEL``: 3 bytes for 32 bpp depth <= 24 formats whose
    colour bits fit in the least or the most significant three bytes."""
    if (pf.true_colour and pf.bits_per_pixel == 32 and pf.depth <= 24
            and (_fits_ls3(pf) or _fits_ms3(pf))):
        return PixelReader(pf, 3)
    return PixelReader(pf, pf.bytes_per_pixel)


@lru_cache(maxsize=32)
def tpixel_reader(pf: PixelFormat) -> PixelReader:
    """Reader for Tight ``TPIXEL``: R, G, B bytes for 32 bpp depth 24 8-8-8 formats."""
    if is_tpixel3(pf):
        return PixelReader(pf, 3, tpixel=True)
    return PixelReader(pf, pf.bytes_per_pixel)


def unpack_indices(data: memoryview | bytes, pos: int, w: int, h: int, bits: int) -> U8:
    """Palette indices ``(h, w)`` packed ``bits`` per pixel, rows padded to a byte."""
    row = (w * bits + 7) // 8
    if pos + row * h > len(data):
        raise ProtocolError("packed palette indices truncated")
    b = np.frombuffer(data, dtype=np.uint8, count=row * h, offset=pos).reshape(h, row)
    if bits == 8:
        return b
    if bits == 1:
        return np.unpackbits(b, axis=1, count=w)
    per = 8 // bits
    shifts = np.arange(8 - bits, -1, -bits, dtype=np.uint8)
    idx = (b[:, :, None] >> shifts) & ((1 << bits) - 1)
    return idx.reshape(h, row * per)[:, :w].astype(np.uint8, copy=False)


def paint_rects(vals: U32, xs: I64, ys: I64, ws: I64, hs: I64, colours: U32) -> None:
    """Paint solid rectangles in order into ``vals`` (h, w) of pixel values.

    All rectangles are expanded into flat pixel indices at once; if two of them
    overlap (a fancy assignment would not guarantee "last one wins") or they cover
    far more pixels than the target holds, paint them one by one instead.
    """
    n = xs.shape[0]
    if n == 0:
        return
    height, width = vals.shape
    areas = ws * hs
    total = int(areas.sum())
    if 0 < total <= 2 * height * width and n > 8:
        rep = np.repeat(np.arange(n), areas)
        starts = np.cumsum(areas) - areas
        off = np.arange(total, dtype=np.int64) - starts[rep]
        rw = ws[rep]
        idx = (ys[rep] + off // rw) * width + xs[rep] + off % rw
        flat = vals.reshape(-1)
        if np.bincount(idx).max() <= 1:
            flat[idx] = colours[rep]
            return
    for i in range(n):
        x0, y0 = int(xs[i]), int(ys[i])
        vals[y0:y0 + int(hs[i]), x0:x0 + int(ws[i])] = colours[i]


def scatter_rects(flat: U32, starts: I64, stride: int, ws: I64, hs: I64, colours: U32,
                  *, limit: int) -> None:
    """Paint solid rectangles, in order, into the flat buffer ``flat``.

    Rectangle ``i`` covers ``starts[i] + row * stride + column`` for ``row < hs[i]``,
    ``column < ws[i]``; the caller has checked that every one lies inside ``flat``.
    Rectangles are expanded into flat pixel indices ``limit`` pixels at a time
    (at least one rectangle), so a server that stacks many large sub-rectangles
    costs time in proportion to its bytes but never unbounded memory.  Where
    rectangles overlap the later one wins, exactly as painting one by one would.
    """
    n = starts.shape[0]
    areas = ws * hs
    ends = np.cumsum(areas)
    i = 0
    while i < n:
        done = int(ends[i - 1]) if i else 0
        j = max(int(np.searchsorted(ends, done + limit, side="right")), i + 1)
        _scatter_chunk(flat, starts[i:j], stride, ws[i:j], areas[i:j], colours[i:j])
        i = j


def _scatter_chunk(flat: U32, starts: I64, stride: int, ws: I64, areas: I64,
                   colours: U32) -> None:
    total = int(areas.sum())
    if total == 0:
        return
    rep = np.repeat(np.arange(starts.shape[0]), areas)
    off = np.arange(total, dtype=np.int64) - (np.cumsum(areas) - areas)[rep]
    rw = ws[rep]
    row = off // rw
    idx = starts[rep] + row * stride + (off - row * rw)
    values = colours[rep]
    counts = np.bincount(idx)
    dup = counts[idx] > 1
    if not bool(dup.any()):
        flat[idx] = values
        return
    # a fancy assignment with repeated indices does not promise "last one wins":
    # write the unique pixels directly and, of each repeated pixel, its last write
    single = ~dup
    flat[idx[single]] = values[single]
    didx, dvals = idx[dup], values[dup]
    order = np.argsort(didx, kind="stable")
    sorted_idx = didx[order]
    last = np.ones(sorted_idx.shape[0], dtype=bool)
    last[:-1] = sorted_idx[1:] != sorted_idx[:-1]
    flat[sorted_idx[last]] = dvals[order[last]]
