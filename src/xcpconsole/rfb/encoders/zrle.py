"""ZRLE encoding (16): 64x64 tiles of CPIXELs in one zlib stream per connection.

Each tile gets the cheapest of the subencodings (solid, packed palette, plain
RLE, palette RLE, raw), computed from exact byte counts with NumPy; RLE bytes
are also built with array operations.  The zlib stream must outlive the
rectangle (the client keeps one inflater per connection), so the encoder is a
per-connection object.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

from ..pixelformat import RGB, PixelFormat
from .raw import U8, U32, pixel_values, wire_bytes

TILE = 64

RAW = 0
SOLID = 1
PLAIN_RLE = 128


def cpixel_slice(pf: PixelFormat) -> slice:
    """Which bytes of a wire pixel form the CPIXEL.

    A 32 bpp true-colour format of depth <= 24 whose colour bits fit in the
    least (or else the most) significant three bytes sends only those three.
    """
    bpp = pf.bytes_per_pixel
    if pf.true_colour and pf.bits_per_pixel == 32 and pf.depth <= 24:
        chans = ((pf.red_max, pf.red_shift), (pf.green_max, pf.green_shift),
                 (pf.blue_max, pf.blue_shift))
        if all((mx << sh) < (1 << 24) for mx, sh in chans):
            return slice(1, 4) if pf.big_endian else slice(0, 3)
        if min(sh for _, sh in chans) >= 8:
            return slice(0, 3) if pf.big_endian else slice(1, 4)
    return slice(0, bpp)


class ZrleEncoder:
    """ZRLE payloads (4-byte length + compressed tiles) for one connection."""

    def __init__(self, level: int = 6) -> None:
        self._z = zlib.compressobj(level)

    def encode(self, rgb: RGB, pf: PixelFormat) -> bytes:
        h, w = rgb.shape[0], rgb.shape[1]
        vals = pixel_values(rgb, pf)
        wire = wire_bytes(vals, pf)[:, :, cpixel_slice(pf)]
        parts: list[bytes] = []
        for y0 in range(0, h, TILE):
            for x0 in range(0, w, TILE):
                _encode_tile(parts, vals[y0:y0 + TILE, x0:x0 + TILE],
                             wire[y0:y0 + TILE, x0:x0 + TILE])
        data = self._z.compress(b"".join(parts)) + self._z.flush(zlib.Z_SYNC_FLUSH)
        return struct.pack(">I", len(data)) + data


def _encode_tile(parts: list[bytes], tile: U32, wire: U8) -> None:
    th, tw = tile.shape
    cb = wire.shape[2]
    n = th * tw
    flat = tile.reshape(n)
    flat_wire = wire.reshape(n, cb)
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    if len(change) == 0:
        parts.append(bytes([SOLID]) + flat_wire[0].tobytes())
        return
    run_starts = np.concatenate(([0], change))
    run_lens = np.diff(np.append(run_starts, n))
    nruns = len(run_starts)
    extra = (run_lens - 1) // 255  # bytes of 255 before the last length byte
    costs = {RAW: n * cb, PLAIN_RLE: nruns * (cb + 1) + int(extra.sum())}
    colours, first_idx, inverse = np.unique(flat, return_index=True, return_inverse=True)
    p = len(colours)
    if p <= 16:
        bits = 1 if p <= 2 else 2 if p <= 4 else 4
        costs[p] = p * cb + th * ((tw * bits + 7) // 8)
    if p <= 127:
        long_runs = run_lens > 1
        costs[128 + p] = p * cb + nruns + int((extra[long_runs] + 1).sum())
    sub = min(costs, key=lambda k: costs[k])
    parts.append(bytes([sub]))
    if sub == RAW:
        parts.append(flat_wire.tobytes())
        return
    if sub == PLAIN_RLE:
        parts.append(_rle(flat_wire[run_starts], run_lens, run_lens > 0))
        return
    parts.append(flat_wire[first_idx].tobytes())
    idx = inverse.reshape(n).astype(np.uint8)
    if sub < 128:
        parts.append(_pack_indices(idx.reshape(th, tw), bits))
        return
    long_runs = run_lens > 1
    heads = (idx[run_starts] | (long_runs.astype(np.uint8) << 7)).astype(np.uint8)
    parts.append(_rle(heads.reshape(-1, 1), run_lens, long_runs))


def _rle(heads: U8, lens: np.ndarray, has_len: np.ndarray) -> bytes:
    """Runs as bytes: each head (CPIXEL or palette index), then for runs with
    ``has_len`` the length - 1 as 255s followed by the remainder byte."""
    hb = heads.shape[1]
    nlen = np.where(has_len, (lens - 1) // 255 + 1, 0)
    sizes = hb + nlen
    ends = np.cumsum(sizes)
    starts = ends - sizes
    out = np.full(int(ends[-1]), 255, dtype=np.uint8)
    for j in range(hb):
        out[starts + j] = heads[:, j]
    out[(ends - 1)[has_len]] = ((lens - 1) % 255)[has_len]
    return out.tobytes()


def _pack_indices(idx: U8, bits: int) -> bytes:
    """Palette indices packed ``bits`` per pixel, MSB first, rows padded to a byte."""
    if bits == 1:
        return np.packbits(idx, axis=1).tobytes()
    th, tw = idx.shape
    per = 8 // bits
    row = -(-tw // per)
    padded = np.zeros((th, row * per), dtype=np.uint8)
    padded[:, :tw] = idx
    shifts = np.arange(8 - bits, -1, -bits, dtype=np.uint8)
    packed = (padded.reshape(th, row, per) << shifts).sum(axis=2, dtype=np.uint8)
    return bytes(packed.tobytes())
