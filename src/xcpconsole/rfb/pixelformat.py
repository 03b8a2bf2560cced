"""RFB pixel formats and conversion between wire pixels and RGB arrays.

Framebuffers everywhere in xcpconsole are NumPy ``uint8`` arrays of shape
``(height, width, 3)`` in RGB order; this module converts between that and any
true-colour pixel format a peer uses (8, 16 or 32 bits per pixel), vectorised.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..errors import ProtocolError, UnsupportedError

RGB = npt.NDArray[np.uint8]

_PF = struct.Struct(">BBBBHHHBBB3x")


@dataclass(frozen=True)
class PixelFormat:
    bits_per_pixel: int
    depth: int
    big_endian: bool
    true_colour: bool
    red_max: int
    green_max: int
    blue_max: int
    red_shift: int
    green_shift: int
    blue_shift: int

    SIZE = 16

    @property
    def bytes_per_pixel(self) -> int:
        return self.bits_per_pixel // 8

    @property
    def dtype(self) -> np.dtype[np.unsignedinteger[npt.NBitBase]]:
        """NumPy dtype of one pixel on the wire (with the wire's byte order)."""
        order = ">" if self.big_endian else "<"
        return np.dtype(f"{order}u{self.bytes_per_pixel}")

    def pack(self) -> bytes:
        return _PF.pack(
            self.bits_per_pixel, self.depth, int(self.big_endian), int(self.true_colour),
            self.red_max, self.green_max, self.blue_max,
            self.red_shift, self.green_shift, self.blue_shift,
        )

    @classmethod
    def unpack(cls, data: bytes | bytearray | memoryview, *, validate: bool = True) -> PixelFormat:
        """The 16 wire bytes of a PIXEL_FORMAT; ``validate=False`` keeps formats we cannot
        convert (a ServerInit's, which the client may replace)."""
        if len(data) != cls.SIZE:
            raise ProtocolError(f"pixel format must be {cls.SIZE} bytes, got {len(data)}")
        bpp, depth, be, tc, rmax, gmax, bmax, rsh, gsh, bsh = _PF.unpack(data)
        pf = cls(bpp, depth, bool(be), bool(tc), rmax, gmax, bmax, rsh, gsh, bsh)
        if validate:
            pf.validate()
        return pf

    def validate(self) -> None:
        """Raise if this is not a format we can convert (hostile or exotic peers)."""
        if self.bits_per_pixel not in (8, 16, 32):
            raise UnsupportedError(f"unsupported bits-per-pixel {self.bits_per_pixel}")
        if not self.true_colour:
            if self.bits_per_pixel != 8:
                raise UnsupportedError("colour-map pixel formats need 8 bits per pixel")
            return
        for mx, sh in (
            (self.red_max, self.red_shift),
            (self.green_max, self.green_shift),
            (self.blue_max, self.blue_shift),
        ):
            if mx == 0 or mx & (mx + 1) != 0:
                raise UnsupportedError(f"colour max {mx} is not 2^n-1")
            if sh + mx.bit_length() > self.bits_per_pixel:
                raise UnsupportedError("colour shift beyond the pixel size")

    # -- conversions --------------------------------------------------------
    def to_rgb(self, pixels: npt.NDArray[np.unsignedinteger[npt.NBitBase]]) -> RGB:
        """Convert an array of pixel values (any shape) to RGB, adding a last axis of 3."""
        if not self.true_colour:
            raise UnsupportedError("colour-map pixels need the colour map (see ColourMap)")
        v = pixels.astype(np.uint32, copy=False)
        out = np.empty((*v.shape, 3), dtype=np.uint8)
        for i, (mx, sh) in enumerate(
            ((self.red_max, self.red_shift), (self.green_max, self.green_shift),
             (self.blue_max, self.blue_shift))
        ):
            c = (v >> sh) & mx
            if mx == 255:
                out[..., i] = c
            else:
                out[..., i] = (c * 255 + mx // 2) // mx
        return out

    def from_rgb(self, rgb: RGB) -> npt.NDArray[np.unsignedinteger[npt.NBitBase]]:
        """Convert an RGB array (..., 3) to pixel values in this format (native byte order)."""
        if not self.true_colour:
            raise UnsupportedError("cannot encode to a colour-map pixel format")
        r = rgb[..., 0].astype(np.uint32)
        g = rgb[..., 1].astype(np.uint32)
        b = rgb[..., 2].astype(np.uint32)
        if self.red_max != 255:
            r = (r * self.red_max + 127) // 255
        if self.green_max != 255:
            g = (g * self.green_max + 127) // 255
        if self.blue_max != 255:
            b = (b * self.blue_max + 127) // 255
        v = (r << self.red_shift) | (g << self.green_shift) | (b << self.blue_shift)
        return v.astype(self.dtype.newbyteorder("="))

    def rgb_to_bytes(self, rgb: RGB) -> bytes:
        """Wire bytes for an RGB array, row-major."""
        return self.from_rgb(rgb).astype(self.dtype, copy=False).tobytes()

    def bytes_to_rgb(self, data: bytes | memoryview, width: int, height: int) -> RGB:
        """RGB array (height, width, 3) from ``width*height`` wire pixels."""
        need = width * height * self.bytes_per_pixel
        if len(data) < need:
            raise ProtocolError(f"need {need} pixel bytes, got {len(data)}")
        px = np.frombuffer(data, dtype=self.dtype, count=width * height).reshape(height, width)
        return self.to_rgb(px)


def is_tpixel3(pf: PixelFormat) -> bool:
    """Whether Tight sends this format's pixels as 3-byte R, G, B ``TPIXEL`` values."""
    return (pf.true_colour and pf.bits_per_pixel == 32 and pf.depth == 24
            and pf.red_max == pf.green_max == pf.blue_max == 255)


#: 32 bpp, depth 24, little-endian, 0x00RRGGBB (what most servers and clients use)
BGRX32 = PixelFormat(32, 24, False, True, 255, 255, 255, 16, 8, 0)
#: 16 bpp RGB 5-6-5 little-endian
RGB565 = PixelFormat(16, 16, False, True, 31, 63, 31, 11, 5, 0)
#: 8 bpp BGR 2-3-3 true colour (what some viewers ask for on slow links)
BGR233 = PixelFormat(8, 8, False, True, 7, 7, 3, 0, 3, 6)
