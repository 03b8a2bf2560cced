"""Expected pixels of the virtual terminal's text, computed independently of sim/vncterm.

The glyphs are read straight from the PSF1 file's bytes (``Lat15-VGA16`` maps
printable ASCII to glyph ``ord(c)``; test_vncterm checks that), so a bug in the
terminal's font parser or renderer cannot make both sides agree.
"""

from __future__ import annotations

import gzip
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

FONT_FILE = Path("/usr/share/consolefonts/Lat15-VGA16.psf.gz")
CELL_W, CELL_H, COLS, ROWS = 8, 16, 80, 24
FG = (170, 170, 170)  # VGA light grey, the console's default foreground
BG = (0, 0, 0)


@cache
def _font_bytes() -> bytes:
    if not FONT_FILE.exists():
        pytest.fail(f"{FONT_FILE} missing: install the Debian package console-setup-linux")
    return gzip.decompress(FONT_FILE.read_bytes())


def glyph_bits(char: str) -> np.ndarray:
    """(16, 8) bool bitmap of a printable ASCII character, bit by bit from the file."""
    code = ord(char)
    assert 0x20 <= code < 0x7F, char
    data = _font_bytes()
    assert data[:2] == b"\x36\x04" and data[3] == CELL_H
    rows = data[4 + code * CELL_H:4 + (code + 1) * CELL_H]
    return np.array([[(byte >> (7 - bit)) & 1 for bit in range(8)] for byte in rows], bool)


def expected_row(text: str, *, cursor: int | None = None, fg: tuple[int, int, int] = FG,
                 bg: tuple[int, int, int] = BG) -> np.ndarray:
    """Pixels (16, 640, 3) of one screen row holding ``text`` (padded with blanks), with
    the block cursor (inverted cell) at column ``cursor``."""
    row = np.zeros((CELL_H, COLS * CELL_W, 3), np.uint8)
    for col, char in enumerate(text.ljust(COLS)[:COLS]):
        bits = glyph_bits(char)
        f, b = (bg, fg) if col == cursor else (fg, bg)
        row[:, col * CELL_W:(col + 1) * CELL_W] = np.where(bits[..., None], f, b)
    return row


def row_pixels(img: np.ndarray, row: int) -> np.ndarray:
    return img[row * CELL_H:(row + 1) * CELL_H]


def rows_matching(img: np.ndarray, expected: np.ndarray) -> list[int]:
    """Text rows of a 640x384 screenshot whose pixels equal ``expected`` exactly."""
    assert img.shape == (ROWS * CELL_H, COLS * CELL_W, 3), img.shape
    return [r for r in range(ROWS) if np.array_equal(row_pixels(img, r), expected)]


def load_png(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).copy()
