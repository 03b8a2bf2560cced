"""Decoders against hand-built payloads: every encoding, sub-encoding and pixel format.

Payloads come from the naive encoders in ``decoder_payloads`` (written from
rfbproto independently of the decoders) plus a few literal byte strings.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from decoder_payloads import (
    ALL_PFS,
    PF_233,
    PF_565,
    PF_BGRX,
    PF_MS_BE,
    PF_XRGB_BE,
    ZlibStream,
    compact_length,
    encode_hextile,
    encode_rre,
    encode_tight,
    encode_tight_jpeg,
    encode_zrle,
    expected_rgb,
    pixel,
    pixels,
    random_values,
    u32,
)

from xcpconsole.rfb.constants import Encoding
from xcpconsole.rfb.decoders import (
    HextileDecoder,
    RectDecoder,
    TightDecoder,
    ZlibDecoder,
    ZrleDecoder,
    make_decoders,
)
from xcpconsole.rfb.pixelformat import PixelFormat

PF_IDS = [f"{pf.bits_per_pixel}bpp-d{pf.depth}-{'be' if pf.big_endian else 'le'}-"
          f"{pf.red_shift}.{pf.green_shift}.{pf.blue_shift}" for pf in ALL_PFS]


def fresh_fb(h: int = 90, w: int = 150) -> np.ndarray:
    return np.full((h, w, 3), 7, dtype=np.uint8)


def decode_whole(dec: RectDecoder, payload: bytes, x: int, y: int, w: int, h: int,
                 pf: PixelFormat, fb: np.ndarray) -> None:
    assert dec.decode(memoryview(payload), x, y, w, h, pf, fb) == len(payload)


def decode_split(dec: RectDecoder, payload: bytes, x: int, y: int, w: int, h: int,
                 pf: PixelFormat, fb: np.ndarray, steps: list[int]) -> None:
    """Feed growing prefixes (ending at each of ``steps``) then the whole payload."""
    for k in steps:
        if k < len(payload):
            assert dec.decode(memoryview(payload[:k]), x, y, w, h, pf, fb) is None, k
    assert dec.decode(memoryview(payload + b"trailing"), x, y, w, h, pf, fb) == len(payload)


def assert_rect(fb: np.ndarray, x: int, y: int, expect: np.ndarray) -> None:
    h, w = expect.shape[:2]
    np.testing.assert_array_equal(fb[y:y + h, x:x + w], expect)
    outside = fb.copy()
    outside[y:y + h, x:x + w] = 7
    assert (outside == 7).all(), "decoder wrote outside its rectangle"


# -- registry --------------------------------------------------------------
def test_make_decoders_registers_every_encoding_with_fresh_instances() -> None:
    a, b = make_decoders(), make_decoders()
    assert set(a) == {Encoding.RAW, Encoding.COPYRECT, Encoding.RRE, Encoding.HEXTILE,
                      Encoding.ZLIB, Encoding.TIGHT, Encoding.ZRLE}
    for enc, dec in a.items():
        assert dec.encoding == enc
        assert b[enc] is not dec


# -- literal payloads (no helper encoder involved) ----------------------------
def test_raw_bgrx_literal_bytes() -> None:
    fb = fresh_fb(4, 4)
    payload = bytes([0x30, 0x20, 0x10, 0, 0xFF, 0x00, 0x80, 0x99])
    decode_whole(make_decoders()[0], payload, 1, 2, 2, 1, PF_BGRX, fb)
    assert fb[2, 1].tolist() == [0x10, 0x20, 0x30]
    assert fb[2, 2].tolist() == [0x80, 0x00, 0xFF]


def test_raw_big_endian_and_565_literal() -> None:
    fb = fresh_fb(2, 2)
    decode_whole(make_decoders()[0], bytes([0, 0x10, 0x20, 0x30]), 0, 0, 1, 1, PF_XRGB_BE, fb)
    assert fb[0, 0].tolist() == [0x10, 0x20, 0x30]
    # 565 little-endian: pure red 0xF800, pure blue 0x001F
    decode_whole(make_decoders()[0], bytes([0x00, 0xF8, 0x1F, 0x00]), 0, 1, 2, 1, PF_565, fb)
    assert fb[1].tolist() == [[255, 0, 0], [0, 0, 255]]


def test_hextile_literal_two_tiles_with_carried_background() -> None:
    pf = PF_233  # 1 byte per pixel: value 7 = full red, 0xC0 = full blue
    payload = bytes([
        2 | 8 | 16, 0x00, 1, 0x07, 0x11, 0x10,  # bg black, 1 coloured red subrect 2x1 at (1,1)
        8 | 4, 0xC0, 1, 0x00, 0x00,            # bg carried, fg blue, 1x1 subrect at (0,0)
    ])
    fb = fresh_fb(16, 20)
    decode_whole(HextileDecoder(), payload, 0, 0, 20, 3, pf, fb)
    expect = np.zeros((3, 20, 3), np.uint8)
    expect[1, 1:3] = [255, 0, 0]
    expect[0, 16] = [0, 0, 255]
    np.testing.assert_array_equal(fb[:3], expect)


def _hextile_layers(pf: PixelFormat, tiles: list[list[tuple[int, int, int, int, int]]],
                    bg: int) -> bytes:
    """Tiles of coloured sub-rectangles (colour, x, y, w, h), drawn in list order."""
    out = bytearray()
    for i, rects in enumerate(tiles):
        out += bytes([(2 if i == 0 else 0) | 8 | 16])
        if i == 0:
            out += pixel(pf, bg)
        out += bytes([len(rects)])
        for c, x, y, w, h in rects:
            out += pixel(pf, c) + bytes([(x << 4) | y, ((w - 1) << 4) | (h - 1)])
    return bytes(out)


def _paint_naively(h: int, w: int, tiles: list[list[tuple[int, int, int, int, int]]],
                   bg: int) -> np.ndarray:
    vals = np.full((h, w), bg, dtype=np.int64)
    ntx = (w + 15) // 16
    for i, rects in enumerate(tiles):
        tx, ty = (i % ntx) * 16, (i // ntx) * 16
        for c, x, y, rw, rh in rects:
            vals[ty + y:ty + y + rh, tx + x:tx + x + rw] = c
    return vals


@pytest.mark.parametrize("pf", [PF_BGRX, PF_XRGB_BE, PF_565, PF_233],
                         ids=["bgrx", "xrgb_be", "565", "233"])
def test_hextile_overlapping_subrects_last_one_wins(pf: PixelFormat) -> None:
    """TigerVNC's encoder sends overlapping sub-rectangles; each pixel keeps the
    colour of the last one covering it (as painting them in order would)."""
    rng = np.random.default_rng(21)
    w, h = 40, 20  # 3x2 tiles, the right and bottom ones short
    colours = random_values(pf, 1, 64, rng, ncolours=9)[0]
    tiles = []
    for i in range(6):
        tw, th = (16 if i % 3 < 2 else 8), (16 if i < 3 else 4)
        rects = []
        for _ in range(int(rng.integers(1, 60))):
            x, y = int(rng.integers(0, tw)), int(rng.integers(0, th))
            rects.append((int(colours[rng.integers(1, 9)]), x, y,
                          int(rng.integers(1, tw - x + 1)), int(rng.integers(1, th - y + 1))))
        tiles.append(rects)
    fb = fresh_fb()
    decode_whole(HextileDecoder(), _hextile_layers(pf, tiles, int(colours[0])), 5, 6, w, h,
                 pf, fb)
    assert_rect(fb, 5, 6, expected_rgb(pf, _paint_naively(h, w, tiles, int(colours[0]))))


def test_hextile_many_full_tile_subrects_paint_in_bounded_chunks(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """255 tile-sized sub-rectangles per tile expand to far more pixels than the
    rectangle holds: they are painted in several bounded chunks, still in order."""
    from xcpconsole.rfb.decoders import _common

    chunks: list[int] = []
    real_chunk = _common._scatter_chunk

    def spy(flat: np.ndarray, starts: np.ndarray, stride: int, ws: np.ndarray,
            areas: np.ndarray, colours: np.ndarray) -> None:
        chunks.append(int(areas.sum()))
        real_chunk(flat, starts, stride, ws, areas, colours)

    monkeypatch.setattr(_common, "_scatter_chunk", spy)
    pf = PF_BGRX
    w, h = 64, 48
    tiles = [[(k * 7 + i, 0, 0, 16, 16) for k in range(254)] + [(0x123456 + i, i % 16, 3, 1, 2)]
             for i in range(12)]
    fb = fresh_fb(64, 80)
    decode_whole(HextileDecoder(), _hextile_layers(pf, tiles, 1), 0, 0, w, h, pf, fb)
    assert_rect(fb, 0, 0, expected_rgb(pf, _paint_naively(h, w, tiles, 1)))
    assert len(chunks) > 1 and max(chunks) <= 1 << 16
    assert sum(chunks) == 12 * (254 * 256 + 2)


def test_copyrect_overlapping_move() -> None:
    rng = np.random.default_rng(1)
    fb = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    before = fb.copy()
    decode_whole(make_decoders()[1], b"\x00\x05\x00\x03", 8, 6, 30, 20, PF_BGRX, fb)
    np.testing.assert_array_equal(fb[6:26, 8:38], before[3:23, 5:35])
    assert (fb[:6] == before[:6]).all()


# -- per pixel format ----------------------------------------------------------
@pytest.mark.parametrize("pf", ALL_PFS, ids=PF_IDS)
def test_raw_every_format(pf: PixelFormat) -> None:
    vals = random_values(pf, 21, 33, np.random.default_rng(2))
    fb = fresh_fb()
    decode_whole(make_decoders()[0], pixels(pf, vals), 5, 9, 33, 21, pf, fb)
    assert_rect(fb, 5, 9, expected_rgb(pf, vals))


@pytest.mark.parametrize("pf", ALL_PFS, ids=PF_IDS)
def test_rre_every_format(pf: PixelFormat) -> None:
    rng = np.random.default_rng(3)
    cols = random_values(pf, 1, 12, rng, ncolours=4)[0]
    subrects = [(int(cols[1]), 2, 3, 10, 4), (int(cols[2]), 5, 0, 3, 15),  # overlapping
                (int(cols[3]), 0, 14, 20, 2)]
    subrects += [(int(cols[i % 3 + 1]), i, 10, 1, 1) for i in range(12)]
    vals = np.full((16, 20), int(cols[0]), dtype=np.int64)
    for v, x, y, w, h in subrects:
        vals[y:y + h, x:x + w] = v
    fb = fresh_fb()
    decode_whole(make_decoders()[2], encode_rre(pf, int(cols[0]), subrects), 3, 4, 20, 16, pf, fb)
    assert_rect(fb, 3, 4, expected_rgb(pf, vals))


@pytest.mark.parametrize("pf", ALL_PFS, ids=PF_IDS)
@pytest.mark.parametrize("mode,ncol", [("raw", None), ("auto", 2), ("auto", 5), ("auto", 1)])
def test_hextile_every_format(pf: PixelFormat, mode: str, ncol: int | None) -> None:
    vals = random_values(pf, 37, 45, np.random.default_rng(4), ncolours=ncol)
    fb = fresh_fb()
    decode_whole(HextileDecoder(), encode_hextile(pf, vals, mode), 7, 11, 45, 37, pf, fb)
    assert_rect(fb, 7, 11, expected_rgb(pf, vals))


@pytest.mark.parametrize("pf", ALL_PFS, ids=PF_IDS)
def test_zlib_every_format_two_rects_one_stream(pf: PixelFormat) -> None:
    rng = np.random.default_rng(5)
    dec, stream, fb = ZlibDecoder(), ZlibStream(), fresh_fb()
    for x in (0, 40):
        vals = random_values(pf, 13, 30, rng, ncolours=3)
        data = stream.pack(pixels(pf, vals))
        decode_whole(dec, u32(len(data)) + data, x, 2, 30, 13, pf, fb)
        np.testing.assert_array_equal(fb[2:15, x:x + 30], expected_rgb(pf, vals))


ZRLE_KINDS = [("raw", None), ("solid", 1), ("packed", 2), ("packed", 3), ("packed", 9),
              ("plain_rle", 200), ("plain_rle", 3), ("palette_rle", 2), ("palette_rle", 100)]


@pytest.mark.parametrize("pf", ALL_PFS, ids=PF_IDS)
@pytest.mark.parametrize("kind,ncol", ZRLE_KINDS, ids=[f"{k}{n}" for k, n in ZRLE_KINDS])
def test_zrle_every_format_and_subencoding(pf: PixelFormat, kind: str, ncol: int | None) -> None:
    rng = np.random.default_rng(6)
    if kind in ("plain_rle", "palette_rle"):  # runs of varied lengths, some > 255
        ncol = min(ncol or 2, 1 << pf.depth)
        colours = random_values(pf, 1, ncol * 2, rng, ncolours=ncol)[0]
        lens = rng.choice([1, 2, 3, 17, 300, 600], size=200)
        seq = np.repeat(colours[rng.integers(0, ncol, size=200)], lens)
        seq = np.resize(seq, 70 * 66)
        vals = seq.reshape(66, 70)
        if kind == "palette_rle" and len(np.unique(vals[:64, :64])) < 2:
            pytest.skip("degenerate tile")  # pragma: no cover - seeded, never happens
    else:
        vals = random_values(pf, 66, 70, rng, ncolours=ncol)
    tiles = [vals[:64, :64], vals[:64, 64:], vals[64:, :64], vals[64:, 64:]]
    kinds = []
    for t in tiles:  # edge tiles may have fewer colours than the kind needs
        n = len(np.unique(t))
        k = kind
        if kind in ("packed", "palette_rle") and n < 2:
            k = "solid"
        if kind == "solid" and n > 1:
            k = "raw"
        kinds.append(k)
    fb = fresh_fb()
    decode_whole(ZrleDecoder(), encode_zrle(pf, vals, kinds, ZlibStream()), 3, 5, 70, 66, pf, fb)
    assert_rect(fb, 3, 5, expected_rgb(pf, vals))


TIGHT_KINDS = [("copy", None), ("copy_implicit", None), ("palette", 2), ("palette", 7),
               ("gradient", None), ("fill", 1)]


@pytest.mark.parametrize("pf", ALL_PFS, ids=PF_IDS)
@pytest.mark.parametrize("kind,ncol", TIGHT_KINDS, ids=[f"{k}{n}" for k, n in TIGHT_KINDS])
def test_tight_every_format_and_filter(pf: PixelFormat, kind: str, ncol: int | None) -> None:
    rng = np.random.default_rng(7)
    streams = [ZlibStream() for _ in range(4)]
    dec, fb = TightDecoder(), fresh_fb()
    for i, (w, h) in enumerate([(29, 17), (3, 1), (2, 2)]):  # small ones go uncompressed
        if kind == "gradient":  # smooth picture plus noise: exercises the clamping
            yy, xx = np.mgrid[0:h, 0:w]
            base = random_values(pf, h, w, rng)
            vals = np.where((xx + yy) % 3 == 0, base, base[0, 0])
        else:
            vals = random_values(pf, h, w, rng, ncolours=ncol)
        payload = encode_tight(pf, vals, kind, streams, stream_id=i % 4)
        decode_whole(dec, payload, 4 + 30 * i, 6, w, h, pf, fb)
        np.testing.assert_array_equal(fb[6:6 + h, 4 + 30 * i:4 + 30 * i + w],
                                      expected_rgb(pf, vals))


def test_tight_stream_reset_bits() -> None:
    pf = PF_BGRX
    rng = np.random.default_rng(8)
    streams = [ZlibStream() for _ in range(4)]
    dec, fb = TightDecoder(), fresh_fb()
    for step in range(6):
        sid = step % 2 + 1
        reset = (1 << sid) if step >= 2 else 0
        vals = random_values(pf, 10, 20, rng, ncolours=3)
        payload = encode_tight(pf, vals, "copy", streams, stream_id=sid, reset=reset)
        decode_whole(dec, payload, 0, 0, 20, 10, pf, fb)
        np.testing.assert_array_equal(fb[:10, :20], expected_rgb(pf, vals))


def test_tight_jpeg_matches_pillow_decode() -> None:
    rng = np.random.default_rng(9)
    yy, xx = np.mgrid[0:40, 0:56]
    rgb = np.stack([xx * 4, yy * 6, (xx + yy) * 2], axis=-1).astype(np.uint8)
    rgb[::7] = rng.integers(0, 256, (rgb[::7].shape), dtype=np.uint8)
    payload, decoded = encode_tight_jpeg(rgb)
    fb = fresh_fb()
    decode_whole(TightDecoder(), payload, 10, 20, 56, 40, PF_BGRX, fb)
    assert_rect(fb, 10, 20, decoded)


def test_tight_compact_length_forms() -> None:
    assert compact_length(0x7F) == b"\x7f"
    assert compact_length(0x80) == b"\x80\x01"
    assert compact_length(10000) == b"\x90\x4e"
    assert compact_length(0x3FFFFF) == b"\xff\xff\xff"
    # a 3-byte compact length in a real rectangle: 200x100 random pixels
    pf = PF_BGRX
    vals = random_values(pf, 100, 200, np.random.default_rng(10))
    payload = encode_tight(pf, vals, "copy", [ZlibStream() for _ in range(4)])
    assert payload[2] & 0x80 and payload[3] & 0x80  # compact length takes 3 bytes
    fb = fresh_fb(100, 200)
    decode_whole(TightDecoder(), payload, 0, 0, 200, 100, pf, fb)
    np.testing.assert_array_equal(fb, expected_rgb(pf, vals))


def test_zero_size_rectangles() -> None:
    fb = fresh_fb()
    decs = make_decoders()
    assert decs[Encoding.RAW].decode(memoryview(b""), 0, 0, 0, 5, PF_BGRX, fb) == 0
    assert decs[Encoding.HEXTILE].decode(memoryview(b""), 0, 0, 5, 0, PF_BGRX, fb) == 0
    data = ZlibStream().pack(b"")
    assert decs[Encoding.ZRLE].decode(memoryview(u32(len(data)) + data), 0, 0, 0, 0,
                                      PF_BGRX, fb) == 4 + len(data)
    assert (fb == 7).all()


# -- split delivery ------------------------------------------------------------
def split_cases() -> list[tuple[str, PixelFormat, int, int, list[bytes], RectDecoder]]:
    rng = np.random.default_rng(11)
    pf = PF_MS_BE
    w, h = 40, 70
    v2 = random_values(pf, h, w, rng, ncolours=2)
    v5 = random_values(pf, h, w, rng, ncolours=5)
    zs = ZlibStream()
    ts = [ZlibStream() for _ in range(4)]
    rre = encode_rre(pf, int(v2[0, 0]), [(int(v5[1, 1]), 1, 2, 3, 4), (int(v5[2, 2]), 0, 0, 1, 1)])
    return [
        ("raw", pf, w, h, [pixels(pf, v5)], make_decoders()[0]),
        ("rre", pf, 4, 6, [rre], make_decoders()[2]),
        ("hextile", pf, w, h, [encode_hextile(pf, v5)], HextileDecoder()),
        ("zlib", pf, w, h, [u32(len(d)) + d for d in [ZlibStream().pack(pixels(pf, v5))]],
         ZlibDecoder()),
        ("zrle", pf, w, h, [encode_zrle(pf, v, "palette_rle", zs) for v in (v2, v5)],
         ZrleDecoder()),
        ("tight", pf, w, h, [encode_tight(pf, v2, "palette", ts, 0),
                             encode_tight(pf, v5, "gradient", ts, 1, reset=1),
                             encode_tight(pf, v5, "copy", ts, 0)], TightDecoder()),
    ]


@pytest.mark.parametrize("name", ["raw", "rre", "hextile", "zlib", "zrle", "tight"])
def test_split_delivery_matches_whole(name: str) -> None:
    case = next(c for c in split_cases() if c[0] == name)
    _, pf, w, h, payloads, dec = case
    rng = np.random.default_rng(12)
    whole_dec = next(c for c in split_cases() if c[0] == name)[5]
    for i, payload in enumerate(payloads):
        fb_whole, fb_split = fresh_fb(), fresh_fb()
        decode_whole(whole_dec, payload, 2, 3, w, h, pf, fb_whole)
        if i == 0:
            steps = list(range(len(payload)))  # byte by byte
        else:
            steps = sorted(int(s) for s in rng.integers(0, len(payload), 25))
        decode_split(dec, payload, 2, 3, w, h, pf, fb_split, steps)
        np.testing.assert_array_equal(fb_split, fb_whole)


def test_hextile_resumes_instead_of_rescanning() -> None:
    pf = PF_BGRX
    vals = random_values(pf, 256, 256, np.random.default_rng(13), ncolours=4)
    payload = encode_hextile(pf, vals)
    dec = HextileDecoder()
    fb = fresh_fb(256, 256)
    seen = []
    for k in range(4096, len(payload), 4096):
        assert dec.decode(memoryview(payload[:k]), 0, 0, 256, 256, pf, fb) is None
        assert dec._progress is not None
        seen.append(dec._progress.tile)
    assert seen == sorted(seen) and seen[-1] > seen[0]
    assert dec.decode(memoryview(payload), 0, 0, 256, 256, pf, fb) == len(payload)
    assert dec._progress is None
    np.testing.assert_array_equal(fb, expected_rgb(pf, vals))


def test_tight_gradient_smooth_picture_takes_the_prefix_sum_path() -> None:
    """A smooth ramp never clamps a prediction: the vectorised prefix-sum path must
    give the same picture as the per-diagonal path (checked against the encoder)."""
    from xcpconsole.rfb.decoders import tight

    pf = PF_BGRX
    yy, xx = np.mgrid[0:40, 0:50]
    vals = ((xx * 2 + yy) << 16) | ((yy * 3) << 8) | (xx + yy)
    payload = encode_tight(pf, vals, "gradient", [ZlibStream() for _ in range(4)])
    body = payload[2 + len(compact_length(len(payload) - 5)):]
    diff = np.frombuffer(zlib.decompressobj().decompress(body), np.uint8)
    comps = diff.reshape(40, 50, 3).astype(np.int32)
    maxes = np.array([255, 255, 255], np.int32)
    fast = tight._gradient_unclamped(comps, maxes)
    assert fast is not None
    slow = tight._gradient_diagonals(comps.reshape(-1, 3), 50, 40, maxes)
    np.testing.assert_array_equal(fast, slow)
    fb = fresh_fb()
    decode_whole(TightDecoder(), payload, 1, 1, 50, 40, pf, fb)
    assert_rect(fb, 1, 1, expected_rgb(pf, vals))


@pytest.mark.parametrize("pf", [PF_BGRX, PF_XRGB_BE, PF_MS_BE, PF_565, PF_233],
                         ids=["bgrx", "xrgb-be", "ms-be", "565", "233"])
def test_round_trip_with_project_encoders(pf: PixelFormat) -> None:
    """Our decoders read what rfb.encoders (another author's code) writes."""
    from xcpconsole.rfb.encoders import hextile, raw, zrle

    rng = np.random.default_rng(14)
    zenc, zdec = zrle.ZrleEncoder(), ZrleDecoder()
    for ncol in (None, 2, 6, 40):
        vals = random_values(pf, 70, 90, rng, ncolours=ncol)
        rgb = expected_rgb(pf, vals)
        for enc, payload in ((Encoding.RAW, raw.encode(rgb, pf)),
                             (Encoding.HEXTILE, hextile.encode(rgb, pf)),
                             (Encoding.ZRLE, zenc.encode(rgb, pf))):
            fb = fresh_fb()
            dec = zdec if enc == Encoding.ZRLE else make_decoders()[enc]
            decode_whole(dec, payload, 30, 10, 90, 70, pf, fb)
            assert_rect(fb, 30, 10, rgb)
