"""The terminal's screen: pyte's cell model drawn as pixels with a PSF font.

``pyte`` interprets the guest's byte stream (cursor moves, colours, scrolling);
this module turns its cells into an RGB frame buffer and says which cells
changed, so RFB clients get only the damaged rectangles.  Rendering is
vectorised: each cell is reduced to (glyph index, foreground, background,
underline) in small arrays, and the pixels of every changed row are built in one
NumPy indexing step (``glyphs[index]`` gives the row's bitmaps at once).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import numpy.typing as npt
import pyte

from ...rfb.pixelformat import RGB
from .font import PsfFont

COLS, ROWS = 80, 24

Colour = tuple[int, int, int]
CellMask = npt.NDArray[np.bool_]

#: The VGA text-mode palette the Linux console (and so vncterm's guests) uses.
ANSI_COLOURS: dict[str, Colour] = {
    "black": (0, 0, 0), "red": (170, 0, 0), "green": (0, 170, 0), "brown": (170, 85, 0),
    "blue": (0, 0, 170), "magenta": (170, 0, 170), "cyan": (0, 170, 170),
    "white": (170, 170, 170),
}
BRIGHT_COLOURS: dict[str, Colour] = {
    "black": (85, 85, 85), "red": (255, 85, 85), "green": (85, 255, 85),
    "brown": (255, 255, 85), "blue": (85, 85, 255), "magenta": (255, 85, 255),
    "cyan": (85, 255, 255), "white": (255, 255, 255),
}
DEFAULT_FG = ANSI_COLOURS["white"]
DEFAULT_BG = ANSI_COLOURS["black"]
#: Pixel row of the cell drawn for underlined text (as the VGA cursor/underline line).
UNDERLINE_ROW = 14
_MAX_CACHED_CELLS = 4096


@lru_cache(maxsize=512)
def colour(name: str, *, background: bool = False, bold: bool = False) -> Colour:
    """RGB of one of pyte's colour names (``red``, ``brightred``, ``default``) or hex
    strings (``ff8700``, from 256-colour / true-colour SGR).  Bold brightens the eight
    basic foreground colours, as on the Linux console."""
    if name == "default":
        if background:
            return DEFAULT_BG
        return BRIGHT_COLOURS["white"] if bold else DEFAULT_FG
    if name.startswith(("bright", "bfight")):  # pyte spells brightmagenta "bfightmagenta"
        return BRIGHT_COLOURS.get(name[6:], DEFAULT_FG)
    if name in ANSI_COLOURS:
        table = BRIGHT_COLOURS if bold and not background else ANSI_COLOURS
        return table[name]
    if len(name) == 6:
        try:
            value = int(name, 16)
        except ValueError:
            pass
        else:
            return (value >> 16) & 255, (value >> 8) & 255, value & 255
    return DEFAULT_BG if background else DEFAULT_FG


class TerminalScreen:
    """An 80x24 terminal whose frame buffer follows what the guest writes.

    ``feed`` returns a (rows, cols) boolean mask of the cells whose pixels changed,
    including the cells the cursor left and reached.
    """

    def __init__(self, font: PsfFont, cols: int = COLS, rows: int = ROWS) -> None:
        self.font = font
        self.cols, self.rows = cols, rows
        self.cell_width, self.cell_height = font.width, font.height
        self.width, self.height = cols * font.width, rows * font.height
        self._screen = pyte.Screen(cols, rows)
        self._stream = pyte.ByteStream(self._screen)
        self._attrs_of: dict[pyte.screens.Char, tuple[int, ...]] = {}
        self.index = np.zeros((rows, cols), np.int32)
        self.fg = np.zeros((rows, cols, 3), np.uint8)
        self.bg = np.zeros((rows, cols, 3), np.uint8)
        self.underline = np.zeros((rows, cols), bool)
        self.frame: RGB = np.zeros((self.height, self.width, 3), np.uint8)
        self._cursor_cell: tuple[int, int] | None = None
        self._refresh(range(rows))
        self._screen.dirty.clear()

    # -- the model -------------------------------------------------------------
    def feed(self, data: bytes) -> CellMask:
        """Interpret guest output and redraw; returns the mask of cells whose pixels changed."""
        self.write(data)
        return self.refresh()

    def write(self, data: bytes) -> None:
        """Interpret guest output without redrawing yet (a burst of output is drawn once,
        by the next :meth:`refresh`)."""
        self._stream.feed(data)

    def refresh(self) -> CellMask:
        """Redraw what changed since the last refresh; returns the changed cells."""
        rows = set(self._screen.dirty)
        self._screen.dirty.clear()
        for cell in (self._cursor_cell, self.cursor_cell()):
            if cell is not None:
                rows.add(cell[1])
        return self._refresh(sorted(r for r in rows if 0 <= r < self.rows))

    def cursor_cell(self) -> tuple[int, int] | None:
        """(column, row) of the visible cursor, None when the guest hid it."""
        cur = self._screen.cursor
        if cur.hidden:
            return None
        return min(cur.x, self.cols - 1), min(cur.y, self.rows - 1)

    @property
    def cursor(self) -> tuple[int, int]:
        """(column, row) of the cursor (visible or not)."""
        return self._screen.cursor.x, self._screen.cursor.y

    def lines(self) -> list[str]:
        """The screen as text, one string of ``cols`` characters per row."""
        return list(self._screen.display)

    def repaint_bytes(self) -> bytes:
        """VT100 bytes that redraw the current screen on a fresh terminal: what a
        text client joining late is sent first, so it sees the screen, not a void."""
        out = ["\x1b[0m\x1b[H\x1b[2J"]
        buffer = self._screen.buffer
        for y in range(self.rows):
            line = buffer[y]
            last = max((x for x in range(self.cols) if line[x].data not in (" ", "")),
                       default=-1)
            if last < 0:
                continue
            out.append(f"\x1b[{y + 1};1H")
            current = ""
            for x in range(last + 1):
                ch = line[x]
                sgr = _sgr(ch)
                if sgr != current:
                    out.append(sgr)
                    current = sgr
                out.append(ch.data or " ")
            out.append("\x1b[0m")
        cx, cy = self.cursor
        out.append(f"\x1b[{min(cy, self.rows - 1) + 1};{min(cx, self.cols - 1) + 1}H")
        if self._screen.cursor.hidden:
            out.append("\x1b[?25l")
        return "".join(out).encode("utf-8")

    # -- rendering ---------------------------------------------------------------
    def _cell_attrs(self, ch: pyte.screens.Char) -> tuple[int, ...]:
        """(glyph, fg r, g, b, bg r, g, b, underline) of a cell, cached per distinct Char:
        a screen holds few distinct ones, and this loop is the renderer's only Python part."""
        found = self._attrs_of.get(ch)
        if found is None:
            f = colour(ch.fg, bold=ch.bold)
            b = colour(ch.bg, background=True)
            if ch.reverse:
                f, b = b, f
            glyph = self.font.index(ch.data[:1] or " ")
            found = (glyph, *f, *b, int(ch.underscore))
            if len(self._attrs_of) >= _MAX_CACHED_CELLS:
                self._attrs_of.clear()
            self._attrs_of[ch] = found
        return found

    def _refresh(self, rows: range | list[int]) -> CellMask:
        """Recompute the cell arrays of ``rows`` and redraw the cells that changed."""
        damage = np.zeros((self.rows, self.cols), bool)
        cursor = self.cursor_cell()
        self._cursor_cell = cursor
        buffer = self._screen.buffer
        cells = range(self.cols)
        old_rows = {self._row_key(y): y for y in range(self.rows)} if len(rows) > 1 else {}
        for y in rows:
            line = buffer[y]
            attrs = np.array([self._cell_attrs(line[x]) for x in cells], np.int32)
            index = attrs[:, 0]
            fg = attrs[:, 1:4].astype(np.uint8)
            bg = attrs[:, 4:7].astype(np.uint8)
            under = attrs[:, 7].astype(bool)
            if cursor is not None and cursor[1] == y:
                cx = cursor[0]
                fg[cx], bg[cx] = bg[cx].copy(), fg[cx].copy()
            changed = ((index != self.index[y]) | (fg != self.fg[y]).any(axis=1)
                       | (bg != self.bg[y]).any(axis=1) | (under != self.underline[y]))
            if not changed.any():
                continue
            self.index[y], self.fg[y], self.bg[y], self.underline[y] = index, fg, bg, under
            damage[y] = changed
        redraw = np.flatnonzero(damage.any(axis=1))
        if redraw.size > 1:
            redraw = self._reuse_rows(redraw, old_rows)
        if redraw.size:
            self._draw_rows(redraw)
        return damage

    def _row_key(self, y: int) -> bytes:
        key: bytes = (self.index[y].tobytes() + self.fg[y].tobytes() + self.bg[y].tobytes()
                      + self.underline[y].tobytes())
        return key

    def _reuse_rows(self, rows: npt.NDArray[np.intp], old_rows: dict[bytes, int]
                    ) -> npt.NDArray[np.intp]:
        """Copy the pixels of rows that were already on screen elsewhere (a scroll moves
        every row: only the new line needs drawing); returns the rows still to draw."""
        old_frame = self.frame.copy()
        h = self.cell_height
        left = []
        for y in rows:
            src = old_rows.get(self._row_key(int(y)))
            if src is None:
                left.append(y)
            else:
                self.frame[y * h:(y + 1) * h] = old_frame[src * h:(src + 1) * h]
        return np.array(left, np.intp)

    def _draw_rows(self, rows: npt.NDArray[np.intp]) -> None:
        """Draw whole text rows into the frame, all in one vectorised step."""
        mask = self.font.glyphs[self.index[rows]]  # (n, cols, h, w)
        mask[:, :, UNDERLINE_ROW, :] |= self.underline[rows][:, :, None]
        pixels = np.where(mask[..., None], self.fg[rows][:, :, None, None, :],
                          self.bg[rows][:, :, None, None, :])  # (n, cols, h, w, 3)
        pixels = pixels.transpose(0, 2, 1, 3, 4).reshape(-1, self.cell_height, self.width, 3)
        view = self.frame.reshape(self.rows, self.cell_height, self.width, 3)
        view[rows] = pixels


