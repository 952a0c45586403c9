"""Metric histories drawn as SVG on the server: one chart, one line per run, thinned points.

The drawing is data for a template (escaped like everything else); no
script draws it, so the CSP stays strict and a 100,000-point history costs
the browser a few hundred points.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Chart", "chart"]

WIDTH, HEIGHT, PAD = 720, 240, 36


@dataclass(frozen=True)
class Chart:
    """Lines (series index, SVG points) on shared axes, with the ranges they span."""

    key: str
    lines: list[tuple[int, str]]
    x_range: tuple[float, float]
    y_range: tuple[float, float]


def chart(key: str, series: list[list[tuple[float, float]]]) -> Chart | None:
    """Every series on one set of axes (by step); None when nothing has two points."""
    points = [p for s in series for p in s]
    if not any(len(s) >= 2 for s in series):
        return None
    x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
    y0, y1 = min(p[1] for p in points), max(p[1] for p in points)
    sx = (WIDTH - 2 * PAD) / ((x1 - x0) or 1.0)
    sy = (HEIGHT - 2 * PAD) / ((y1 - y0) or 1.0)
    lines = [
        (
            i,
            " ".join(f"{PAD + (x - x0) * sx:.1f},{HEIGHT - PAD - (y - y0) * sy:.1f}" for x, y in s),
        )
        for i, s in enumerate(series)
        if s
    ]
    return Chart(key, lines, (x0, x1), (y0, y1))
