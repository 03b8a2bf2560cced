"""Raw encoding (0), and the pixel conversions the other encoders share.

Encoders work on *pixel values* (uint32, the client's format) to compare
colours cheaply and on *wire bytes* (``(..., bytes_per_pixel)`` uint8) to emit
them, both computed once per rectangle with NumPy.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ..pixelformat import RGB, PixelFormat

U8 = npt.NDArray[np.uint8]
U32 = npt.NDArray[np.uint32]


def pixel_values(rgb: RGB, pf: PixelFormat) -> U32:
    """Pixel values ``(h, w)`` of an RGB region in ``pf`` (native uint32)."""
    return pf.from_rgb(rgb).astype(np.uint32, copy=False)


def wire_bytes(values: U32, pf: PixelFormat) -> U8:
    """The ``(..., bytes_per_pixel)`` wire bytes of pixel values, in ``pf``'s byte order."""
    wire = np.ascontiguousarray(values.astype(pf.dtype))
    return wire.view(np.uint8).reshape(*values.shape, pf.bytes_per_pixel)


def encode(rgb: RGB, pf: PixelFormat) -> bytes:
    """Raw payload: every pixel of the region in ``pf``, row-major."""
    return pf.rgb_to_bytes(rgb)
