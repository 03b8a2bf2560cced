"""PC Screen Font (PSF1 / PSF2) loading: the Linux console's own bitmap fonts.

vncterm draws its text with a VGA-style 8x16 font; the simulator uses the same
kind of font from Debian's ``console-setup-linux`` package
(``/usr/share/consolefonts/*.psf.gz``) rather than shipping one.  The format is
tiny (a header, glyph bitmaps row by row, an optional Unicode table), so it is
parsed here instead of pulling in a dependency.  Glyphs come out as one
boolean NumPy array ``(count, height, width)`` so the renderer can build a whole
screen by fancy indexing.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ..backends import BackendError

CONSOLEFONTS = Path("/usr/share/consolefonts")
#: Tried in order; all are 8x16 PSF1 fonts of console-setup-linux with a Unicode table.
DEFAULT_FONTS = ("Lat15-VGA16.psf.gz", "Uni2-VGA16.psf.gz", "default8x16.psf.gz")
FONT_PACKAGE = "console-setup-linux"

PSF1_MAGIC = b"\x36\x04"
PSF2_MAGIC = b"\x72\xb5\x4a\x86"
_PSF1_MODE512 = 0x01
_PSF1_MODEHASTAB = 0x02
_PSF1_SEPARATOR = 0xFFFF
_PSF1_STARTSEQ = 0xFFFE
_PSF2_HAS_UNICODE_TABLE = 0x01
_PSF2_HEADER = struct.Struct("<4sIIIIIII")
_PSF2_SEPARATOR = 0xFF
_PSF2_STARTSEQ = 0xFE

#: Bounds for a font file (the real ones are a few KiB): a hostile or corrupt file
#: must not make us allocate gigabytes.
MAX_FONT_BYTES = 1 << 22
MAX_GLYPHS = 65536
MAX_GLYPH_SIDE = 64

Glyphs = npt.NDArray[np.bool_]


class FontError(BackendError):
    """A console font is missing or malformed."""


@dataclass(frozen=True)
class PsfFont:
    """Glyph bitmaps plus the character -> glyph index map of a PSF font."""

    glyphs: Glyphs  # (count, height, width) bool, True = foreground pixel
    unicode_map: dict[str, int] = field(default_factory=dict)

    @property
    def height(self) -> int:
        return int(self.glyphs.shape[1])

    @property
    def width(self) -> int:
        return int(self.glyphs.shape[2])

    def index(self, char: str) -> int:
        """Glyph index for ``char``: the Unicode table's entry, else the code point itself
        when the font has no table (CP437-like), else the glyph of ``?``."""
        found = self.unicode_map.get(char)
        if found is not None:
            return found
        if not self.unicode_map and len(char) == 1 and ord(char) < len(self.glyphs):
            return ord(char)
        return self.unicode_map.get("?", 0)

    def glyph(self, char: str) -> Glyphs:
        glyph: Glyphs = self.glyphs[self.index(char)]
        return glyph


def parse_psf(data: bytes) -> PsfFont:
    """Parse an uncompressed PSF1 or PSF2 font; :class:`FontError` when malformed."""
    if data[:2] == PSF1_MAGIC:
        return _parse_psf1(data)
    if data[:4] == PSF2_MAGIC:
        return _parse_psf2(data)
    raise FontError("not a PSF font (bad magic number)")


def _bitmaps(data: bytes, offset: int, count: int, height: int, width: int) -> Glyphs:
    row_bytes = (width + 7) // 8
    size = count * height * row_bytes
    if offset + size > len(data):
        raise FontError(f"font truncated: {count} glyphs need {size} bytes after the header")
    raw = np.frombuffer(data, np.uint8, size, offset).reshape(count, height, row_bytes)
    bits = np.unpackbits(raw, axis=2)[:, :, :width]  # most significant bit = leftmost pixel
    return bits.astype(bool)


def _parse_psf1(data: bytes) -> PsfFont:
    if len(data) < 4:
        raise FontError("PSF1 header truncated")
    mode, height = data[2], data[3]
    count = 512 if mode & _PSF1_MODE512 else 256
    if not 0 < height <= MAX_GLYPH_SIDE:
        raise FontError(f"PSF1 glyph height {height} out of range")
    glyphs = _bitmaps(data, 4, count, height, 8)
    table: dict[str, int] = {}
    if mode & _PSF1_MODEHASTAB:
        pos = 4 + count * height
        n_units = (len(data) - pos) // 2
        units = struct.unpack_from(f"<{n_units}H", data, pos)
        glyph = 0
        in_sequence = False
        for unit in units:
            if glyph >= count:
                break
            if unit == _PSF1_SEPARATOR:
                glyph += 1
                in_sequence = False
            elif unit == _PSF1_STARTSEQ:
                in_sequence = True  # combining sequences: not needed for a console
            elif not in_sequence and not 0xD800 <= unit < 0xE000:
                table.setdefault(chr(unit), glyph)
    return PsfFont(glyphs, table)


def _parse_psf2(data: bytes) -> PsfFont:
    if len(data) < _PSF2_HEADER.size:
        raise FontError("PSF2 header truncated")
    _, _version, header_size, flags, count, charsize, height, width = _PSF2_HEADER.unpack_from(
        data
    )
    if not (0 < width <= MAX_GLYPH_SIDE and 0 < height <= MAX_GLYPH_SIDE):
        raise FontError(f"PSF2 glyph size {width}x{height} out of range")
    if not 0 < count <= MAX_GLYPHS:
        raise FontError(f"PSF2 glyph count {count} out of range")
    if charsize != height * ((width + 7) // 8):
        raise FontError(f"PSF2 glyph size {charsize} does not match {width}x{height}")
    if not _PSF2_HEADER.size <= header_size <= len(data):
        raise FontError(f"PSF2 header size {header_size} out of range")
    glyphs = _bitmaps(data, header_size, count, height, width)
    table: dict[str, int] = {}
    if flags & _PSF2_HAS_UNICODE_TABLE:
        pos = header_size + count * charsize
        for glyph, entry in enumerate(data[pos:].split(bytes([_PSF2_SEPARATOR]))):
            if glyph >= count:
                break
            singles = entry.split(bytes([_PSF2_STARTSEQ]), 1)[0]
            for char in singles.decode("utf-8", "ignore"):
                table.setdefault(char, glyph)
    return PsfFont(glyphs, table)


def read_font_file(path: Path) -> PsfFont:
    """Read a ``.psf`` or ``.psf.gz`` file (bounded in size)."""
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_FONT_BYTES + 1)
    except OSError as exc:
        raise FontError(f"cannot read console font {path}: {exc.strerror or exc}") from exc
    if raw[:2] == b"\x1f\x8b":
        raw = _gunzip(raw, path)
    if len(raw) > MAX_FONT_BYTES:
        raise FontError(f"console font {path} is larger than {MAX_FONT_BYTES} bytes")
    try:
        return parse_psf(raw)
    except FontError as exc:
        raise FontError(f"{path}: {exc}") from exc


def _gunzip(raw: bytes, path: Path) -> bytes:
    """Decompress at most MAX_FONT_BYTES + 1 bytes (a gzip bomb stops there)."""
    try:
        return zlib.decompressobj(wbits=31).decompress(raw, MAX_FONT_BYTES + 1)
    except zlib.error as exc:
        raise FontError(f"console font {path}: corrupt gzip data ({exc})") from exc


_cache: dict[Path, PsfFont] = {}


def load_console_font(path: Path | None = None) -> PsfFont:
    """The terminal's 8x16 font: ``path``, or the first of :data:`DEFAULT_FONTS` found.

    Raises :class:`FontError` naming the Debian package when no font is installed.
    """
    candidates = [path] if path is not None else [CONSOLEFONTS / n for n in DEFAULT_FONTS]
    for candidate in candidates:
        if candidate in _cache:
            return _cache[candidate]
        if candidate.exists():
            font = read_font_file(candidate)
            if (font.width, font.height) != (8, 16):
                raise FontError(f"{candidate} is {font.width}x{font.height}, need an 8x16 font")
            _cache[candidate] = font
            return font
    names = ", ".join(str(c) for c in candidates)
    raise FontError(
        f"no console font found (looked for {names}); install the Debian package "
        f"{FONT_PACKAGE} (apt-get install {FONT_PACKAGE})"
    )
