"""Server-side encoders: exact bytes for small cases, and round trips through both the
decoders package and the tiny pure-Python reference decoders below (written from
rfbproto.rst, slow on purpose), for 32, 16 and 8 bpp pixel formats."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from xcpconsole.rfb.decoders import make_decoders
from xcpconsole.rfb.encoders import ZrleEncoder, copyrect, hextile, raw
from xcpconsole.rfb.encoders.zrle import cpixel_slice
from xcpconsole.rfb.pixelformat import BGR233, BGRX32, RGB565, PixelFormat

XRGB_BE = PixelFormat(32, 24, True, True, 255, 255, 255, 16, 8, 0)
MS_LE = PixelFormat(32, 24, False, True, 255, 255, 255, 24, 16, 8)
RGB555_BE = PixelFormat(16, 15, True, True, 31, 31, 31, 10, 5, 0)
DEEP30 = PixelFormat(32, 30, False, True, 1023, 1023, 1023, 20, 10, 0)
FORMATS = [BGRX32, XRGB_BE, MS_LE, DEEP30, RGB565, RGB555_BE, BGR233]


def quantised(pf: PixelFormat, rgb: np.ndarray) -> np.ndarray:
    return pf.to_rgb(pf.from_rgb(rgb))


def images(h: int, w: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    solid = np.zeros((h, w, 3), np.uint8)
    solid[:] = (0, 0, 170)
    text = solid.copy()
    text[rng.random((h, w)) < 0.2] = (255, 255, 85)
    pal = rng.integers(0, 256, (40, 3), dtype=np.uint8)
    many = pal[rng.integers(0, 40, (h, w))]
    blocks = solid.copy()
    blocks[h // 4:h // 2, w // 3:] = (250, 10, 10)
    blocks[:, : w // 5] = (20, 200, 20)
    runs = np.repeat(pal[rng.integers(0, 40, (h * w) // 300 + 1)], 300, axis=0)[: h * w]
    return {"solid": solid, "text": text, "many": many, "blocks": blocks,
            "noise": rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
            "runs": runs.reshape(h, w, 3)}


# -- tiny reference decoders --------------------------------------------------


def _px(data: bytes, pos: int, n: int, pf: PixelFormat) -> int:
    return int.from_bytes(data[pos:pos + n], "big" if pf.big_endian else "little")


def ref_hextile(data: bytes, w: int, h: int, pf: PixelFormat) -> tuple[np.ndarray, int]:
    bpp = pf.bytes_per_pixel
    out = np.zeros((h, w), np.int64)
    pos = 0
    bg = fg = None
    for ty in range(0, h, 16):
        for tx in range(0, w, 16):
            tw, th = min(16, w - tx), min(16, h - ty)
            sub = data[pos]
            pos += 1
            if sub & 1:
                for j in range(th):
                    for i in range(tw):
                        out[ty + j, tx + i] = _px(data, pos, bpp, pf)
                        pos += bpp
                continue
            if sub & 2:
                bg = _px(data, pos, bpp, pf)
                pos += bpp
            if sub & 4:
                fg = _px(data, pos, bpp, pf)
                pos += bpp
            assert bg is not None
            out[ty:ty + th, tx:tx + tw] = bg
            if sub & 8:
                n = data[pos]
                pos += 1
                for _ in range(n):
                    colour = fg
                    if sub & 16:
                        colour = _px(data, pos, bpp, pf)
                        pos += bpp
                    assert colour is not None
                    xy, wh = data[pos], data[pos + 1]
                    pos += 2
                    sx, sy, sw, sh = xy >> 4, xy & 15, (wh >> 4) + 1, (wh & 15) + 1
                    assert sx + sw <= tw and sy + sh <= th
                    out[ty + sy:ty + sy + sh, tx + sx:tx + sx + sw] = colour
    return out, pos


def ref_zrle(tiles: bytes, w: int, h: int, pf: PixelFormat) -> np.ndarray:
    cs = cpixel_slice(pf)
    cb = len(range(pf.bytes_per_pixel)[cs])
    out = np.zeros((h, w), np.int64)
    pos = 0

    def cpixel() -> int:
        nonlocal pos
        b = tiles[pos:pos + cb]
        pos += cb
        full = bytearray(pf.bytes_per_pixel)
        full[cs] = b
        return int.from_bytes(full, "big" if pf.big_endian else "little")

    def run_length() -> int:
        nonlocal pos
        n = 1
        while True:
            b = tiles[pos]
            pos += 1
            n += b
            if b != 255:
                return n

    for ty in range(0, h, 64):
        for tx in range(0, w, 64):
            tw, th = min(64, w - tx), min(64, h - ty)
            sub = tiles[pos]
            pos += 1
            px: list[int] = []
            if sub == 0:
                px = [cpixel() for _ in range(tw * th)]
            elif sub == 1:
                px = [cpixel()] * (tw * th)
            elif 2 <= sub <= 16:
                pal = [cpixel() for _ in range(sub)]
                bits = 1 if sub == 2 else 2 if sub <= 4 else 4
                for _ in range(th):
                    acc, nbits = 0, 0
                    for _ in range(tw):
                        if nbits == 0:
                            acc, nbits = tiles[pos], 8
                            pos += 1
                        nbits -= bits
                        px.append(pal[(acc >> nbits) & ((1 << bits) - 1)])
            elif sub == 128:
                while len(px) < tw * th:
                    c = cpixel()
                    px += [c] * run_length()
            elif sub >= 130:
                pal = [cpixel() for _ in range(sub - 128)]
                while len(px) < tw * th:
                    i = tiles[pos]
                    pos += 1
                    px += [pal[i & 127]] * (run_length() if i & 128 else 1)
            else:
                raise AssertionError(f"bad subencoding {sub}")
            assert len(px) == tw * th
            out[ty:ty + th, tx:tx + tw] = np.array(px).reshape(th, tw)
    assert pos == len(tiles)
    return out


# -- exact bytes --------------------------------------------------------------


def test_raw_and_copyrect_bytes() -> None:
    rgb = np.array([[[255, 0, 0], [0, 255, 0]]], np.uint8)
    assert raw.encode(rgb, BGRX32) == b"\x00\x00\xff\x00" + b"\x00\xff\x00\x00"
    assert raw.encode(rgb, RGB565) == b"\x00\xf8" + b"\xe0\x07"
    assert copyrect.encode(258, 3) == b"\x01\x02\x00\x03"


def test_hextile_solid_tiles_are_cheap() -> None:
    rgb = np.zeros((32, 48, 3), np.uint8)
    rgb[:] = (1, 2, 3)
    data = hextile.encode(rgb, BGRX32)
    # first tile names the background, the five others repeat it in one byte each
    assert data == b"\x02\x03\x02\x01\x00" + b"\x00" * 5


def test_hextile_two_colour_tile() -> None:
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[2:5, 3:7] = (255, 255, 255)
    data = hextile.encode(rgb, BGR233)
    # bg + fg specified, any subrects; one subrect x=3 y=2 w=4 h=3
    assert data == bytes([2 | 4 | 8, 0x00, 0xFF, 1, 0x32, 0x32])


def test_zrle_solid_and_cpixel() -> None:
    rgb = np.zeros((64, 65, 3), np.uint8)
    rgb[:] = (0x11, 0x22, 0x33)
    payload = ZrleEncoder().encode(rgb, BGRX32)
    (length,) = struct.unpack(">I", payload[:4])
    assert length == len(payload) - 4
    tiles = zlib.decompressobj().decompress(payload[4:])
    assert tiles == b"\x01\x33\x22\x11" * 2  # two solid tiles, 3-byte CPIXELs
    assert cpixel_slice(MS_LE) == slice(1, 4)
    assert cpixel_slice(XRGB_BE) == slice(1, 4)
    assert cpixel_slice(DEEP30) == slice(0, 4)
    assert cpixel_slice(RGB565) == slice(0, 2)


def test_zrle_stream_persists_across_rects() -> None:
    enc = ZrleEncoder()
    img = images(40, 40)["text"]
    first, second = enc.encode(img, BGRX32), enc.encode(img, BGRX32)
    assert len(second) < len(first)  # the dictionary of the first rect helps the second
    d = zlib.decompressobj()
    assert d.decompress(first[4:]) == d.decompress(second[4:])
    with pytest.raises(zlib.error):
        zlib.decompressobj().decompress(second[4:])


# -- round trips --------------------------------------------------------------


@pytest.mark.parametrize("pf", FORMATS, ids=lambda p: f"{p.bits_per_pixel}bpp-{p.depth}-"
                         f"{'be' if p.big_endian else 'le'}-{p.red_shift}")
@pytest.mark.parametrize("size", [(1, 1), (16, 16), (37, 70), (64, 130)])
def test_round_trip_through_decoders(pf: PixelFormat, size: tuple[int, int]) -> None:
    h, w = size
    decoders = make_decoders()
    zenc = ZrleEncoder()
    for name, img in images(h, w).items():
        want = quantised(pf, img)
        for enc, payload in ((0, raw.encode(img, pf)), (5, hextile.encode(img, pf)),
                             (16, zenc.encode(img, pf))):
            fb = np.zeros((h + 2, w + 1, 3), np.uint8)
            used = decoders[enc].decode(memoryview(payload), 1, 2, w, h, pf, fb)
            assert used == len(payload), (name, enc)
            assert np.array_equal(fb[2:, 1:], want), (name, enc)
            assert not fb[:2].any() and not fb[:, :1].any()


@pytest.mark.parametrize("pf", [BGRX32, XRGB_BE, MS_LE, RGB565, BGR233],
                         ids=lambda p: f"{p.bits_per_pixel}bpp-{p.red_shift}")
def test_round_trip_through_reference_decoders(pf: PixelFormat) -> None:
    h, w = 40, 75
    d = zlib.decompressobj()
    zenc = ZrleEncoder()
    for name, img in images(h, w, seed=3).items():
        want = pf.from_rgb(img).astype(np.int64)
        data = hextile.encode(img, pf)
        got, used = ref_hextile(data, w, h, pf)
        assert used == len(data)
        assert np.array_equal(got, want), ("hextile", name)
        payload = zenc.encode(img, pf)
        assert np.array_equal(ref_zrle(d.decompress(payload[4:]), w, h, pf), want), name


def test_zrle_picks_cheap_subencodings() -> None:
    subs = {
        name: zlib.decompressobj().decompress(ZrleEncoder().encode(img, BGRX32)[4:])[0]
        for name, img in images(64, 64).items()
    }
    assert subs == {
        "solid": 1,          # one CPIXEL
        "text": 2,           # 2 colours scattered: 1-bit packed palette
        "blocks": 128 + 3,   # 3 colours in long runs: palette RLE
        "many": 128 + 40,    # 40 colours, short runs: palette RLE of single indices
        "noise": 0,          # raw
        "runs": 128,         # 12 colours in 300-pixel runs: plain RLE
    }
