"""A small raster canvas (Pillow) for figures drawn once per sample in a batch.

A matplotlib figure of twenty small axes costs about a second to build and save, most of it in axes,
ticks and text layout; a batch of a thousand samples would spend most of its time there. Panels drawn
straight into an RGB array (pre-binned histograms, gate outlines, a few text labels) cost milliseconds.
The look follows the matplotlib figures of the report (DejaVu Sans, viridis densities).
"""

from __future__ import annotations

import functools
import importlib.util
import io
import math
from pathlib import Path

import numpy as np

__all__ = ["Canvas", "Frame", "nice_ticks", "viridis"]

#: viridis sampled at 16 even steps from matplotlib's table (``matplotlib.colormaps["viridis"]``); linear
#: interpolation between them stays within 7/255 of the full table in every channel.
_VIRIDIS = np.array(
    [
        (68, 1, 84),
        (72, 26, 108),
        (71, 47, 125),
        (65, 68, 135),
        (57, 86, 140),
        (49, 104, 142),
        (42, 120, 142),
        (35, 136, 142),
        (31, 152, 139),
        (34, 168, 132),
        (53, 183, 121),
        (84, 197, 104),
        (122, 209, 81),
        (165, 219, 54),
        (210, 226, 27),
        (253, 231, 37),
    ],
    dtype=float,
)

WHITE = (255, 255, 255)
INK = (30, 30, 30)
GRID = (90, 90, 90)


def viridis(values: np.ndarray) -> np.ndarray:
    """RGB (uint8, ``values.shape + (3,)``) of values in [0, 1] on the viridis colour map."""
    pos = np.clip(np.asarray(values, dtype=float), 0, 1) * (len(_VIRIDIS) - 1)
    lo = np.minimum(pos.astype(int), len(_VIRIDIS) - 2)
    frac = (pos - lo)[..., None]
    return np.rint(_VIRIDIS[lo] * (1 - frac) + _VIRIDIS[lo + 1] * frac).astype(np.uint8)


def nice_ticks(lo: float, hi: float, most: int = 4) -> tuple[np.ndarray, int]:
    """At most ``most`` round tick values in [lo, hi] (steps 1, 2, 2.5, 5 x 10^k) and their decimals."""
    if not (np.isfinite(lo) and np.isfinite(hi)) or hi <= lo:
        return np.array([lo]), 2
    raw = (hi - lo) / max(most, 1)
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(s * power for s in (1, 2, 2.5, 5, 10) if s * power >= raw)
    ticks = np.arange(math.ceil(lo / step), math.floor(hi / step) + 1) * step
    decimals = max(0, -math.floor(math.log10(step) + 1e-9)) + (1 if step / power == 2.5 else 0)
    return ticks, int(decimals)


@functools.lru_cache(maxsize=16)
def _font(size: int):
    from PIL import ImageFont

    spec = importlib.util.find_spec("matplotlib")  # DejaVu Sans ships with matplotlib: same look
    for folder in spec.submodule_search_locations if spec else []:
        path = Path(folder) / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
        if path.is_file():
            return ImageFont.truetype(str(path), size)
    return ImageFont.load_default(size)


