"""A symbol's picture: price with SMA-20 and Bollinger bands, volume, RSI, and the days that
mattered — one marker per method, the alerts standing out, labelled false positives hollow.

One function renders every picture MarketPulse shows (email, the Dagster UI, `marketpulse
chart`, the HTML report). Matplotlib with the Agg backend: no display, no server, the same
pixels on every machine for the same data.
"""

from __future__ import annotations

import base64
import io
import multiprocessing
import threading
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from marketpulse_pipeline.features.rolling import usable_cores

if TYPE_CHECKING:  # matplotlib loads only when a picture is drawn
    import datetime as dt

    import psycopg
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

METHOD_STYLES = {
    "zscore": ("o", "#1f77b4"),
    "iqr": ("s", "#17becf"),
    "isolation_forest": ("D", "#ff7f0e"),
    "moving_average": ("^", "#2ca02c"),
    "volume": ("v", "#8c564b"),
    "technical": ("P", "#9467bd"),
    "volatility_adjusted": ("X", "#e377c2"),
    "market_relative": ("h", "#bcbd22"),
}
"""One marker shape and colour per method; a method not listed here gets a grey dot."""


@dataclass(frozen=True)
class ChartData:
    """What a chart shows, for one symbol over its window."""

    symbol: str
    bars: pd.DataFrame  # timestamp, close, volume, sma_20, bb_upper, bb_lower, rsi_14
    anomalies: pd.DataFrame  # timestamp, method
    alerts: pd.DataFrame  # timestamp, p_value, label (false_positive | confirmed | None)


def render(data: ChartData, fmt: str = "png", dpi: int = 80) -> bytes:
    """The chart as PNG (or SVG) bytes; a chart with no bars says so instead of failing."""
    import matplotlib.dates as mdates

    plt = _pyplot()

    numbers = ["close", "volume", "sma_20", "bb_upper", "bb_lower", "rsi_14"]
    bars = data.bars.assign(**{c: pd.to_numeric(data.bars[c]).astype("float64") for c in numbers})
    figure, (price, volume, rsi) = plt.subplots(
        3, 1, figsize=(10, 6.5), sharex=True, gridspec_kw={"height_ratios": [3.2, 1, 1]}
    )
    # fixed margins (room for the legend on the right): tight_layout costs more than drawing
    figure.subplots_adjust(left=0.08, right=0.8, top=0.94, bottom=0.07, hspace=0.08)
    try:
        if bars.empty:
            price.text(0.5, 0.5, f"{data.symbol}: no prices in this window", ha="center")
            price.set_axis_off(), volume.set_axis_off(), rsi.set_axis_off()
            return _save(figure, fmt, dpi)
        days = pd.to_datetime(bars["timestamp"])
        first, last = days.iloc[0], days.iloc[-1]
        price.fill_between(
            days,
            bars["bb_lower"],
            bars["bb_upper"],
            color="#9ecae1",
            alpha=0.35,
            label="Bollinger (20, 2)",
            linewidth=0,
        )
        price.plot(days, bars["sma_20"], color="#3182bd", linewidth=1, label="SMA 20")
        price.plot(days, bars["close"], color="#252525", linewidth=1.3, label="close")
        close = pd.Series(bars["close"].to_numpy(), index=days)
        for method, found in data.anomalies.groupby("method", sort=True):
            at = pd.to_datetime(found["timestamp"])
            at = at[at.isin(close.index)]
            marker, colour = METHOD_STYLES.get(method, (".", "#7f7f7f"))
            price.scatter(
                at, close[at], marker=marker, color=colour, s=22, alpha=0.8, label=method, zorder=3
            )
        _alerts(price, data.alerts, close)
        volume.vlines(days, 0, bars["volume"], color="#969696", linewidth=1.5)  # cheap bars
        volume.set_ylim(bottom=0)
        volume.yaxis.set_major_formatter(lambda value, _: f"{value / 1e6:g}M")
        volume.set_ylabel("volume")
        rsi.plot(days, bars["rsi_14"], color="#756bb1", linewidth=1)
        for level in (30, 70):
            rsi.axhline(level, color="#bdbdbd", linewidth=0.8, linestyle="--")
        rsi.set_ylim(0, 100)
        rsi.set_ylabel("RSI 14")
        price.set_ylabel("price")
        price.set_title(f"{data.symbol}  {first:%Y-%m-%d} .. {last:%Y-%m-%d}", loc="left")
        price.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
        rsi.xaxis.set_major_formatter(mdates.ConciseDateFormatter(rsi.xaxis.get_major_locator()))
        for axis in (price, volume, rsi):
            axis.grid(True, color="#f0f0f0")
            axis.margins(x=0.01)
        return _save(figure, fmt, dpi)
    finally:
        plt.close(figure)


