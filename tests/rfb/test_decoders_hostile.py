"""Decoders against a hostile server: garbage, truncation, lies about sizes, zlib bombs.

The only acceptable outcomes are a result (None or a byte count within the data)
or a ProtocolError subclass, with memory bounded by the rectangle's size.
"""

from __future__ import annotations

import io
import tracemalloc
import zlib

import numpy as np
import pytest
from decoder_payloads import (
    ALL_PFS,
    PF_565,
    PF_BGRX,
    ZlibStream,
    compact_length,
    encode_hextile,
    encode_rre,
    encode_tight,
    encode_zrle,
    random_values,
    u32,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from xcpconsole.errors import LimitExceededError, ProtocolError, UnsupportedError
from xcpconsole.rfb.constants import Encoding
from xcpconsole.rfb.decoders import (
    HextileDecoder,
    TightDecoder,
    ZlibDecoder,
    ZrleDecoder,
    make_decoders,
)
from xcpconsole.rfb.pixelformat import PixelFormat

ENCODINGS = sorted(int(e) for e in make_decoders())
COLOUR_MAP_PF = PixelFormat(8, 8, False, False, 0, 0, 0, 0, 0, 0)


def try_decode(enc: int, data: bytes, w: int, h: int, pf: PixelFormat,
               dec: object | None = None) -> int | None:
    d = dec if dec is not None else make_decoders()[enc]
    fb = np.zeros((64, 80, 3), dtype=np.uint8)
    try:
        n = d.decode(memoryview(data), 3, 2, w, h, pf, fb)  # type: ignore[attr-defined]
    except ProtocolError:
        return -1
    assert n is None or 0 <= n <= len(data)
    return n  # type: ignore[no-any-return]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(enc=st.sampled_from(ENCODINGS), data=st.binary(max_size=600),
       w=st.integers(0, 70), h=st.integers(0, 60), pf=st.sampled_from(ALL_PFS))
def test_random_bytes_only_protocol_errors(enc: int, data: bytes, w: int, h: int,
                                           pf: PixelFormat) -> None:
    try_decode(enc, data, w, h, pf)


def valid_payloads() -> list[tuple[int, bytes, PixelFormat]]:
    rng = np.random.default_rng(20)
    out = []
    for pf in (PF_BGRX, PF_565):
        v2 = random_values(pf, 30, 40, rng, ncolours=2)
        v9 = random_values(pf, 30, 40, rng, ncolours=9)
        out.append((Encoding.HEXTILE, encode_hextile(pf, v9), pf))
        out.append((Encoding.RRE, encode_rre(pf, 1, [(2, 1, 1, 5, 5), (3, 30, 20, 10, 10)]), pf))
        for kind in ("raw", "packed", "plain_rle", "palette_rle"):
            out.append((Encoding.ZRLE, encode_zrle(pf, v9, kind, ZlibStream()), pf))
        for kind, v in (("palette", v2), ("palette", v9), ("gradient", v9), ("copy", v9)):
            out.append((Encoding.TIGHT,
                        encode_tight(pf, v, kind, [ZlibStream() for _ in range(4)]), pf))
    return out


VALID = valid_payloads()


@settings(max_examples=300, deadline=None)
@given(case=st.sampled_from(VALID), pos=st.integers(0, 10_000), byte=st.integers(0, 255),
       cut=st.integers(0, 10_000), extra=st.binary(max_size=8))
def test_mutated_valid_payloads_only_protocol_errors(
        case: tuple[int, bytes, PixelFormat], pos: int, byte: int, cut: int,
        extra: bytes) -> None:
    enc, payload, pf = case
    data = bytearray(payload)
    data[pos % len(data)] = byte
    data = data[:max(1, len(data) - cut % 40)] + extra
    try_decode(enc, bytes(data), 40, 30, pf)


