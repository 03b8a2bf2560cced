"""Our client against QEMU's own VNC server (what a real host relays for HVM guests).

QEMU runs with no disk: SeaBIOS prints its banner and "No bootable device".  QEMU
is also the only common server that speaks the plain Zlib encoding.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from peerutil import QemuVnc

from xcpconsole.net.vnc import open_vnc, parse_encodings

pytestmark = pytest.mark.peers

ENCODINGS = ["raw", "hextile", "zlib", "zrle", "tight"]


def _text_pixels(img: np.ndarray) -> int:
    """Lit pixels in the top text rows (where SeaBIOS writes)."""
    return int((img[: 16 * 4].max(axis=2) > 64).sum())


async def _shot(target: str, encodings: str) -> tuple[np.ndarray, dict[int, int]]:
    async with await open_vnc(target, encodings=encodings) as vnc:
        img = await vnc.screenshot()
        return img, dict(vnc.stats.rects)


@pytest.fixture(scope="module")
def settled(qemu_vnc: QemuVnc) -> np.ndarray:
    """A Raw screenshot once SeaBIOS has written text and the screen stopped changing."""

    async def wait() -> np.ndarray:
        previous = None
        for _ in range(100):
            img, _ = await _shot(qemu_vnc.target, "raw")
            if _text_pixels(img) > 200 and previous is not None and _same(img, previous):
                return img
            previous = img
            await asyncio.sleep(0.2)
        pytest.fail("SeaBIOS text never appeared / settled on QEMU's screen")

    return asyncio.run(wait())


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal, except possibly one character cell (the blinking text cursor)."""
    if a.shape != b.shape:
        return False
    diff = np.argwhere((a != b).any(axis=2))
    if diff.size == 0:
        return True
    (y0, x0), (y1, x1) = diff.min(axis=0), diff.max(axis=0)
    return bool(y1 - y0 < 16 and x1 - x0 < 9)


def test_seabios_text_is_visible(settled: np.ndarray) -> None:
    assert settled.shape[1] >= 640 and settled.shape[0] >= 400
    assert _text_pixels(settled) > 200
    colours = np.unique(settled.reshape(-1, 3), axis=0)
    assert 2 <= len(colours) <= 16, len(colours)  # VGA text: background, foreground(s)


@pytest.mark.parametrize("name", ENCODINGS[1:])
async def test_encoding_equals_raw(qemu_vnc: QemuVnc, settled: np.ndarray, name: str) -> None:
    img, rects = await _shot(qemu_vnc.target, name)
    assert rects.get(parse_encodings(name)[0], 0) > 0, f"QEMU did not use {name}: {rects}"
    assert _same(img, settled), f"{name}: {(img != settled).any(axis=2).sum()} pixels differ"
