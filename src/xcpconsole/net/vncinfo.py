"""What ``xcpconsole info`` reports: connection facts and traffic statistics.

The statistics are the seed viewer's (updates and updates per second, rectangles per
encoding with pseudo-rectangles apart, Tight's JPEG / lossless split, pixel data against
what came over the wire and their ratio) plus bytes per second.  :meth:`VncInfo.figures`
computes them once; the text lines and the JSON are two renderings of the same figures.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..rfb.client import ClientStats
from ..rfb.constants import (
    Encoding,
    SecurityType,
    compress_level_of,
    jpeg_quality_of,
)
from ..rfb.pixelformat import PixelFormat

__all__ = ["VncInfo", "describe_pixel_format", "encoding_name"]

_DISPLAY_NAMES: dict[int, str] = {
    Encoding.RAW: "Raw", Encoding.COPYRECT: "CopyRect", Encoding.RRE: "RRE",
    Encoding.HEXTILE: "Hextile", Encoding.ZLIB: "Zlib", Encoding.TIGHT: "Tight",
    Encoding.ZRLE: "ZRLE",
}
_PSEUDO_NAMES: dict[int, str] = {
    Encoding.DESKTOP_SIZE: "DesktopSize", Encoding.LAST_RECT: "LastRect",
    Encoding.CURSOR: "Cursor", Encoding.EXTENDED_DESKTOP_SIZE: "ExtendedDesktopSize",
    Encoding.XVP: "XVP", Encoding.DESKTOP_NAME: "DesktopName",
    Encoding.QEMU_EXTENDED_KEY_EVENT: "QEMUExtendedKeyEvent",
    Encoding.QEMU_LED_STATE: "QEMULEDState",
}
#: The order of the "Rectangles" line: the seed viewer's, then the encodings it lacked.
_REPORT_ORDER = (Encoding.TIGHT, Encoding.ZRLE, Encoding.HEXTILE, Encoding.RAW,
                 Encoding.COPYRECT, Encoding.ZLIB, Encoding.RRE)


def encoding_name(number: int) -> str:
    """Human name of an encoding or pseudo-encoding number."""
    if number in _DISPLAY_NAMES:
        return _DISPLAY_NAMES[number]
    if number in _PSEUDO_NAMES:
        return _PSEUDO_NAMES[number]
    if (quality := jpeg_quality_of(number)) is not None:
        return f"JPEGQuality{quality}"
    if (level := compress_level_of(number)) is not None:
        return f"CompressLevel{level}"
    return f"encoding {number}"


def describe_pixel_format(pf: PixelFormat) -> str:
    order = "big" if pf.big_endian else "little"
    if not pf.true_colour:
        return f"{pf.bits_per_pixel} bpp, depth {pf.depth}, colour map"
    return (f"{pf.bits_per_pixel} bpp, depth {pf.depth}, {order}-endian, "
            f"max {pf.red_max}/{pf.green_max}/{pf.blue_max}, "
            f"shift {pf.red_shift}/{pf.green_shift}/{pf.blue_shift}")


def _per_second(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else 0.0


@dataclass(frozen=True)
class VncInfo:
    """Connection facts and traffic statistics, as printed by ``xcpconsole info``.

    ``seconds`` is the period asked for (0: no statistics), ``elapsed`` the time the
    counters actually ran (rates are per second of it).
    """

    version: tuple[int, int]
    security_type: int
    name: str
    width: int
    height: int
    server_pixel_format: PixelFormat
    pixel_format: PixelFormat
    requested_encodings: tuple[int, ...]
    seconds: float
    stats: ClientStats
    elapsed: float = 0.0

    @property
    def security_name(self) -> str:
        try:
            return SecurityType(self.security_type).name
        except ValueError:
            return str(self.security_type)

    def figures(self) -> dict[str, Any]:
        """The statistics, as plain numbers (the JSON's ``statistics``)."""
        s, t = self.stats, self.elapsed
        by_encoding = {encoding_name(e): s.rects.get(e, 0) for e in _REPORT_ORDER}
        for e, n in sorted(s.rects.items()):
            if e >= 0 and e not in _REPORT_ORDER:
                by_encoding[encoding_name(e)] = n
        tight = s.rects.get(Encoding.TIGHT, 0)
        return {
            "seconds": self.seconds,
            "elapsed": round(t, 3),
            "updates": s.updates,
            "updates_per_second": round(_per_second(s.updates, t), 3),
            "rectangles": s.pixel_rects,
            "pseudo_rectangles": s.pseudo_rects,
            "rectangles_by_encoding": by_encoding,
            "pseudo_by_encoding": {encoding_name(e): n for e, n in sorted(s.rects.items())
                                   if e < 0},
            "tight_jpeg": s.jpeg_rects,
            "tight_lossless": tight - s.jpeg_rects,
            "pixel_bytes": s.pixel_bytes,
            "wire_bytes": s.wire_bytes,
            "ratio": round(s.ratio, 2),
            "bytes_received": s.bytes_received,
            "wire_bytes_per_second": round(_per_second(s.wire_bytes, t), 1),
            "bytes_per_second": round(_per_second(s.bytes_received, t), 1),
        }

    def to_json(self) -> dict[str, Any]:
        """Everything :meth:`lines` says, for ``info --json`` (statistics None without
        ``seconds``)."""
        return {
            "version": f"{self.version[0]}.{self.version[1]}",
            "security_type": self.security_type,
            "security": self.security_name,
            "name": self.name,
            "width": self.width,
            "height": self.height,
            "server_pixel_format": asdict(self.server_pixel_format),
            "pixel_format": asdict(self.pixel_format),
            "requested_encodings": [encoding_name(e) for e in self.requested_encodings],
            "statistics": self.figures() if self.seconds > 0 else None,
        }

    def lines(self) -> list[str]:
        """The report as text lines (what the seed's viewer printed, plus statistics)."""
        out = [
            f"RFB version:      {self.version[0]}.{self.version[1]}",
            f"Security:         {self.security_name} ({self.security_type})",
            f"Desktop name:     {self.name}",
            f"Size:             {self.width}x{self.height}",
            f"Server pixels:    {describe_pixel_format(self.server_pixel_format)}",
            f"Client pixels:    {describe_pixel_format(self.pixel_format)}",
            "Encodings asked:  " + ", ".join(encoding_name(e) for e in self.requested_encodings),
        ]
        if self.seconds <= 0:
            return out
        f = self.figures()
        rects = " ".join(
            f"{name}={n}" + (f" (JPEG={f['tight_jpeg']}, lossless={f['tight_lossless']})"
                             if name == "Tight" else "")
            for name, n in f["rectangles_by_encoding"].items())
        pseudo = ", ".join(f"{name} {n}" for name, n in f["pseudo_by_encoding"].items())
        out += [
            f"Statistics over {self.seconds:g} s ({f['elapsed']:.2f} s measured):",
            f"  updates:        {f['updates']} ({f['rectangles']} rectangles + "
            f"{f['pseudo_rectangles']} pseudo), {f['updates_per_second']:.2f} updates/s",
            f"  rectangles:     {rects}",
            f"  pseudo:         {pseudo or 'none'}",
            f"  pixel data:     {f['pixel_bytes']} bytes, {f['wire_bytes']} on the wire, "
            f"ratio {f['ratio']:.2f}",
            f"  wire bytes:     {f['wire_bytes']} (socket {f['bytes_received']})",
            f"  bytes/s:        {f['wire_bytes_per_second']:.0f} of updates "
            f"(socket {f['bytes_per_second']:.0f})",
        ]
        return out