@pytest.mark.parametrize("case", VALID, ids=lambda c: str(c[0]))
def test_every_prefix_of_a_valid_payload_waits(case: tuple[int, bytes, PixelFormat]) -> None:
    enc, payload, pf = case
    for k in range(0, len(payload), max(1, len(payload) // 97)):
        assert try_decode(enc, payload[:k], 40, 30, pf) is None, k


# -- zlib bombs and lying lengths ------------------------------------------------
BOMB = 64 << 20  # 64 MiB of zeros in ~64 KiB of deflate


def bomb_stream() -> bytes:
    c = zlib.compressobj(9)
    chunk = bytes(1 << 20)
    return b"".join(c.compress(chunk) for _ in range(BOMB >> 20)) + c.flush(zlib.Z_SYNC_FLUSH)


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return bomb_stream()


def assert_bounded_limit_error(dec: object, payload: bytes, w: int, h: int) -> None:
    fb = np.zeros((64, 80, 3), dtype=np.uint8)
    tracemalloc.start()
    try:
        with pytest.raises(LimitExceededError):
            dec.decode(memoryview(payload), 0, 0, w, h, PF_BGRX, fb)  # type: ignore[attr-defined]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, f"decoding a bomb allocated {peak} bytes"


def test_zlib_bomb_in_zlib_encoding(bomb: bytes) -> None:
    assert_bounded_limit_error(ZlibDecoder(), u32(len(bomb)) + bomb, 32, 32)


def test_zlib_bomb_in_zrle(bomb: bytes) -> None:
    assert_bounded_limit_error(ZrleDecoder(), u32(len(bomb)) + bomb, 32, 32)


def test_zlib_bomb_in_tight(bomb: bytes) -> None:
    payload = b"\x00" + compact_length(len(bomb)) + bomb
    assert_bounded_limit_error(TightDecoder(), payload, 32, 32)


@pytest.mark.parametrize("enc", [Encoding.ZLIB, Encoding.ZRLE])
def test_huge_declared_length_refused_before_buffering(enc: int) -> None:
    with pytest.raises(LimitExceededError):
        make_decoders()[enc].decode(memoryview(u32(0xFFFFFFFF)), 0, 0, 8, 8, PF_BGRX,
                                    np.zeros((8, 8, 3), np.uint8))


@pytest.mark.parametrize("ctl", [0x00, 0x90])  # basic copy filter, JPEG
def test_tight_huge_compact_length_refused(ctl: int) -> None:
    with pytest.raises(LimitExceededError):
        TightDecoder().decode(memoryview(bytes([ctl]) + b"\xff\xff\xff"), 0, 0, 8, 8,
                              PF_BGRX, np.zeros((8, 8, 3), np.uint8))


def test_rre_count_beyond_rectangle_refused() -> None:
    with pytest.raises(ProtocolError):
        make_decoders()[Encoding.RRE].decode(memoryview(u32(1125) + bytes(4)), 0, 0, 10, 10,
                                             PF_BGRX, np.zeros((10, 10, 3), np.uint8))


# -- geometry lies ----------------------------------------------------------------
@pytest.mark.parametrize("enc", ENCODINGS)
def test_rectangle_outside_framebuffer(enc: int) -> None:
    with pytest.raises(ProtocolError):
        make_decoders()[enc].decode(memoryview(bytes(100)), 70, 0, 20, 5, PF_BGRX,
                                    np.zeros((64, 80, 3), np.uint8))


def test_copyrect_source_outside() -> None:
    with pytest.raises(ProtocolError):
        make_decoders()[Encoding.COPYRECT].decode(memoryview(b"\x00\x46\x00\x00"), 0, 0, 20,
                                                  5, PF_BGRX, np.zeros((64, 80, 3), np.uint8))


def test_rre_subrect_outside() -> None:
    payload = encode_rre(PF_BGRX, 0, [(1, 8, 0, 3, 1)])
    with pytest.raises(ProtocolError, match="outside"):
        make_decoders()[Encoding.RRE].decode(memoryview(payload), 0, 0, 10, 10, PF_BGRX,
                                             np.zeros((10, 10, 3), np.uint8))


@pytest.mark.parametrize("w,xy,wh", [(16, 0xF0, 0x10), (20, 0x00, 0x40)])
def test_hextile_subrect_outside_tile(w: int, xy: int, wh: int) -> None:
    # first tile fine; second (4 px wide when w=20) gets the bad subrect when w=20
    good = bytes([2 | 8, 0, 0, 0, 0, 1, 0x00, 0x00])
    bad = bytes([8, 1, xy, wh])
    payload = bad if w == 16 else good + bad
    with pytest.raises(ProtocolError, match="outside"):
        HextileDecoder().decode(memoryview(payload), 0, 0, w, 16, PF_BGRX,
                                np.zeros((16, 20, 3), np.uint8))


def test_hextile_decoder_usable_after_error() -> None:
    dec = HextileDecoder()
    fb = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(ProtocolError):
        dec.decode(memoryview(bytes([8, 1, 0xF0, 0x10])), 0, 0, 16, 16, PF_BGRX, fb)
    ok = bytes([2, 1, 2, 3, 0])
    assert dec.decode(memoryview(ok), 0, 0, 16, 16, PF_BGRX, fb) == 5
    assert (fb == [3, 2, 1]).all()


# -- invalid sub-encodings ------------------------------------------------------------
def zrle_payload(raw: bytes) -> bytes:
    data = ZlibStream().pack(raw)
    return u32(len(data)) + data


@pytest.mark.parametrize("raw,match", [
    (bytes([17]), "subencoding"),
    (bytes([129]), "subencoding"),
    (bytes([128, 1, 2, 3, 255, 255]), "truncated|crosses"),        # plain RLE past tile end
    (bytes([130, 1, 2, 3, 4, 5, 6, 0x80, 100]), "fill"),           # palette RLE too short
    (bytes([1, 1, 2, 3, 99]), "left after"),                        # trailing garbage
    (bytes([0, 1, 2]), "truncated"),                                # raw tile truncated
])
def test_zrle_invalid_tiles(raw: bytes, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        ZrleDecoder().decode(memoryview(zrle_payload(raw)), 0, 0, 8, 8, PF_BGRX,
                             np.zeros((8, 8, 3), np.uint8))


def test_zrle_corrupt_zlib() -> None:
    with pytest.raises(ProtocolError, match="zlib"):
        ZrleDecoder().decode(memoryview(u32(6) + b"garbag"), 0, 0, 8, 8, PF_BGRX,
                             np.zeros((8, 8, 3), np.uint8))


@pytest.mark.parametrize("payload,exc", [
    (bytes([0xA0, 1, 0]), UnsupportedError),            # PNG
    (bytes([0xB0, 1, 0]), ProtocolError),               # no such compression type
    (bytes([0x40, 3]), ProtocolError),                  # no such filter
    (bytes([0x90, 4]) + b"nope", ProtocolError),        # not a JPEG
])
def test_tight_invalid_control(payload: bytes, exc: type[Exception]) -> None:
    with pytest.raises(exc):
        TightDecoder().decode(memoryview(payload), 0, 0, 8, 8, PF_BGRX,
                              np.zeros((8, 8, 3), np.uint8))


def test_tight_jpeg_of_the_wrong_size() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (1, 2, 3)).save(buf, "JPEG")
    jpeg = buf.getvalue()
    with pytest.raises(ProtocolError, match="16x16"):
        TightDecoder().decode(memoryview(b"\x90" + compact_length(len(jpeg)) + jpeg), 0, 0,
                              8, 8, PF_BGRX, np.zeros((8, 8, 3), np.uint8))


def test_tight_truncated_jpeg() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(buf, "JPEG")
    jpeg = buf.getvalue()[:-40]
    with pytest.raises(ProtocolError):
        TightDecoder().decode(memoryview(b"\x90" + compact_length(len(jpeg)) + jpeg), 0, 0,
                              8, 8, PF_BGRX, np.zeros((8, 8, 3), np.uint8))


def test_tight_zlib_data_shorter_than_rectangle() -> None:
    data = ZlibStream().pack(bytes(20))  # 8x8 copy filter needs 192 bytes
    with pytest.raises(ProtocolError, match="expected 192"):
        TightDecoder().decode(memoryview(b"\x00" + compact_length(len(data)) + data), 0, 0,
                              8, 8, PF_BGRX, np.zeros((8, 8, 3), np.uint8))


@pytest.mark.parametrize("enc", [Encoding.RAW, Encoding.HEXTILE, Encoding.ZRLE])
def test_colour_map_formats_refused(enc: int) -> None:
    with pytest.raises(ProtocolError):
        make_decoders()[enc].decode(memoryview(bytes(2000)), 0, 0, 4, 4, COLOUR_MAP_PF,
                                    np.zeros((8, 8, 3), np.uint8))


@settings(max_examples=400, deadline=None)
@given(raw=st.binary(max_size=400), w=st.integers(0, 70), h=st.integers(0, 70),
       pf=st.sampled_from(ALL_PFS))
def test_zrle_random_tile_data_behind_valid_zlib(raw: bytes, w: int, h: int,
                                                 pf: PixelFormat) -> None:
    try_decode(Encoding.ZRLE, zrle_payload(raw), min(w, 77), min(h, 62), pf)


@settings(max_examples=400, deadline=None)
@given(ctl=st.integers(0, 255), head=st.binary(max_size=40), raw=st.binary(max_size=400),
       w=st.integers(0, 30), h=st.integers(0, 30), pf=st.sampled_from(ALL_PFS))
def test_tight_random_filter_data_behind_valid_zlib(ctl: int, head: bytes, raw: bytes, w: int,
                                                    h: int, pf: PixelFormat) -> None:
    data = ZlibStream().pack(raw)
    try_decode(Encoding.TIGHT, bytes([ctl]) + head + compact_length(len(data)) + data, w, h, pf)
