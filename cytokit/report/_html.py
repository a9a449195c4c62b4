"""HTML building blocks of the report: page shell and style, tables, embedded figures.

Everything is inline (CSS in a ``<style>`` element, figures as base64 PNG or SVG ``data:`` URIs) so the
page is one file that opens anywhere without a network.
"""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # matplotlib loads only for a Figure given (the report's own figures are SVG)
    from matplotlib.figure import Figure

__all__ = ["details", "esc", "figure_png", "img", "page", "section", "table"]

CSS = """
:root { --fg: #1d2430; --muted: #5b6675; --line: #d9dee5; --accent: #2f5f98; --bg2: #f5f7fa; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif;
       color: var(--fg); background: #fff; }
main { max-width: 1240px; margin: 0 auto; padding: 18px 28px 60px; }
header { background: var(--accent); color: #fff; padding: 16px 28px; }
header h1 { margin: 0; font-size: 22px; } header p { margin: 4px 0 0; opacity: .9; font-size: 14px; }
nav { position: sticky; top: 0; z-index: 2; background: #fff; border-bottom: 1px solid var(--line);
      padding: 6px 28px; font-size: 14px; }
nav a { margin-right: 14px; color: var(--accent); text-decoration: none; }
h2 { font-size: 19px; margin: 30px 0 8px; padding-bottom: 4px; border-bottom: 2px solid var(--line); }
h3 { font-size: 16px; margin: 18px 0 6px; }
p.note { color: var(--muted); font-size: 13px; margin: 4px 0 10px; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 10px 0; }
.card { background: var(--bg2); border: 1px solid var(--line); border-radius: 6px; padding: 8px 14px; min-width: 120px; }
.card b { display: block; font-size: 22px; } .card span { color: var(--muted); font-size: 13px; }
.card.warn { background: #fff6db; border-color: #e0b84a; } .card.bad { background: #fde8e8; border-color: #d77; }
.tablewrap { overflow-x: auto; max-height: 560px; overflow-y: auto; border: 1px solid var(--line); margin: 6px 0 12px; }
table { border-collapse: collapse; font-size: 13px; width: 100%; }
th, td { padding: 4px 8px; border-bottom: 1px solid var(--line); text-align: left; white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.wrap { white-space: normal; min-width: 260px; }
th { background: var(--bg2); position: sticky; top: 0; z-index: 1; }
tr.warning td { background: #fff6db; } tr.failed td { background: #fde8e8; }
tr.signif td { background: #eaf5ea; }
.status-ok { color: #1d7a1d; } .status-warning { color: #9a6a00; font-weight: 600; }
.status-failed { color: #b00000; font-weight: 700; }
figure { margin: 8px 0 14px; } figure img { max-width: 100%; height: auto; border: 1px solid var(--line); }
figcaption { color: var(--muted); font-size: 13px; }
.grid2 { display: grid; grid-template-columns: 1fr 1fr; gap: 14px; }
@media (max-width: 900px) { .grid2 { grid-template-columns: 1fr; } }
details { border: 1px solid var(--line); border-radius: 5px; margin: 6px 0; padding: 4px 10px; }
details > summary { cursor: pointer; font-weight: 600; padding: 3px 0; }
details[open] > summary { margin-bottom: 6px; }
dl.methods { display: grid; grid-template-columns: max-content 1fr; gap: 4px 18px; font-size: 14px; }
dl.methods dt { color: var(--muted); } dl.methods dd { margin: 0; word-break: break-word; }
code, pre { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 13px; background: var(--bg2); }
pre { padding: 8px 10px; overflow-x: auto; border: 1px solid var(--line); }
ul.warnings li { margin: 2px 0; }
"""


def esc(value) -> str:
    """HTML-escaped text of any value."""
    return html.escape("" if value is None else str(value), quote=True)


def figure_png(fig: Figure, dpi: int = 90) -> bytes:
    """PNG bytes of a matplotlib Figure."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor="white")
    return buf.getvalue()


def img(source, alt: str, caption: str = "", dpi: int = 90) -> str:
    """A ``<figure>`` with the image embedded as a base64 ``data:`` URI; source is SVG text (``"<svg..."``),
    a matplotlib Figure (drawn to PNG), PNG bytes or the path of a PNG file."""
    mime = "image/png"
    if isinstance(source, str) and source.startswith("<svg"):
        mime, data = "image/svg+xml", source.encode("utf-8")
    elif hasattr(source, "savefig"):  # a matplotlib Figure (not imported here unless one is given)
        data = figure_png(source, dpi=dpi)
    elif isinstance(source, bytes | bytearray):
        data = bytes(source)
    else:
        data = Path(source).read_bytes()
    encoded = base64.b64encode(data).decode("ascii")
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f'<figure><img alt="{esc(alt)}" src="data:{mime};base64,{encoded}">{cap}</figure>'


def _cell(value) -> tuple[str, bool]:
    """Text of one table cell and whether it is numeric (right-aligned); NaN is empty."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "", True
    if isinstance(value, bool | np.bool_):
        return ("yes" if value else "no"), False
    if isinstance(value, int | np.integer):
        return f"{int(value):,}", True
    if isinstance(value, float | np.floating):
        v = float(value)
        if v != 0 and (abs(v) < 0.001 or abs(v) >= 1e6):
            return f"{v:.3g}", True
        return (f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}" if abs(v) < 1 else f"{v:.2f}"), True
    return str(value), False


def table(
    frame: pd.DataFrame,
    *,
    row_classes: list[str] | None = None,
    headers: dict[str, str] | None = None,
    wrap: tuple[str, ...] = ("message", "note", "warnings"),
) -> str:
    """A scrollable HTML table of ``frame`` (index dropped); NaN cells are empty."""
    if frame is None or frame.empty:
        return '<p class="note">(none)</p>'
    headers = headers or {}
    head = "".join(f"<th>{esc(headers.get(c, c))}</th>" for c in frame.columns)
    body = []
    for i, row in enumerate(frame.itertuples(index=False, name=None)):
        cls = f' class="{esc(row_classes[i])}"' if row_classes and row_classes[i] else ""
        cells = []
        for column, value in zip(frame.columns, row, strict=True):
            text, numeric = _cell(value)
            kind = "num" if numeric else ("wrap" if column in wrap else "")
            if column == "status":
                text = f'<span class="status-{esc(text)}">{esc(text)}</span>'
            else:
                text = esc(text)
            cells.append(f'<td class="{kind}">{text}</td>' if kind else f"<td>{text}</td>")
        body.append(f"<tr{cls}>{''.join(cells)}</tr>")
    return (
        f'<div class="tablewrap"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def details(summary: str, body: str, *, open_: bool = False) -> str:
    """A collapsible block (``<details>``)."""
    return f"<details{' open' if open_ else ''}><summary>{summary}</summary>{body}</details>"


def section(anchor: str, title: str, body: str) -> str:
    """A titled section with an anchor for the navigation bar."""
    return f'<section id="{esc(anchor)}"><h2>{esc(title)}</h2>{body}</section>'


def page(title: str, subtitle: str, nav: list[tuple[str, str]], body: str) -> str:
    """The whole HTML document."""
    links = "".join(f'<a href="#{esc(a)}">{esc(t)}</a>' for a, t in nav)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>{esc(title)}</h1><p>{esc(subtitle)}</p></header>"
        f"<nav>{links}</nav><main>{body}</main></body></html>\n"
    )
