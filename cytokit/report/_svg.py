"""Small SVG charts for the report: axes with ticks, lines, bands, boxes and text written as SVG markup.

The report's trial figures hold a few dozen points and lines each. Drawn with matplotlib they cost
~60 ms apiece plus ~0.3 s to import it, most of a small run's report time (issue 9); as SVG they cost
about a millisecond and stay sharp at any zoom. The browser lays out the text, so widths here are
estimates (``text_width``) used only to leave room for labels.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from ..pl._raster import nice_ticks
from ._html import esc

__all__ = ["Axes", "Canvas", "span", "text_width"]

FONT = "DejaVu Sans, Verdana, Arial, sans-serif"
GRID = "#e3e6ea"
FRAME = "#333333"


def text_width(text: str, size: float) -> float:
    """Estimated width (px) of ``text`` at font ``size`` px (DejaVu Sans averages ~0.6 em a glyph)."""
    return 0.6 * size * len(text)


def span(values: Iterable[float], margin: float = 0.05) -> tuple[float, float]:
    """Axis limits around the finite ``values`` with ``margin`` of their range on each side (matplotlib's
    default); a single value gets +-5 % of itself (or +-0.5 around zero)."""
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not finite:
        return 0.0, 1.0
    lo, hi = min(finite), max(finite)
    if hi > lo:
        pad = margin * (hi - lo)
        return lo - pad, hi + pad
    pad = 0.05 * abs(lo) or 0.5
    return lo - pad, hi + pad


def _num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


class Canvas:
    """One SVG picture of ``width`` x ``height`` px; elements are appended as markup."""

    def __init__(self, width: float, height: float):
        self.width, self.height = float(width), float(height)
        self.parts: list[str] = []

    def add(self, markup: str) -> None:
        self.parts.append(markup)

    def text(
        self,
        x: float,
        y: float,
        text: str,
        *,
        size: float = 11,
        anchor: str = "middle",
        color: str = "#222222",
        weight: str = "normal",
        rotate: float = 0.0,
        baseline: str = "middle",
    ) -> None:
        """Text at (x, y) px; ``baseline``: ``"middle"``, ``"top"`` (hangs below y) or ``"bottom"``."""
        dy = {"middle": 0.35, "top": 0.8, "bottom": -0.2}[baseline] * size
        transform = f' transform="rotate({_num(rotate)} {_num(x)} {_num(y)})"' if rotate else ""
        bold = ' font-weight="bold"' if weight != "normal" else ""
        self.add(
            f'<text x="{_num(x)}" y="{_num(y + dy)}" font-size="{_num(size)}" text-anchor="{anchor}" '
            f'fill="{color}"{bold}{transform}>{esc(text)}</text>'
        )

    def line(self, points: Sequence[tuple[float, float]], *, color: str, width: float = 1.0,
             opacity: float = 1.0, dash: str = "") -> None:  # fmt: skip
        """A polyline through the px ``points``."""
        if len(points) < 2:
            return
        coords = " ".join(f"{_num(x)},{_num(y)}" for x, y in points)
        extra = f' stroke-opacity="{opacity:g}"' if opacity < 1 else ""
        extra += f' stroke-dasharray="{dash}"' if dash else ""
        self.add(
            f'<polyline points="{coords}" fill="none" stroke="{color}" '
            f'stroke-width="{width:g}" stroke-linejoin="round"{extra}/>'
        )

    def legend(self, x: float, y: float, items: Sequence[tuple[str, str, float]], *,
               size: float = 10, across: bool = False) -> float:  # fmt: skip
        """Legend entries (label, colour, line width) from (x, y) px, top-left; stacked down, or in one
        row with ``across``. Returns its width."""
        step = size * 1.5
        cx, cy, widest = x, y + step / 2, 0.0
        for label, color, width in items:
            self.line([(cx, cy), (cx + 18, cy)], color=color, width=width)
            self.text(cx + 23, cy, label, size=size, anchor="start")
            entry = 23 + text_width(label, size)
            widest = max(widest, entry)
            if across:
                cx += entry + 14
            else:
                cy += step
        return cx - x if across else widest

    def svg(self) -> str:
        """The whole picture as an SVG document (white background)."""
        w, h = _num(self.width), _num(self.height)
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
            f'font-family="{FONT}"><rect width="100%" height="100%" fill="#ffffff"/>'
            + "".join(self.parts)
            + "</svg>"
        )


class Axes:
    """A plot area of a :class:`Canvas` (``box`` = left, top, width, height in px) with data limits."""

    def __init__(self, canvas: Canvas, box: tuple[float, float, float, float],
                 xlim: tuple[float, float], ylim: tuple[float, float]):  # fmt: skip
        self.canvas = canvas
        self.left, self.top, self.w, self.h = box
        self.xlim, self.ylim = xlim, ylim

    def x(self, value: float) -> float:
        lo, hi = self.xlim
        return self.left + (float(value) - lo) / (hi - lo) * self.w

    def y(self, value: float) -> float:
        lo, hi = self.ylim
        return self.top + self.h - (float(value) - lo) / (hi - lo) * self.h

    def frame(
        self,
        *,
        title: str = "",
        xlabel: str = "",
        ylabel: str = "",
        xticks: Sequence[tuple[float, str]] | None = None,
        grid_x: bool = True,
        rotate_x: bool = False,
        size: float = 11,
        title_size: float = 13,
    ) -> None:
        """Grid, frame, tick labels (nice y ticks; x ticks given or nice; ``rotate_x`` slants the x
        labels for many timepoints) and axis titles."""
        c = self.canvas
        yvals, ydec = nice_ticks(*self.ylim, most=6) if self.ylim[1] > self.ylim[0] else ([], 0)
        yticks = [(float(v), f"{v:.{ydec}f}") for v in yvals]
        if xticks is None:
            xvals, xdec = nice_ticks(*self.xlim, most=6) if self.xlim[1] > self.xlim[0] else ([], 0)
            xticks = [(float(v), f"{v:.{xdec}f}") for v in xvals]
        bottom, right = self.top + self.h, self.left + self.w
        for v, _ in yticks:
            c.line([(self.left, self.y(v)), (right, self.y(v))], color=GRID, width=1)
        if grid_x:
            for v, _ in xticks:
                c.line([(self.x(v), self.top), (self.x(v), bottom)], color=GRID, width=1)
        c.add(
            f'<rect x="{_num(self.left)}" y="{_num(self.top)}" width="{_num(self.w)}" '
            f'height="{_num(self.h)}" fill="none" stroke="{FRAME}" stroke-width="1"/>'
        )
        widest = 0.0
        for v, label in yticks:
            c.line([(self.left - 4, self.y(v)), (self.left, self.y(v))], color=FRAME)
            c.text(self.left - 6, self.y(v), label, size=size - 1, anchor="end")
            widest = max(widest, text_width(label, size - 1))
        for v, label in xticks:
            c.line([(self.x(v), bottom), (self.x(v), bottom + 4)], color=FRAME)
            if rotate_x:
                c.text(self.x(v), bottom + 10, label, size=size - 1, anchor="end", rotate=-45)
            else:
                c.text(self.x(v), bottom + 6, label, size=size - 1, baseline="top")
        if title:
            c.text(self.left + self.w / 2, self.top - 9, title, size=title_size, baseline="bottom")
        if xlabel:
            below = (
                max((text_width(t, size - 1) for _, t in xticks), default=0) * 0.7
                if rotate_x
                else 0
            )
            c.text(self.left + self.w / 2, bottom + 8 + 1.9 * size + below, xlabel, size=size,
                   baseline="top")  # fmt: skip
        if ylabel:
            x = self.left - 14 - widest - 0.5 * size
            c.text(x, self.top + self.h / 2, ylabel, size=size, rotate=-90)

    def plot(self, xs: Sequence[float], ys: Sequence[float], *, color: str, width: float = 1.5,
             opacity: float = 1.0, dash: str = "", marker: float = 0.0) -> None:  # fmt: skip
        """A line through the data points, with round markers of radius ``marker`` px (0: none)."""
        points = [(self.x(a), self.y(b)) for a, b in zip(xs, ys, strict=True)]
        self.canvas.line(points, color=color, width=width, opacity=opacity, dash=dash)
        if marker:
            self.dots(xs, ys, color=color, radius=marker, opacity=opacity)

    def dots(self, xs: Sequence[float], ys: Sequence[float], *, color: str, radius: float = 3.0,
             opacity: float = 1.0) -> None:  # fmt: skip
        extra = f' fill-opacity="{opacity:g}"' if opacity < 1 else ""
        for a, b in zip(xs, ys, strict=True):
            self.canvas.add(
                f'<circle cx="{_num(self.x(a))}" cy="{_num(self.y(b))}" r="{radius:g}" '
                f'fill="{color}"{extra}/>'
            )

    def band(self, xs: Sequence[float], lo: Sequence[float], hi: Sequence[float], *, color: str,
             opacity: float = 0.18) -> None:  # fmt: skip
        """A filled band between ``lo`` and ``hi`` along ``xs``."""
        if len(xs) < 2:
            return
        upper = [(self.x(a), self.y(b)) for a, b in zip(xs, hi, strict=True)]
        lower = [(self.x(a), self.y(b)) for a, b in zip(xs, lo, strict=True)][::-1]
        coords = " ".join(f"{_num(x)},{_num(y)}" for x, y in upper + lower)
        self.canvas.add(
            f'<polygon points="{coords}" fill="{color}" fill-opacity="{opacity:g}" stroke="none"/>'
        )

    def box(self, x: float, stats: Sequence[float], half_width: float) -> None:
        """A box plot at data ``x``: ``stats`` = (whisker low, Q1, median, Q3, whisker high)."""
        lo, q1, med, q3, hi = stats
        c = self.canvas
        left, right, mid = self.x(x - half_width), self.x(x + half_width), self.x(x)
        cap = (right - left) / 4
        c.line([(mid, self.y(lo)), (mid, self.y(q1))], color=FRAME)
        c.line([(mid, self.y(q3)), (mid, self.y(hi))], color=FRAME)
        c.line([(mid - cap, self.y(lo)), (mid + cap, self.y(lo))], color=FRAME)
        c.line([(mid - cap, self.y(hi)), (mid + cap, self.y(hi))], color=FRAME)
        top, height = self.y(q3), max(self.y(q1) - self.y(q3), 0.0)
        c.add(
            f'<rect x="{_num(left)}" y="{_num(top)}" width="{_num(right - left)}" '
            f'height="{_num(height)}" fill="#eef3f8" stroke="{FRAME}" stroke-width="1"/>'
        )
        c.line([(left, self.y(med)), (right, self.y(med))], color="#000000", width=1.5)

    def hline(self, value: float, *, color: str = "#000000", width: float = 1.0,
              dash: str = "") -> None:  # fmt: skip
        self.canvas.line([(self.left, self.y(value)), (self.left + self.w, self.y(value))],
                         color=color, width=width, dash=dash)  # fmt: skip

    def message(self, text: str) -> None:
        """Centred grey text in an empty plot area (no ticks)."""
        c = self.canvas
        c.add(
            f'<rect x="{_num(self.left)}" y="{_num(self.top)}" width="{_num(self.w)}" '
            f'height="{_num(self.h)}" fill="none" stroke="{FRAME}" stroke-width="1"/>'
        )
        c.text(self.left + self.w / 2, self.top + self.h / 2, text, size=11, color="#555555")
