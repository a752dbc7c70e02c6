"""
Chart geometry for the staff dashboard: the numbers a template needs to draw an SVG bar or
line chart (rectangles, polyline points, axis ticks, hover titles), computed here so the
template only draws.

Values (money, percentages) stay `Decimal`; floats appear only as pixel coordinates.
"""

from collections.abc import Callable, Sequence
from datetime import date
from decimal import ROUND_CEILING, Decimal

WIDTH = 640
HEIGHT = 210
# Room for the y labels on the left and the day labels below.
MARGIN_LEFT = 52
MARGIN_RIGHT = 10
MARGIN_TOP = 10
MARGIN_BOTTOM = 26
# A day label every this many days, counted back from the last day (the newest is labelled).
DAY_LABEL_EVERY = 5

_NICE_STEPS = (Decimal(1), Decimal(2), Decimal("2.5"), Decimal(5), Decimal(10))


def day_label(day: date) -> str:
    return f"{day.day} {day.strftime('%b')}"


def nice_step(span: Decimal, ticks: int = 4) -> Decimal:
    """A round step (1, 2, 2.5 or 5 times a power of ten) dividing `span` into ~`ticks`."""
    if span <= 0:
        return Decimal(1)
    raw = span / ticks
    power = Decimal(1).scaleb(raw.adjusted())
    for step in _NICE_STEPS:
        if step * power >= raw:
            return step * power
    return 10 * power  # pragma: no cover (10 always fits)


def compact(value: Decimal) -> str:
    """An axis label: `1.5M`, `20k`, `250`, `0.5` (the exact amount is in the hover title)."""
    for limit, suffix in ((Decimal("1e9"), "B"), (Decimal("1e6"), "M"), (Decimal("1e3"), "k")):
        if abs(value) >= limit:
            return f"{_plain(value / limit)}{suffix}"
    return _plain(value)


def _plain(value: Decimal) -> str:
    text = f"{value.quantize(Decimal('0.01')).normalize():f}"
    return "0" if text in ("-0", "0") else text


class _Frame:
    """Maps day indexes and values to pixels inside the plot area."""

    def __init__(self, days: int, bottom: Decimal, top: Decimal):
        self.left = MARGIN_LEFT
        self.right = WIDTH - MARGIN_RIGHT
        self.top_px = MARGIN_TOP
        self.bottom_px = HEIGHT - MARGIN_BOTTOM
        self.days = max(days, 1)
        self.band = (self.right - self.left) / self.days
        self.bottom = bottom
        self.span = (top - bottom) or Decimal(1)

    def x(self, index: int) -> float:
        return self.left + self.band * (index + 0.5)

    def y(self, value: Decimal) -> float:
        share = float((value - self.bottom) / self.span)
        return round(self.bottom_px - share * (self.bottom_px - self.top_px), 2)

    def base(self, titles: Sequence[str]) -> dict:
        return {
            "width": WIDTH,
            "height": HEIGHT,
            "left": self.left,
            "right": self.right,
            "top": self.top_px,
            "bottom": self.bottom_px,
            "tick_end": self.bottom_px + 4,
            "label_x": self.left - 6,
            "day_label_y": self.bottom_px + 17,
            # One invisible column per day carries the hover title, so a day with no bar
            # (or a dot too small to aim at) still tells its numbers.
            "columns": [
                {
                    "x": round(self.left + self.band * index, 2),
                    "width": round(self.band, 2),
                    "title": title,
                }
                for index, title in enumerate(titles)
            ],
            "plot_height": self.bottom_px - self.top_px,
        }

    def day_ticks(self, days: Sequence[date]) -> list[dict]:
        last = len(days) - 1
        return [
            {
                "x": round(self.x(index), 2),
                "label": day_label(day) if (last - index) % DAY_LABEL_EVERY == 0 else "",
            }
            for index, day in enumerate(days)
        ]


def _value_ticks(frame: _Frame, bottom: Decimal, top: Decimal, step: Decimal, label) -> list:
    ticks = []
    value = bottom
    while value <= top:
        ticks.append({"y": frame.y(value), "label": label(value), "zero": value == 0})
        value += step
    return ticks


def bar_chart(
    *,
    days: Sequence[date],
    values: Sequence[Decimal],
    titles: Sequence[str],
    line: Sequence[Decimal] | None = None,
    partial_last: bool = False,
    tick_label: Callable[[Decimal], str] = compact,
) -> dict:
    """
    Bars for `values` (one per day), optionally with a `line` over them (net of refunds,
    which may dip below zero: the axis then extends below the baseline). `titles` are the
    hover texts, one per day. `partial_last` marks the last bar as a day still running.
    """
    if len(values) != len(days) or len(titles) != len(days):
        raise ValueError("bar_chart needs one value and one title per day")
    everything = [*values, *(line or ())]
    high = max([Decimal(0), *everything])
    low = min([Decimal(0), *everything])
    step = nice_step(high - low)
    top = (high / step).to_integral_value(ROUND_CEILING) * step if high else step
    bottom = -((-low / step).to_integral_value(ROUND_CEILING) * step) if low else Decimal(0)
    frame = _Frame(len(days), bottom, top)
    zero = frame.y(Decimal(0))
    width = round(frame.band * 0.72, 2)
    bars = []
    for index, value in enumerate(values):
        y = frame.y(value)
        bars.append(
            {
                "x": round(frame.x(index) - width / 2, 2),
                "y": min(y, zero),
                "width": width,
                "height": round(abs(zero - y), 2),
                "partial": partial_last and index == len(values) - 1,
            }
        )
    chart = frame.base(titles) | {
        "zero_y": zero,
        "y_ticks": _value_ticks(frame, bottom, top, step, tick_label),
        "x_ticks": frame.day_ticks(days),
        "bars": bars,
        "line": None,
    }
    if line is not None:
        chart["line"] = _line(frame, line)
    return chart


def line_chart(
    *,
    days: Sequence[date],
    values: Sequence[Decimal | None],
    titles: Sequence[str],
    top: Decimal = Decimal(100),
    step: Decimal = Decimal(25),
    tick_label: Callable[[Decimal], str] = lambda value: f"{_plain(value)} %",
) -> dict:
    """A line over `values` from 0 to `top`; a `None` (no data that day) breaks the line."""
    if len(values) != len(days) or len(titles) != len(days):
        raise ValueError("line_chart needs one value and one title per day")
    frame = _Frame(len(days), Decimal(0), top)
    return frame.base(titles) | {
        "zero_y": frame.y(Decimal(0)),
        "y_ticks": _value_ticks(frame, Decimal(0), top, step, tick_label),
        "x_ticks": frame.day_ticks(days),
        "bars": [],
        "line": _line(frame, values),
    }


def _line(frame: _Frame, values: Sequence[Decimal | None]) -> dict:
    segments: list[list[tuple[float, float]]] = []
    dots = []
    current: list[tuple[float, float]] = []
    for index, value in enumerate(values):
        if value is None:
            if current:
                segments.append(current)
            current = []
            continue
        point = (round(frame.x(index), 2), frame.y(value))
        current.append(point)
        dots.append({"x": point[0], "y": point[1]})
    if current:
        segments.append(current)
    return {
        "segments": [" ".join(f"{x},{y}" for x, y in segment) for segment in segments],
        "dots": dots,
    }