class Canvas:
    """An RGB image with text and paste helpers; ``png()`` gives the encoded bytes."""

    def __init__(self, width: int, height: int):
        from PIL import Image, ImageDraw

        self.image = Image.new("RGB", (int(width), int(height)), WHITE)
        self.draw = ImageDraw.Draw(self.image)

    def text(
        self,
        xy: tuple[float, float],
        text: str,
        *,
        size: int = 10,
        color=INK,
        anchor: str = "la",
        fit: float | None = None,
        rotate: bool = False,
    ) -> None:
        """Text at ``xy`` (Pillow anchors, e.g. ``"mt"`` middle-top); ``fit`` shrinks it to that width."""
        font = _font(size)
        while fit and size > 7 and font.getlength(text) > fit:
            size -= 1
            font = _font(size)
        if not rotate:
            self.draw.text(xy, text, fill=color, font=font, anchor=anchor)
            return
        from PIL import Image, ImageDraw

        box = font.getbbox(text)
        label = Image.new("L", (box[2] + 2, size + 4), 0)
        ImageDraw.Draw(label).text((1, 1), text, fill=255, font=font)
        label = label.rotate(90, expand=True)
        x, y = int(xy[0] - label.width / 2), int(xy[1] - label.height / 2)
        self.image.paste(Image.new("RGB", label.size, color), (x, y), label)

    def paste(self, rgb: np.ndarray, xy: tuple[int, int]) -> None:
        from PIL import Image

        self.image.paste(Image.fromarray(np.ascontiguousarray(rgb)), (int(xy[0]), int(xy[1])))

    def png(self) -> bytes:
        buf = io.BytesIO()
        # the fastest zlib level: a few ms for a whole gating path, ~15 % larger than the default
        self.image.save(buf, format="png", compress_level=1)
        return buf.getvalue()


class Frame:
    """One plot area drawn at ``ss`` times its size, then reduced: smooth gate outlines for little cost.

    Data coordinates ``xlim`` x ``ylim`` map onto ``width`` x ``height`` pixels (y up).
    """

    def __init__(self, width: int, height: int, xlim, ylim, ss: int = 3):
        from PIL import Image, ImageDraw

        self.width, self.height, self.ss = int(width), int(height), int(ss)
        self.xlim, self.ylim = (float(xlim[0]), float(xlim[1])), (float(ylim[0]), float(ylim[1]))
        self.rgb = np.full((self.height * ss, self.width * ss, 3), 255, dtype=np.uint8)
        self._image, self._draw, self._new = None, None, (Image, ImageDraw)

    def px(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        """Supersampled pixel coordinates of data points."""
        (x0, x1), (y0, y1) = self.xlim, self.ylim
        w, h = self.width * self.ss, self.height * self.ss
        px = (np.asarray(x, dtype=float) - x0) / (x1 - x0 or 1.0) * w
        py = h - (np.asarray(y, dtype=float) - y0) / (y1 - y0 or 1.0) * h
        return px, py

    def raster(self, rgb: np.ndarray, mask: np.ndarray | None = None) -> None:
        """Put an image covering the whole area (any size: scaled to it, nearest pixel); where ``mask``
        is given, only its True pixels are painted."""
        Image = self._new[0]
        size = (self.rgb.shape[1], self.rgb.shape[0])
        big = np.asarray(Image.fromarray(np.ascontiguousarray(rgb)).resize(size, Image.NEAREST))
        if mask is None:
            self.rgb[:] = big
            return
        painted = Image.fromarray(np.ascontiguousarray(mask, dtype=np.uint8) * 255)
        painted = np.asarray(painted.resize(size, Image.NEAREST)) > 0
        self.rgb[painted] = big[painted]

    def _canvas(self):
        if self._image is None:
            Image, ImageDraw = self._new
            self._image = Image.fromarray(self.rgb)
            self._draw = ImageDraw.Draw(self._image)
        return self._draw

    def line(self, x, y, color, width: float = 1.6, closed: bool = False) -> None:
        """A polyline in data coordinates (clipped to the area), ``width`` in output pixels."""
        px, py = self.px(x, y)
        points = list(zip(px.tolist(), py.tolist(), strict=True))
        if closed and points:
            points.append(points[0])
        if len(points) >= 2:
            self._canvas().line(
                points, fill=color, width=max(1, round(width * self.ss)), joint="curve"
            )

    def result(self) -> np.ndarray:
        """The area at its output size, framed by a thin dark line."""
        from PIL import Image

        image = self._image if self._image is not None else Image.fromarray(self.rgb)
        out = np.asarray(image.reduce(self.ss)).copy()
        out[[0, -1], :] = GRID
        out[:, [0, -1]] = GRID
        return out