def render_text(font: PsfFont, text: str, *, fg: Colour = DEFAULT_FG,
                bg: Colour = DEFAULT_BG) -> RGB:
    """Pixels of ``text`` drawn on one row of cells (tests compare screens against it)."""
    glyphs = font.glyphs[[font.index(c) for c in text]]  # (n, h, w)
    pixels = np.where(glyphs[..., None], np.array(fg, np.uint8), np.array(bg, np.uint8))
    return pixels.transpose(1, 0, 2, 3).reshape(font.height, len(text) * font.width, 3)


def damage_rects(mask: CellMask, cell_width: int, cell_height: int
                 ) -> list[tuple[int, int, int, int]]:
    """Pixel rectangles (x, y, w, h) covering the True cells of ``mask``.

    One span per row (first to last dirty column), merged with the rows below
    while the span stays the same: few rectangles, a little overdraw.
    """
    rects: list[tuple[int, int, int, int]] = []
    current: list[int] | None = None  # [x0, x1, y0, y1] in cells
    for y in range(mask.shape[0]):
        cols = np.flatnonzero(mask[y])
        span = None if cols.size == 0 else (int(cols[0]), int(cols[-1]) + 1)
        if current is not None and span == (current[0], current[1]) and current[3] == y:
            current[3] = y + 1
            continue
        if current is not None:
            rects.append(_to_pixels(current, cell_width, cell_height))
            current = None
        if span is not None:
            current = [span[0], span[1], y, y + 1]
    if current is not None:
        rects.append(_to_pixels(current, cell_width, cell_height))
    return rects