PARALLEL_FROM = 4
"""Charts from which `render_many` draws in processes: below, starting them costs more."""
MAX_DRAWING_PROCESSES = 4


def render_many(charts: Sequence[ChartData], dpi: int = 80) -> list[bytes]:
    """`render` for each chart, on every core: matplotlib holds the GIL, so threads would take
    turns; forked processes draw side by side, starting at once with all this one loaded.
    Only while this process runs a single thread: forking a process whose other threads may
    hold locks can deadlock the child, so then the charts are drawn one after another."""
    workers = min(usable_cores(), len(charts), MAX_DRAWING_PROCESSES)
    forkable = "fork" in multiprocessing.get_all_start_methods()
    if len(charts) < PARALLEL_FROM or workers < 2 or not forkable or threading.active_count() > 1:
        return [render(chart, dpi=dpi) for chart in charts]
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        return list(pool.map(partial(render, dpi=dpi), charts))


def quality_chart(overall: pd.DataFrame, dpi: int = 60) -> bytes:
    """Precision and recall per method (index: method), best F1 first, as grouped bars."""
    plt = _pyplot()

    shown = overall.sort_values("f1", ascending=True, na_position="first")
    figure, axis = plt.subplots(figsize=(7, 0.35 * len(shown) + 1.2))
    try:
        rows = range(len(shown))
        for offset, measure, colour in ((-0.2, "precision", "#3182bd"), (0.2, "recall", "#e6550d")):
            values = pd.to_numeric(shown[measure]).fillna(0).to_numpy()
            axis.barh([r + offset for r in rows], values, height=0.4, color=colour, label=measure)
        axis.set_yticks(list(rows), list(shown.index))
        axis.set_xlim(0, 1)
        axis.set_title("Detection quality against the planted anomalies", loc="left")
        axis.legend(loc="lower right", fontsize=8, frameon=False)
        axis.grid(True, axis="x", color="#f0f0f0")
        axis.set_axisbelow(True)
        figure.subplots_adjust(left=0.25, right=0.97, top=0.9, bottom=0.08)
        return _save(figure, "png", dpi)
    finally:
        plt.close(figure)


def _pyplot() -> ModuleType:
    """pyplot on the Agg backend: no display, the same pixels everywhere."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _alerts(axis: Axes, alerts: pd.DataFrame, close: pd.Series) -> None:
    """Alerts as large stars above the price; labelled false positives hollow and grey."""
    if alerts.empty:
        return
    at = pd.to_datetime(alerts["timestamp"])
    keep = at.isin(close.index).to_numpy()
    alerts, at = alerts[keep], at[keep]
    wrong = (alerts["label"] == "false_positive").to_numpy()
    styles = (
        (~wrong, {"color": "#de2d26", "edgecolor": "black", "linewidth": 0.6, "label": "alert"}),
        (
            wrong,
            {
                "facecolor": "none",
                "edgecolor": "#737373",
                "linewidth": 1.0,
                "label": "alert, labelled false positive",
            },
        ),
    )
    for rows, style in styles:
        if rows.any():
            axis.scatter(at[rows], close[at[rows]], marker="*", s=220, zorder=4, **style)


def _save(figure: Figure, fmt: str, dpi: int) -> bytes:
    """SVG as drawn; PNG reduced to a 256-colour palette — a third of the bytes for flat
    colours and lines, which matters where the image travels inside event metadata."""
    buffer = io.BytesIO()
    if fmt != "png":
        figure.savefig(buffer, format=fmt, dpi=dpi)
        return buffer.getvalue()
    from PIL import Image

    # the drawn pixels, quantized: no first PNG encoded only to be decoded again
    figure.set_dpi(dpi)
    figure.canvas.draw()
    pixels = np.asarray(figure.canvas.buffer_rgba())[..., :3]
    palette = Image.fromarray(pixels).quantize(colors=256, method=Image.Quantize.FASTOCTREE)
    palette.save(buffer, format="png")
    return buffer.getvalue()


def symbol_chart(
    conn: psycopg.Connection,
    symbol: str,
    start: dt.date | None = None,
    end: dt.date | None = None,
    dpi: int = 80,
) -> bytes:
    """`symbol`'s chart (PNG) from the database: by default its latest 120 sessions."""
    from marketpulse_pipeline.storage.queries import chart_frames

    bars, anomalies, alerts = chart_frames(conn, symbol, start, end)
    return render(ChartData(symbol, bars, anomalies, alerts), dpi=dpi)


def markdown_image(png: bytes, title: str) -> str:
    """The PNG inline in Markdown, as the Dagster UI renders metadata images."""
    return f"![{title}](data:image/png;base64,{base64.b64encode(png).decode()})"
