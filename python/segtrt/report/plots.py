"""Small inline-SVG charts for the HTML report: no plotting library, no network, crisp at any zoom.

    scatter_svg([Point("fp16", 31.0, 0.52, "#1f77b4")], "latency p50 (ms)", "mask AP")
    grouped_bars_svg([("fp32", [0.47, 0.51, 0.64])], [("small", "#ff7f0e"), ...], "mask AP")
    bars_svg([("backbone.conv1", 0.012, "#3b4cc0")], "proxy error")

Each returns one <svg> element as text. Marks are filled with the exact colours given (tests find them in
a screenshot), so pick colours no other mark on the page uses. No torch here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

WIDTH, HEIGHT = 760, 380
MARGIN = {"left": 70, "right": 30, "top": 44, "bottom": 60}  # the legend sits in the top margin
AXIS_COLOUR, GRID_COLOUR, TEXT_COLOUR = "#333333", "#dddddd", "#222222"
LEGEND_ROW = 18  # px per row of legend entries


@dataclass(frozen=True)
class Point:
    label: str
    x: float
    y: float
    colour: str


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high] (about `count` of them)."""
    if high <= low:
        high = low + (abs(low) or 1.0)
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.floor(low / step) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 10))
        value += step
    if ticks[-1] < high:
        ticks.append(round(value, 10))
    return ticks


class _Frame:
    """Maps data coordinates to the plot area and draws its axes, grid and labels."""

    def __init__(self, x_ticks, y_ticks, width=WIDTH, height=HEIGHT, legend=()):
        self.x_ticks, self.y_ticks = x_ticks, y_ticks
        self.left, self.right = MARGIN["left"], width - MARGIN["right"]
        self.legend = _legend_places(legend, self.left, self.right)
        extra = LEGEND_ROW * max(len({y for *_, y in self.legend}) - 1, 0)  # rows beyond the first
        self.width, self.height = width, height + extra
        self.top, self.bottom = MARGIN["top"] + extra, self.height - MARGIN["bottom"]

    def x(self, value: float) -> float:
        low, high = self.x_ticks[0], self.x_ticks[-1]
        return self.left + (value - low) / (high - low) * (self.right - self.left)

    def y(self, value: float) -> float:
        low, high = self.y_ticks[0], self.y_ticks[-1]
        return self.bottom - (value - low) / (high - low) * (self.bottom - self.top)

    def axes(self, x_label: str, y_label: str, x_tick_labels=True) -> list[str]:
        parts = []
        for tick in self.y_ticks:
            y = self.y(tick)
            parts.append(f'<line x1="{self.left}" y1="{y:.1f}" x2="{self.right}" y2="{y:.1f}" stroke="{GRID_COLOUR}"/>')
            parts.append(_text(self.left - 8, y + 4, _number(tick), anchor="end"))
        if x_tick_labels:
            for tick in self.x_ticks:
                x = self.x(tick)
                parts.append(f'<line x1="{x:.1f}" y1="{self.top}" x2="{x:.1f}" y2="{self.bottom}" '
                             f'stroke="{GRID_COLOUR}"/>')
                parts.append(_text(x, self.bottom + 18, _number(tick), anchor="middle"))
        parts.append(f'<line x1="{self.left}" y1="{self.bottom}" x2="{self.right}" y2="{self.bottom}" '
                     f'stroke="{AXIS_COLOUR}"/>')
        parts.append(f'<line x1="{self.left}" y1="{self.top}" x2="{self.left}" y2="{self.bottom}" '
                     f'stroke="{AXIS_COLOUR}"/>')
        parts.append(_text((self.left + self.right) / 2, self.height - 12, x_label, anchor="middle"))
        middle = (self.top + self.bottom) / 2
        parts.append(_text(18, middle, y_label, anchor="middle", transform=f"rotate(-90 18 {middle:.1f})"))
        return parts

    def svg(self, title: str, parts: list[str]) -> str:
        return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.width}" height="{self.height}" '
                f'viewBox="0 0 {self.width} {self.height}" role="img" aria-label="{escape(title)}">'
                f'<title>{escape(title)}</title><rect width="100%" height="100%" fill="#ffffff"/>'
                + "".join(parts) + "</svg>")


def scatter_svg(points: list[Point], x_label: str, y_label: str, title: str = "", legend=()) -> str:
    """Labelled points; `legend` is [(name, colour)] drawn top right."""
    xs, ys = [p.x for p in points] or [0.0], [p.y for p in points] or [0.0]
    pad_x = (max(xs) - min(xs)) * 0.1 or max(abs(max(xs)) * 0.1, 1.0)
    pad_y = (max(ys) - min(ys)) * 0.1 or 0.05
    frame = _Frame(nice_ticks(max(min(xs) - pad_x, 0.0), max(xs) + pad_x),
                   nice_ticks(max(min(ys) - pad_y, 0.0), min(max(ys) + pad_y, 1.0)), legend=legend)
    parts = frame.axes(x_label, y_label)
    placed: list[tuple[float, float, float]] = []  # (x0, x1, baseline) of the labels so far
    for point in points:
        x, y = frame.x(point.x), frame.y(point.y)
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="8" fill="{point.colour}"/>')
        left_half = x < (frame.left + frame.right) / 2  # labels point inwards, so none runs off the plot
        width = 7 * len(point.label)
        x0 = x + 10 if left_half else x - 10 - width
        baseline = y - 8
        while any(x0 < b1 and b0 < x0 + width and abs(baseline - by) < 14 for b0, b1, by in placed):
            baseline += 14  # points close together: stack their labels instead of printing one over another
        placed.append((x0, x0 + width, baseline))
        parts.append(_text(x0, baseline, point.label))
    parts += _legend(frame)
    return frame.svg(title or f"{y_label} against {x_label}", parts)


