"""Tight encoding (7): fill, JPEG, or "basic" zlib compression with a filter.

Four zlib streams live for the whole connection; the low nibble of each
rectangle's compression-control byte asks to reset some of them.  Streams are
reset and fed only once the rectangle's whole payload is present, so a payload
arriving in pieces never feeds (or resets) a stream twice.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from ...errors import LimitExceededError, ProtocolError, UnsupportedError
from ..constants import TIGHT_EXPLICIT_FILTER as EXPLICIT_FILTER
from ..constants import TIGHT_FILL as FILL
from ..constants import TIGHT_FILTER_COPY as FILTER_COPY
from ..constants import TIGHT_FILTER_GRADIENT as FILTER_GRADIENT
from ..constants import TIGHT_FILTER_PALETTE as FILTER_PALETTE
from ..constants import TIGHT_JPEG as JPEG
from ..constants import TIGHT_MIN_TO_COMPRESS as MIN_TO_COMPRESS
from ..constants import TIGHT_PNG as PNG
from ..constants import Encoding
from ..pixelformat import RGB, PixelFormat, is_tpixel3
from ._common import (
    I32,
    I64,
    Inflater,
    PixelReader,
    check_rect,
    compressed_cap,
    read_compact_length,
    tpixel_reader,
    unpack_indices,
)


class TightDecoder:
    encoding = int(Encoding.TIGHT)

    def __init__(self) -> None:
        self._streams = [Inflater(f"Tight stream {i}") for i in range(4)]
        #: whether the rectangle last decoded (or being decoded) was JPEG, i.e. lossy
        self.last_jpeg = False

    def decode(self, data: memoryview, x: int, y: int, w: int, h: int,
               pf: PixelFormat, fb: RGB) -> int | None:
        check_rect("Tight", x, y, w, h, fb)
        if len(data) < 1:
            return None
        ctl = data[0]
        kind = ctl >> 4
        self.last_jpeg = kind == JPEG
        reader = tpixel_reader(pf)
        tp = reader.nbytes
        dst = fb[y:y + h, x:x + w]
        if kind == FILL:
            if len(data) < 1 + tp:
                return None
            self._reset(ctl)
            dst[...] = reader.rgb(data, 1, 1)[0]
            return 1 + tp
        if kind == JPEG:
            got = read_compact_length(data, 1)
            if got is None:
                return None
            length, used = got
            if length > compressed_cap(w * h * 3):
                raise LimitExceededError(f"Tight: {length}-byte JPEG for a {w}x{h} rectangle")
            end = 1 + used + length
            if len(data) < end:
                return None
            self._reset(ctl)
            dst[...] = _decode_jpeg(data[1 + used:end], w, h)
            return end
        if kind == PNG:
            raise UnsupportedError("Tight: PNG rectangles are not supported")
        if kind & 0x08:
            raise ProtocolError(f"Tight: invalid compression control 0x{ctl:02x}")
        return self._basic(data, ctl, w, h, reader, pf, dst)

    def _reset(self, ctl: int) -> None:
        for i in range(4):
            if ctl & (1 << i):
                self._streams[i].reset()

    def _basic(self, data: memoryview, ctl: int, w: int, h: int, reader: PixelReader,
               pf: PixelFormat, dst: RGB) -> int | None:
        tp = reader.nbytes
        pos = 1
        filt = FILTER_COPY
        if ctl & (EXPLICIT_FILTER << 4):
            if len(data) < 2:
                return None
            filt = data[1]
            pos = 2
        palette: RGB | None = None
        bits = 8
        if filt == FILTER_PALETTE:
            if len(data) < pos + 1:
                return None
            ncolours = data[pos] + 1
            pos += 1
            if len(data) < pos + ncolours * tp:
                return None
            palette = np.zeros((256, 3), dtype=np.uint8)
            palette[:ncolours] = reader.rgb(data, pos, ncolours)
            pos += ncolours * tp
            if ncolours == 2:
                bits = 1
            raw_len = ((w + 7) // 8) * h if bits == 1 else w * h
        elif filt in (FILTER_COPY, FILTER_GRADIENT):
            raw_len = w * h * tp
        else:
            raise ProtocolError(f"Tight: invalid filter {filt}")
        if raw_len < MIN_TO_COMPRESS:
            end = pos + raw_len
            if len(data) < end:
                return None
            self._reset(ctl)
            pixels: bytes | memoryview = data[pos:end]
        else:
            got = read_compact_length(data, pos)
            if got is None:
                return None
            length, used = got
            if length > compressed_cap(raw_len):
                raise LimitExceededError(f"Tight: {length} compressed bytes for {raw_len} bytes")
            end = pos + used + length
            if len(data) < end:
                return None
            self._reset(ctl)
            stream = self._streams[(ctl >> 4) & 3]
            pixels = stream.inflate(data[pos + used:end], raw_len, exact=raw_len)
        if w == 0 or h == 0:
            return end
        if palette is not None:
            dst[...] = np.take(palette, unpack_indices(pixels, 0, w, h, bits), axis=0)
        elif filt == FILTER_GRADIENT:
            dst[...] = _gradient(pixels, w, h, reader, pf)
        else:
            dst[...] = reader.rgb(pixels, 0, w * h).reshape(h, w, 3)
        return end


def _decode_jpeg(jpeg: memoryview, w: int, h: int) -> RGB:
    try:
        with Image.open(io.BytesIO(jpeg)) as im:
            if im.format != "JPEG":
                raise ProtocolError("Tight: JPEG rectangle holds no JPEG image")
            if im.size != (w, h):
                raise ProtocolError(f"Tight: JPEG image is {im.size[0]}x{im.size[1]}, "
                                    f"rectangle is {w}x{h}")
            rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except ProtocolError:
        raise
    except Exception as exc:  # Pillow reports corrupt images with many exception types
        raise ProtocolError(f"Tight: undecodable JPEG ({type(exc).__name__})") from None
    return rgb


def _gradient(pixels: bytes | memoryview, w: int, h: int, reader: PixelReader,
              pf: PixelFormat) -> RGB:
    """Undo the gradient filter: each component was sent as the difference from
    the prediction clamp(left + up - up_left), modulo max + 1.

    A value depends on its left and upper neighbours, so the pixels of one
    anti-diagonal (x + y = k) are independent: loop over diagonals, vectorise
    along each.
    """
    if is_tpixel3(pf):
        comps = np.frombuffer(pixels, np.uint8, w * h * 3).reshape(w * h, 3).astype(np.int32)
        maxes = np.array([255, 255, 255], dtype=np.int32)
    else:
        v = reader.values(pixels, 0, w * h).astype(np.int32)
        maxes = np.array([pf.red_max, pf.green_max, pf.blue_max], dtype=np.int32)
        shifts = (pf.red_shift, pf.green_shift, pf.blue_shift)
        comps = np.stack([(v >> s) & m for s, m in zip(shifts, maxes, strict=True)], axis=1)
    linear = _gradient_unclamped(comps.reshape(h, w, 3), maxes)
    out = linear if linear is not None else _gradient_diagonals(comps, w, h, maxes)
    if (maxes == 255).all():
        return out.astype(np.uint8)
    return ((out * 255 + maxes // 2) // maxes).astype(np.uint8)


def _gradient_unclamped(diff: I32, maxes: I32) -> I32 | None:
    """Without clamping the filter is linear: values are the 2-D prefix sum of the
    differences (modulo max + 1).  Valid iff no prediction needed clamping."""
    v = np.cumsum(np.cumsum(diff, axis=0) & maxes, axis=1) & maxes
    h, w = v.shape[:2]
    padded = np.zeros((h + 1, w + 1, 3), dtype=np.int32)
    padded[1:, 1:] = v
    pred = padded[1:, :-1] + padded[:-1, 1:] - padded[:-1, :-1]
    if bool((pred < 0).any()) or bool((pred > maxes).any()):
        return None
    return v


def _gradient_diagonals(comps: I32, w: int, h: int, maxes: I32) -> I32:
    """The general (clamping) case, one anti-diagonal at a time."""
    # padded plane: one zero row above and one zero column left of the picture
    plane = np.zeros(((h + 1) * (w + 1), 3), dtype=np.int32)
    ys: I64 = np.arange(h, dtype=np.int64)
    for k in range(w + h - 1):
        lo, hi = max(0, k - w + 1), min(h - 1, k)
        yk = ys[lo:hi + 1]
        here = (yk + 1) * (w + 1) + (k - yk) + 1
        up = here - (w + 1)
        pred = np.clip(plane[here - 1] + plane[up] - plane[up - 1], 0, maxes)
        plane[here] = (pred + comps[yk * w + (k - yk)]) & maxes
    return plane.reshape(h + 1, w + 1, 3)[1:, 1:]
