"""Reading colours out of browser screenshots (PNG decoded with rasterio, already a dependency)."""

from __future__ import annotations

import warnings

import numpy as np
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import MemoryFile


def decode_png(data: bytes) -> np.ndarray:
    """PNG bytes → H×W×3 uint8 RGB array."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with MemoryFile(data) as mem, mem.open() as ds:
            arr = ds.read()
    return np.transpose(arr[:3], (1, 2, 0))


def hex_rgb(color: str) -> tuple[int, int, int]:
    """'#rrggbb' → (r, g, b)."""
    c = color.lstrip("#")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


def blend(color: str, alpha: float, under: str) -> tuple[int, int, int]:
    """Colour drawn with opacity ``alpha`` over ``under`` (what the canvas shows)."""
    top, bottom = np.array(hex_rgb(color)), np.array(hex_rgb(under))
    return tuple(int(round(v)) for v in top * alpha + bottom * (1 - alpha))


def count_near(img: np.ndarray, rgb: tuple[int, int, int], tol: int = 12) -> int:
    """Number of pixels within ``tol`` of ``rgb`` in every channel."""
    diff = np.abs(img.astype(int) - np.array(rgb, dtype=int)[None, None, :])
    return int(np.count_nonzero(np.all(diff <= tol, axis=2)))