def _to_pixels(cells: list[int], cw: int, ch: int) -> tuple[int, int, int, int]:
    x0, x1, y0, y1 = cells
    return x0 * cw, y0 * ch, (x1 - x0) * cw, (y1 - y0) * ch


def cells_in(x: int, y: int, w: int, h: int, cols: int, rows: int, cw: int, ch: int) -> CellMask:
    """Mask of the cells that a pixel rectangle touches (an update request's area)."""
    mask = np.zeros((rows, cols), bool)
    if w <= 0 or h <= 0:
        return mask
    c0, r0 = max(0, x // cw), max(0, y // ch)
    c1, r1 = min(cols, -(-(x + w) // cw)), min(rows, -(-(y + h) // ch))
    mask[r0:r1, c0:c1] = True
    return mask


def _sgr(ch: pyte.screens.Char) -> str:
    codes = ["0"]
    if ch.bold:
        codes.append("1")
    if ch.underscore:
        codes.append("4")
    if ch.reverse:
        codes.append("7")
    codes += _colour_code(ch.fg, 30)
    codes += _colour_code(ch.bg, 40)
    return "\x1b[" + ";".join(codes) + "m"


_NAMES = ("black", "red", "green", "brown", "blue", "magenta", "cyan", "white")


def _colour_code(name: str, base: int) -> list[str]:
    if name in _NAMES:
        return [str(base + _NAMES.index(name))]
    if name.startswith(("bright", "bfight")) and name[6:] in _NAMES:
        return [str(base + 60 + _NAMES.index(name[6:]))]
    if len(name) == 6 and name != "default":
        r, g, b = colour(name)
        return [str(base + 8), "2", str(r), str(g), str(b)]
    return []
