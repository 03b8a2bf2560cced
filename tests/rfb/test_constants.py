"""The one table of RFB numbers and the one default encoding list."""

from __future__ import annotations

import pytest

from xcpconsole.rfb import constants as c
from xcpconsole.rfb.client import ClientConnection
from xcpconsole.rfb.constants import Encoding


def test_quality_and_level_helpers() -> None:
    assert c.jpeg_quality(0) == -32 and c.jpeg_quality(9) == -23
    assert c.compress_level(0) == -256 and c.compress_level(9) == -247
    assert list(c.JPEG_QUALITY_ENCODINGS) == [c.jpeg_quality(q) for q in range(10)]
    assert list(c.COMPRESS_LEVEL_ENCODINGS) == [c.compress_level(n) for n in range(10)]
    for q in range(10):
        assert c.jpeg_quality_of(c.jpeg_quality(q)) == q
        assert c.compress_level_of(c.compress_level(q)) == q
    assert c.jpeg_quality_of(-22) is None and c.jpeg_quality_of(-33) is None
    assert c.compress_level_of(-246) is None and c.compress_level_of(Encoding.RAW) is None
    with pytest.raises(ValueError):
        c.jpeg_quality(10)
    with pytest.raises(ValueError):
        c.compress_level(-1)


def test_named_numbers() -> None:
    assert (Encoding.QEMU_EXTENDED_KEY_EVENT, Encoding.QEMU_LED_STATE, Encoding.DESKTOP_NAME,
            Encoding.EXTENDED_DESKTOP_SIZE, Encoding.XVP) == (-258, -261, -307, -308, -309)
    assert (c.ClientMsg.SET_DESKTOP_SIZE, c.ClientMsg.QEMU, c.ClientMsg.XVP) == (251, 255, 250)
    assert c.QemuClientMsg.EXTENDED_KEY_EVENT == 0
    assert c.PUBLISHED_VERSIONS == ((3, 3), (3, 7), (3, 8))


def test_one_default_encoding_list() -> None:
    assert c.DEFAULT_ENCODINGS == c.PREFERRED_ENCODINGS + c.DEFAULT_PSEUDO_ENCODINGS
    assert all(e >= 0 for e in c.PREFERRED_ENCODINGS)
    assert all(e < 0 for e in c.DEFAULT_PSEUDO_ENCODINGS)
    assert len(set(c.DEFAULT_ENCODINGS)) == len(c.DEFAULT_ENCODINGS)
    # screenshots must show the pointer: Cursor is never asked for by default
    assert Encoding.CURSOR not in c.DEFAULT_ENCODINGS
    assert ClientConnection().encodings == tuple(c.DEFAULT_ENCODINGS)