def grouped_bars_svg(groups: list[tuple[str, list[float | None]]], series: list[tuple[str, str]], y_label: str,
                     title: str = "") -> str:
    """One group of bars per (label, values); values[i] is drawn in series[i]'s colour, None as "n/a".
    A label's "\n" breaks it into lines."""
    values = [v for _, group in groups for v in group if v is not None]
    frame = _Frame([0.0, 1.0], nice_ticks(0.0, max(values, default=1.0) * 1.05), legend=series)
    parts = frame.axes("", y_label, x_tick_labels=False)
    slot = (frame.right - frame.left) / max(len(groups), 1)
    bar = min(slot * 0.8 / max(len(series), 1), 40.0)
    for index, (label, group) in enumerate(groups):
        start = frame.left + slot * index + (slot - bar * len(series)) / 2
        for offset, (value, (_, colour)) in enumerate(zip(group, series)):
            x = start + offset * bar
            if value is None:
                parts.append(_text(x + bar / 2, frame.bottom - 4, "n/a", anchor="middle", size=10))
                continue
            top = frame.y(value)
            parts.append(f'<rect x="{x + 1:.1f}" y="{top:.1f}" width="{bar - 2:.1f}" '
                         f'height="{frame.bottom - top:.1f}" fill="{colour}"/>')
        for line_index, line in enumerate(label.split("\n")):  # a group's label may take two lines
            parts.append(_text(frame.left + slot * (index + 0.5), frame.bottom + 16 + 13 * line_index, line,
                               anchor="middle", size=11))
    parts += _legend(frame)
    return frame.svg(title or y_label, parts)


def bars_svg(bars: list[tuple[str, float, str]], x_label: str, title: str = "", legend=()) -> str:
    """Horizontal bars, one per (label, value, colour), top to bottom; labels left of the axis."""
    row = 22
    height = MARGIN["top"] + MARGIN["bottom"] + row * max(len(bars), 1)
    frame = _Frame(nice_ticks(0.0, max((value for _, value, _ in bars), default=1.0)), [0.0, 1.0],
                   height=height, legend=legend)
    frame.left = 230  # room for layer names
    parts = []
    for tick in frame.x_ticks:
        x = frame.x(tick)
        parts.append(f'<line x1="{x:.1f}" y1="{frame.top}" x2="{x:.1f}" y2="{frame.bottom}" stroke="{GRID_COLOUR}"/>')
        parts.append(_text(x, frame.bottom + 18, _number(tick), anchor="middle"))
    for index, (label, value, colour) in enumerate(bars):
        y = frame.top + index * row
        parts.append(f'<rect x="{frame.left}" y="{y + 3}" width="{max(frame.x(value) - frame.left, 1.0):.1f}" '
                     f'height="{row - 6}" fill="{colour}"/>')
        parts.append(_text(frame.left - 8, y + row / 2 + 4, _shorten(label, 34), anchor="end", size=11))
    parts.append(f'<line x1="{frame.left}" y1="{frame.top}" x2="{frame.left}" y2="{frame.bottom}" '
                 f'stroke="{AXIS_COLOUR}"/>')
    parts.append(_text((frame.left + frame.right) / 2, frame.height - 12, x_label, anchor="middle"))
    parts += _legend(frame)
    return frame.svg(title or x_label, parts)


def _legend_places(entries, left: float, right: float) -> list[tuple[str, str, float, float]]:
    """(name, colour, x, y) of each legend entry: rows above the plot area, wrapped at its width."""
    places, x, y = [], left, 12.0
    for name, colour in entries:
        width = 15 + 7 * len(name) + 18  # swatch, name at about 7 px per character of 12 px sans-serif, gap
        if x > left and x + width > right:
            x, y = left, y + LEGEND_ROW
        places.append((name, colour, x, y))
        x += width
    return places


def _legend(frame: _Frame) -> list[str]:
    """The frame's legend: 10x10 swatches (smaller than any mark) and names."""
    parts = []
    for name, colour, x, y in frame.legend:
        parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="10" height="10" fill="{colour}"/>')
        parts.append(_text(x + 15, y + 9, name, size=12))
    return parts


def _text(x: float, y: float, text: str, anchor: str = "start", size: int = 12, transform: str = "") -> str:
    extra = f' transform="{transform}"' if transform else ""
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" fill="{TEXT_COLOUR}" '
            f'font-family="sans-serif"{extra}>{escape(text)}</text>')


def _number(value: float) -> str:
    return f"{value:g}"


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else "…" + text[-(limit - 1):]
