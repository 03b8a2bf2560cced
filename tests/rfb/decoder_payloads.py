"""Small, deliberately naive encoders that build payloads for the decoder tests.

They work on arrays of *pixel values* (``(h, w)`` ints in the pixel format) and
are written from rfbproto.rst independently of the decoders: plain Python loops,
no shared helpers, so a bug in the decoders is not mirrored here.
"""

from __future__ import annotations

import io
import zlib

import numpy as np
from PIL import Image

from xcpconsole.rfb.pixelformat import PixelFormat

# -- pixel formats under test ------------------------------------------------
PF_BGRX = PixelFormat(32, 24, False, True, 255, 255, 255, 16, 8, 0)
PF_XRGB_BE = PixelFormat(32, 24, True, True, 255, 255, 255, 16, 8, 0)
PF_RGBX = PixelFormat(32, 24, False, True, 255, 255, 255, 0, 8, 16)
PF_MS_LE = PixelFormat(32, 24, False, True, 255, 255, 255, 24, 16, 8)  # CPIXEL: top 3 bytes
PF_MS_BE = PixelFormat(32, 24, True, True, 255, 255, 255, 8, 16, 24)
PF_30BIT = PixelFormat(32, 30, False, True, 1023, 1023, 1023, 20, 10, 0)
PF_565 = PixelFormat(16, 16, False, True, 31, 63, 31, 11, 5, 0)
PF_565_BE = PixelFormat(16, 16, True, True, 31, 63, 31, 11, 5, 0)
PF_555 = PixelFormat(16, 15, False, True, 31, 31, 31, 10, 5, 0)
PF_233 = PixelFormat(8, 8, False, True, 7, 7, 3, 0, 3, 6)
ALL_PFS = [PF_BGRX, PF_XRGB_BE, PF_RGBX, PF_MS_LE, PF_MS_BE, PF_30BIT, PF_565, PF_565_BE,
           PF_555, PF_233]


def random_values(pf: PixelFormat, h: int, w: int, rng: np.random.Generator,
                  ncolours: int | None = None) -> np.ndarray:
    """Random valid pixel values; with ``ncolours``, drawn from that many colours."""
    def one(shape: tuple[int, ...]) -> np.ndarray:
        v = np.zeros(shape, dtype=np.int64)
        for mx, sh in ((pf.red_max, pf.red_shift), (pf.green_max, pf.green_shift),
                       (pf.blue_max, pf.blue_shift)):
            v |= rng.integers(0, mx + 1, size=shape) << sh
        return v
    if ncolours is None:
        return one((h, w))
    colours = np.unique(one((ncolours * 4,)))[:ncolours]
    while len(colours) < ncolours:  # tiny formats: pad with distinct values
        colours = np.unique(np.concatenate([colours, one((ncolours * 4,))]))[:ncolours]
    return colours[rng.integers(0, ncolours, size=(h, w))]


