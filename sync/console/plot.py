"""The lag plot as numbers for an inline SVG: the template draws it, no script or image needed."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sync.console.readmodel import Sample, title

WIDTH = 640
HEIGHT = 180
LEFT = 48
RIGHT = 12
TOP = 12
BOTTOM = 28
SPAN = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Series:
    """One line of the plot."""

    name: str
    css: str
    points: str
    last: str
    # A lone point, drawn as a dot: a line through one point shows nothing.
    dots: tuple[tuple[float, float], ...] = ()


@dataclass(frozen=True, slots=True)
class Plot:
    """What the template needs to draw a plot with axes and a legend."""

    width: int
    height: int
    series: tuple[Series, ...]
    y_ticks: tuple[tuple[float, str], ...]
    x_ticks: tuple[tuple[float, str], ...]
    plot_left: int
    plot_right: int
    plot_top: int
    plot_bottom: int
    empty: bool
    title: str


def _nice_top(value: float) -> float:
    for step in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200):
        if value <= step:
            return float(step)
    return float(int(value) + 1)


def _seconds(value: float) -> str:
    if value >= 60:
        return f"{value / 60:g} min"
    return f"{value:g} s"


def lag_plot(samples: Sequence[Sample], now: datetime, systems: Sequence[str]) -> Plot:
    """Mean sync lag of each of `systems` over the last hour (one point per sample interval),
    in the order given."""
    start = now - SPAN
    kept = [s for s in samples if s.at >= start]
    seen = {name for s in kept for name, v in s.lag.items() if v is not None}
    systems = [name for name in systems if name in seen]
    values = [v for s in kept for name, v in s.lag.items() if v is not None and name in systems]
    top = _nice_top(max(values, default=1.0))
    return _plot(
        kept,
        start,
        top,
        [
            (
                title(system),
                f"line-{i % 4}",
                [(s.at, s.lag.get(system)) for s in kept],
            )
            for i, system in enumerate(systems)
        ],
        _seconds,
        "Mean sync lag, last hour",
    )


def depth_plot(samples: Sequence[Sample], now: datetime) -> Plot:
    """Tasks waiting in the queue over the last hour."""
    start = now - SPAN
    kept = [s for s in samples if s.at >= start]
    top = _nice_top(max((float(s.queue_depth) for s in kept), default=1.0))
    points: list[tuple[datetime, float | None]] = [(s.at, float(s.queue_depth)) for s in kept]
    return _plot(kept, start, top, [("Queue", "line-q", points)], lambda v: f"{v:g}", "Queue depth")


def _plot(
    kept: Sequence[Sample],
    start: datetime,
    top: float,
    lines: Sequence[tuple[str, str, Sequence[tuple[datetime, float | None]]]],
    label: Callable[[float], str],
    heading: str,
) -> Plot:
    inner_w = WIDTH - LEFT - RIGHT
    inner_h = HEIGHT - TOP - BOTTOM

    def x(at: datetime) -> float:
        return LEFT + inner_w * max(0.0, min(1.0, (at - start) / SPAN))

    def y(value: float) -> float:
        return TOP + inner_h * (1 - min(value, top) / top)

    series = []
    for name, css, points in lines:
        drawn = [(x(at), y(v)) for at, v in points if v is not None]
        last = next((v for _, v in reversed(points) if v is not None), None)
        series.append(
            Series(
                name,
                css,
                " ".join(f"{px:.1f},{py:.1f}" for px, py in drawn),
                label(last) if last is not None else "-",
                tuple(drawn) if len(drawn) == 1 else (),
            )
        )
    y_ticks = tuple((y(top * f), label(top * f)) for f in (0.0, 0.5, 1.0))
    x_ticks = tuple(
        (LEFT + inner_w * (m / 60), "now" if m == 60 else f"-{60 - m} min")
        for m in (0, 15, 30, 45, 60)
    )
    return Plot(
        WIDTH,
        HEIGHT,
        tuple(series),
        y_ticks,
        x_ticks,
        LEFT,
        WIDTH - RIGHT,
        TOP,
        HEIGHT - BOTTOM,
        empty=not any(s.points for s in series),
        title=heading,
    )
