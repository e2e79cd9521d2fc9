"""The dashboard's aging chart, drawn server-side as SVG by pygal.

Why pygal: it draws a labelled, accessible SVG (titles, a legend, tooltips as <title>) from
Decimal-friendly values in a few lines, with no browser library and nothing fetched at run
time once its default script (a CDN URL) is turned off; the page inlines the SVG.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import pygal
from pygal.style import Style

_STYLE = Style(background="transparent", plot_background="transparent", font_family="system-ui, sans-serif",
               colors=("#2b6cb0", "#c05621", "#2f855a", "#6b46c1", "#b83280", "#4a5568"))


def aging_chart(buckets: Sequence[str], rows: Sequence[dict[str, Any]], title: str) -> str:
    """A bar per bucket, a series per currency (amounts as the ledger sent them)."""
    chart = pygal.Bar(style=_STYLE, js=[], disable_xml_declaration=True, height=320, width=760,
                      legend_at_bottom=True, title=title, x_title=None, print_values=False)
    chart.x_labels = list(buckets)
    # pygal plots floats: they place the bars only; the table beside it shows the Decimal figures.
    for row in rows:
        chart.add(str(row.get("currency") or row.get("group")),
                  [float(Decimal(str(row.get(bucket, "0")))) for bucket in buckets])
    svg: str = chart.render(is_unicode=True)
    return svg


def collections_chart(weeks: Sequence[dict[str, Any]], title: str) -> str:
    """Expected collections per week with the low-high band, one line each."""
    chart = pygal.Line(style=_STYLE, js=[], disable_xml_declaration=True, height=280, width=760,
                       legend_at_bottom=True, title=title, fill=False)
    chart.x_labels = [str(week["week_start"]) for week in weeks]
    for key in ("expected", "low", "high"):
        chart.add(key, [float(Decimal(str(week[key]))) for week in weeks])
    svg: str = chart.render(is_unicode=True)
    return svg