def expected_rgb(pf: PixelFormat, values: np.ndarray) -> np.ndarray:
    """RGB the decoders must produce: components scaled to 0..255, rounded."""
    out = np.zeros((*values.shape, 3), dtype=np.uint8)
    for i, (mx, sh) in enumerate(((pf.red_max, pf.red_shift), (pf.green_max, pf.green_shift),
                                  (pf.blue_max, pf.blue_shift))):
        c = (values.astype(np.int64) >> sh) & mx
        out[..., i] = (c * 255 + mx // 2) // mx
    return out


def pixel(pf: PixelFormat, v: int) -> bytes:
    return int(v).to_bytes(pf.bytes_per_pixel, "big" if pf.big_endian else "little")


def pixels(pf: PixelFormat, values: np.ndarray) -> bytes:
    return b"".join(pixel(pf, v) for v in values.reshape(-1))


def cpixel(pf: PixelFormat, v: int) -> bytes:
    """ZRLE CPIXEL per rfbproto: 3 bytes for 32 bpp depth <= 24 fitting in 3 bytes."""
    full = pixel(pf, v)
    if pf.bits_per_pixel != 32 or pf.depth > 24:
        return full
    top = max(m << s for m, s in ((pf.red_max, pf.red_shift), (pf.green_max, pf.green_shift),
                                  (pf.blue_max, pf.blue_shift)))
    if top < 1 << 24:  # fits in the least significant 3 bytes
        return full[:3] if not pf.big_endian else full[1:]
    if min(pf.red_shift, pf.green_shift, pf.blue_shift) >= 8:  # most significant 3 bytes
        return full[1:] if not pf.big_endian else full[:3]
    return full


def tpixel(pf: PixelFormat, v: int) -> bytes:
    """Tight TPIXEL: R, G, B bytes for 32 bpp depth 24 with 8-bit channels."""
    if pf.bits_per_pixel == 32 and pf.depth == 24 and pf.red_max == pf.green_max == 255 \
            and pf.blue_max == 255:
        return bytes([(v >> pf.red_shift) & 255, (v >> pf.green_shift) & 255,
                      (v >> pf.blue_shift) & 255])
    return pixel(pf, v)


def u32(n: int) -> bytes:
    return n.to_bytes(4, "big")


def u16(n: int) -> bytes:
    return n.to_bytes(2, "big")


# -- Raw, CopyRect, RRE, Zlib ----------------------------------------------
def encode_rre(pf: PixelFormat, bg: int, subrects: list[tuple[int, int, int, int, int]]) -> bytes:
    out = u32(len(subrects)) + pixel(pf, bg)
    for v, x, y, w, h in subrects:
        out += pixel(pf, v) + u16(x) + u16(y) + u16(w) + u16(h)
    return out


class ZlibStream:
    """Server side of one persistent zlib stream (sync-flushed per rectangle)."""

    def __init__(self) -> None:
        self.c = zlib.compressobj()

    def reset(self) -> None:
        self.c = zlib.compressobj()

    def pack(self, raw: bytes) -> bytes:
        return self.c.compress(raw) + self.c.flush(zlib.Z_SYNC_FLUSH)


# -- Hextile ---------------------------------------------------------------
def hextile_runs(tile: np.ndarray, bg: int) -> list[tuple[int, int, int, int, int]]:
    """Sub-rectangles (colour, x, y, w, h) covering non-background pixels: vertical
    pairs where possible, horizontal runs otherwise, never overlapping."""
    th, tw = tile.shape
    done = np.zeros_like(tile, dtype=bool)
    out = []
    for y in range(th):
        x = 0
        while x < tw:
            c = int(tile[y, x])
            if c == bg or done[y, x]:
                x += 1
                continue
            x1 = x
            while x1 < tw and int(tile[y, x1]) == c and not done[y, x1]:
                x1 += 1
            h = 1
            if y + 1 < th and all(int(tile[y + 1, i]) == c for i in range(x, x1)):
                h = 2
            done[y:y + h, x:x1] = True
            out.append((c, x, y, x1 - x, h))
            x = x1
    return out


def encode_hextile(pf: PixelFormat, values: np.ndarray, mode: str = "auto") -> bytes:
    """``mode``: 'raw' (all raw tiles), 'auto' (solid / one-colour / coloured as fits)."""
    h, w = values.shape
    out = bytearray()
    prev_bg: int | None = None
    prev_fg: int | None = None
    for ty in range(0, h, 16):
        for tx in range(0, w, 16):
            tile = values[ty:ty + 16, tx:tx + 16]
            if mode == "raw":
                out += bytes([1]) + pixels(pf, tile)
                continue
            colours, counts = np.unique(tile, return_counts=True)
            bg = int(colours[np.argmax(counts)])
            rects = hextile_runs(tile, bg)
            sub = 0
            body = b""
            if bg != prev_bg:
                sub |= 2
                body += pixel(pf, bg)
                prev_bg = bg
            if rects:
                sub |= 8
                fgs = {r[0] for r in rects}
                if len(fgs) == 1:
                    fg = rects[0][0]
                    if fg != prev_fg:
                        sub |= 4
                        body += pixel(pf, fg)
                        prev_fg = fg
                    body += bytes([len(rects)])
                    for _, x, y, rw, rh in rects:
                        body += bytes([(x << 4) | y, ((rw - 1) << 4) | (rh - 1)])
                else:
                    sub |= 16
                    body += bytes([len(rects)])
                    for c, x, y, rw, rh in rects:
                        body += pixel(pf, c) + bytes([(x << 4) | y, ((rw - 1) << 4) | (rh - 1)])
            if len(rects) > 255 or len(body) > len(tile.reshape(-1)) * pf.bytes_per_pixel:
                out += bytes([1]) + pixels(pf, tile)
                prev_bg = prev_fg = None  # be conservative: resend after a raw tile
                continue
            out += bytes([sub]) + body
    return bytes(out)


# -- ZRLE ------------------------------------------------------------------
def run_length(n: int) -> bytes:
    n -= 1
    return b"\xff" * (n // 255) + bytes([n % 255])


def zrle_tile(pf: PixelFormat, tile: np.ndarray, kind: str) -> bytes:
    flat = [int(v) for v in tile.reshape(-1)]
    th, tw = tile.shape
    palette = list(dict.fromkeys(flat))
    if kind == "raw":
        return b"\x00" + b"".join(cpixel(pf, v) for v in flat)
    if kind == "solid":
        assert len(palette) == 1
        return b"\x01" + cpixel(pf, palette[0])
    runs: list[tuple[int, int]] = []
    for v in flat:
        if runs and runs[-1][0] == v:
            runs[-1] = (v, runs[-1][1] + 1)
        else:
            runs.append((v, 1))
    if kind == "packed":
        assert 2 <= len(palette) <= 16
        bits = 1 if len(palette) == 2 else 2 if len(palette) <= 4 else 4
        out = bytes([len(palette)]) + b"".join(cpixel(pf, v) for v in palette)
        for y in range(th):
            acc, nbits, row = 0, 0, bytearray()
            for x in range(tw):
                acc = (acc << bits) | palette.index(flat[y * tw + x])
                nbits += bits
                if nbits == 8:
                    row.append(acc)
                    acc, nbits = 0, 0
            if nbits:
                row.append(acc << (8 - nbits))
            out += bytes(row)
        return out
    if kind == "plain_rle":
        return b"\x80" + b"".join(cpixel(pf, v) + run_length(n) for v, n in runs)
    if kind == "palette_rle":
        assert 2 <= len(palette) <= 127
        out = bytes([128 + len(palette)]) + b"".join(cpixel(pf, v) for v in palette)
        for v, n in runs:
            i = palette.index(v)
            out += bytes([i]) if n == 1 else bytes([i | 128]) + run_length(n)
        return out
    raise AssertionError(kind)


def encode_zrle(pf: PixelFormat, values: np.ndarray, kinds: str | list[str],
                stream: ZlibStream) -> bytes:
    """One ZRLE payload (length + zlib data); ``kinds`` one per 64x64 tile or for all."""
    h, w = values.shape
    raw = b""
    i = 0
    for ty in range(0, h, 64):
        for tx in range(0, w, 64):
            kind = kinds if isinstance(kinds, str) else kinds[i]
            raw += zrle_tile(pf, values[ty:ty + 64, tx:tx + 64], kind)
            i += 1
    data = stream.pack(raw)
    return u32(len(data)) + data


# -- Tight -----------------------------------------------------------------
def compact_length(n: int) -> bytes:
    out = bytes([n & 0x7F | (0x80 if n > 0x7F else 0)])
    if n > 0x7F:
        out += bytes([(n >> 7) & 0x7F | (0x80 if n > 0x3FFF else 0)])
        if n > 0x3FFF:
            out += bytes([n >> 14])
    return out


def tight_basic(ctl: int, head: bytes, raw: bytes, stream: ZlibStream) -> bytes:
    if len(raw) < 12:
        return bytes([ctl]) + head + raw
    data = stream.pack(raw)
    return bytes([ctl]) + head + compact_length(len(data)) + data


def encode_tight(pf: PixelFormat, values: np.ndarray, kind: str, streams: list[ZlibStream],
                 stream_id: int = 0, reset: int = 0) -> bytes:
    """Tight payload; ``kind`` in fill, copy, copy_implicit, palette, gradient."""
    for i in range(4):
        if reset & (1 << i):
            streams[i].reset()
    h, w = values.shape
    flat = [int(v) for v in values.reshape(-1)]
    st = streams[stream_id]
    if kind == "fill":
        assert len(set(flat)) == 1
        return bytes([0x80 | reset]) + tpixel(pf, flat[0])
    if kind == "copy_implicit":
        return tight_basic((stream_id << 4) | reset, b"",
                           b"".join(tpixel(pf, v) for v in flat), st)
    ctl = 0x40 | (stream_id << 4) | reset
    if kind == "copy":
        return tight_basic(ctl, b"\x00", b"".join(tpixel(pf, v) for v in flat), st)
    if kind == "palette":
        palette = list(dict.fromkeys(flat))
        assert 2 <= len(palette) <= 256
        head = b"\x01" + bytes([len(palette) - 1]) + b"".join(tpixel(pf, v) for v in palette)
        if len(palette) == 2:
            raw = bytearray()
            for y in range(h):
                for x0 in range(0, w, 8):
                    byte = 0
                    for b in range(8):
                        x = x0 + b
                        bit = palette.index(flat[y * w + x]) if x < w else 0
                        byte |= bit << (7 - b)
                    raw.append(byte)
            return tight_basic(ctl, head, bytes(raw), st)
        return tight_basic(ctl, head, bytes(palette.index(v) for v in flat), st)
    if kind == "gradient":
        return tight_basic(ctl, b"\x02", gradient_filter(pf, values), st)
    raise AssertionError(kind)


def gradient_filter(pf: PixelFormat, values: np.ndarray) -> bytes:
    """Per-pixel differences from clamp(left + up - upleft), per rfbproto's Tight."""
    h, w = values.shape
    three = len(tpixel(pf, 0)) == 3 and pf.bits_per_pixel == 32
    chans = ((pf.red_max, pf.red_shift), (pf.green_max, pf.green_shift),
             (pf.blue_max, pf.blue_shift))
    if three:
        chans = ((255, pf.red_shift), (255, pf.green_shift), (255, pf.blue_shift))

    def comp(y: int, x: int, i: int) -> int:
        if x < 0 or y < 0:
            return 0
        mx, sh = chans[i]
        return (int(values[y, x]) >> sh) & mx

    out = bytearray()
    for y in range(h):
        for x in range(w):
            diffs = []
            for i, (mx, _) in enumerate(chans):
                p = comp(y, x - 1, i) + comp(y - 1, x, i) - comp(y - 1, x - 1, i)
                p = min(max(p, 0), mx)
                diffs.append((comp(y, x, i) - p) & mx)
            if three:
                out += bytes(diffs)
            else:
                v = 0
                for d, (_, sh) in zip(diffs, chans, strict=True):
                    v |= d << sh
                out += pixel(pf, v)
    return bytes(out)


def encode_tight_jpeg(rgb: np.ndarray, reset: int = 0) -> tuple[bytes, np.ndarray]:
    """Tight JPEG payload and what Pillow itself decodes from that JPEG."""
    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, "JPEG", quality=80)
    jpeg = buf.getvalue()
    decoded = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))
    return bytes([0x90 | reset]) + compact_length(len(jpeg)) + jpeg, decoded
