"""Offline label glyphs: MapLibre glyph ranges (SDF protobuf) rendered from installed fonts.

MapLibre fetches ``{fontstack}/{start}-{end}.pbf`` for every 256-code-point range a label uses.
Each range is a ``glyphs`` protobuf (fontstack name, range, glyphs with id, 24 px SDF bitmap
padded by 3 px, width, height, left, top, advance), the format of mapbox/glyph-pbf. We render
the signed distance fields with FreeType's own SDF rasteriser (``FT_RENDER_MODE_SDF``, FreeType
≥ 2.11) from Noto Sans CJK (Debian ``fonts-noto-cjk``), re-encode the distances to MapLibre's
convention (edge at 192, 8 px radius) and keep each range on disk, so the map works without any
internet access.
"""

from __future__ import annotations

import re
import threading
from functools import lru_cache
from pathlib import Path
from typing import cast

import numpy as np

from cim.errors import InvalidInput, NotFound

SIZE = 24          # MapLibre's glyph em size in px
BUFFER = 3         # padding around each bitmap MapLibre expects
RADIUS = 8         # SDF radius of MapLibre's glyph atlas
CUTOFF = 0.25      # edge position within the radius
SPREAD = 8         # FreeType's default SDF spread (px), which is also its bitmap padding
_FT_RENDER_MODE_SDF = 5

# fontstack name → (font file, face index), first existing file wins
FONTS: dict[str, list[tuple[str, int]]] = {
    "Noto Sans CJK SC Regular": [("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc", 2),
                                 ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", 0)],
    "Noto Sans CJK SC Bold": [("/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc", 2),
                              ("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf", 0)],
}
DEFAULT_FONTSTACK = "Noto Sans CJK SC Regular"
_RANGE = re.compile(r"^(\d{1,5})-(\d{1,5})$")
_lock = threading.Lock()


def parse_range(text: str) -> int:
    """``0-255`` → 0; anything not a 256-aligned range below 65536 is invalid input."""
    m = _RANGE.match(text)
    if not m:
        raise InvalidInput(f"字形范围格式应为 起-止：{text}", f"glyph range must be start-end: {text}")
    start, end = int(m.group(1)), int(m.group(2))
    if start % 256 or end != start + 255 or end > 65535:
        raise InvalidInput(f"字形范围无效：{text}", f"invalid glyph range: {text}")
    return start


def resolve_fontstack(stack: str) -> str:
    """First font of a comma-separated stack that we have; the default otherwise."""
    for name in (s.strip() for s in stack.split(",")):
        if name in FONTS:
            return name
    return DEFAULT_FONTSTACK


@lru_cache(maxsize=4)
def _face(name: str):
    import freetype  # imported lazily: only glyph requests need FreeType

    for path, index in FONTS[name]:
        if Path(path).exists():
            face = freetype.Face(path, index)
            face.set_pixel_sizes(0, SIZE)
            return face
    raise NotFound(f"服务器未安装字体 {name}", f"font {name} is not installed on the server")


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field(num: int, wire: int, payload: bytes | int) -> bytes:
    key = _varint((num << 3) | wire)
    if wire == 0:
        return key + _varint(cast(int, payload))
    data = cast(bytes, payload)
    return key + _varint(len(data)) + data


def _zigzag(n: int) -> int:
    return (n << 1) ^ (n >> 63)


def _glyph(face, code: int) -> bytes | None:
    """One glyph message, or None when the font lacks the code point."""
    if face.get_char_index(code) == 0:
        return None
    face.load_char(code)
    slot = face.glyph
    advance = slot.advance.x >> 6
    bitmap = b""
    width = height = left = top = 0
    if slot.bitmap.width or slot.outline.n_points:
        slot.render(_FT_RENDER_MODE_SDF)
        bm = slot.bitmap
        spread = SPREAD
        crop = spread - BUFFER  # FreeType pads by its spread; MapLibre wants 3 px
        w, h = bm.width - 2 * crop, bm.rows - 2 * crop
        if w > 2 * BUFFER and h > 2 * BUFFER:
            grid = np.array(bm.buffer, dtype=np.float32).reshape(bm.rows, bm.pitch)[crop:crop + h, crop:crop + w]
            # FreeType: 128 at the edge, +128 per spread px inside. MapLibre: 255*(1-cutoff) at
            # the edge, 255/radius per px.
            values = 255 * (1 - CUTOFF) + (grid - 128) * (spread / 128) * (255 / RADIUS)
            bitmap = np.clip(np.rint(values), 0, 255).astype(np.uint8).tobytes()
            width, height = w - 2 * BUFFER, h - 2 * BUFFER
            left = slot.bitmap_left + crop + BUFFER
            top = slot.bitmap_top - crop - BUFFER - SIZE
    msg = _field(1, 0, code)
    if bitmap:
        msg += _field(2, 2, bitmap)
    msg += _field(3, 0, width) + _field(4, 0, height)
    msg += _field(5, 0, _zigzag(left)) + _field(6, 0, _zigzag(top)) + _field(7, 0, advance)
    return msg


def render_range(fontstack: str, start: int) -> bytes:
    """The protobuf of one 256-glyph range of a font stack."""
    name = resolve_fontstack(fontstack)
    with _lock:  # FreeType faces are not thread-safe
        face = _face(name)
        glyphs = [g for g in (_glyph(face, c) for c in range(start, start + 256)) if g]
    stack = _field(1, 2, name.encode()) + _field(2, 2, f"{start}-{start + 255}".encode())
    stack += b"".join(_field(3, 2, g) for g in glyphs)
    return _field(1, 2, stack)


def glyph_range(fontstack: str, range_text: str, cache_dir: Path | None) -> bytes:
    """Cached glyph range (rendered once, then read from ``cache_dir``)."""
    start = parse_range(range_text)
    name = resolve_fontstack(fontstack)
    path = cache_dir / name.replace(" ", "_") / f"{start}-{start + 255}.pbf" if cache_dir else None
    if path and path.exists():
        return path.read_bytes()
    data = render_range(name, start)
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    return data
