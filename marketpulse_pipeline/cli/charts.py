"""`marketpulse chart` and `marketpulse report`: pictures without a server.

`chart` writes one symbol's chart (PNG or SVG); `report` writes a static HTML page — the
watchlist's charts beside it, the latest alerts, the anomaly counts and the detection quality
table — that opens from disk and can be mailed to a colleague: no server, no CDN, no script.
"""

import argparse
import datetime as dt
import html
import time
from pathlib import Path

import pandas as pd

from marketpulse_pipeline.cli.reads import _connect, _days, _symbol
from marketpulse_pipeline.settings import Settings, parse_date
from marketpulse_pipeline.storage import queries

FORMATS = {".png": "png", ".svg": "svg"}


def add_commands(commands: argparse._SubParsersAction) -> None:
    chart = commands.add_parser("chart", help="write a symbol's chart (PNG or SVG)")
    chart.add_argument("symbol", type=_symbol)
    first = chart.add_mutually_exclusive_group()
    first.add_argument(
        "--days",
        type=_days,
        default=queries.CHART_SESSIONS,
        help=f"sessions back from the latest (default {queries.CHART_SESSIONS})",
    )
    first.add_argument("--start", type=_date, help="first day (YYYY-MM-DD), instead of --days")
    chart.add_argument("--end", type=_date, help="last day (default: the latest stored)")
    chart.add_argument(
        "-o", "--output", type=Path, help="FILE.png or FILE.svg (default SYMBOL.png)"
    )
    chart.set_defaults(handler=_chart)

    report = commands.add_parser("report", help="write a static HTML report of the watchlist")
    report.add_argument("-o", "--output", type=Path, default=Path("report"), help="directory")
    report.set_defaults(handler=_report)


def _date(text: str) -> dt.date:
    return parse_date(text, "date")


def _chart(args: argparse.Namespace, settings: Settings) -> int:
    from marketpulse_pipeline.delivery.charts import ChartData, render

    output = args.output or Path(f"{args.symbol}.png")
    fmt = FORMATS.get(output.suffix.lower())
    if fmt is None:
        raise ValueError(f"{output}: the chart is written as .png or .svg")
    if args.start and args.end and args.start > args.end:
        raise ValueError(f"--start {args.start} is after --end {args.end}")
    with _connect(settings) as conn:
        bars, anomalies, alerts = queries.chart_frames(
            conn, args.symbol, args.start, args.end, args.days
        )
    if bars.empty:
        raise LookupError(f"{args.symbol} has no prices in that window")
    began = time.perf_counter()
    _write(output, render(ChartData(args.symbol, bars, anomalies, alerts), fmt))
    first, last = bars["timestamp"].iloc[[0, -1]]
    print(
        f"{output}: {args.symbol} {first}..{last}, {len(anomalies)} anomalies,"
        f" {len(alerts)} alerts ({time.perf_counter() - began:.2f} s)"
    )
    return 0


def _report(args: argparse.Namespace, settings: Settings) -> int:
    from marketpulse_pipeline.delivery.charts import ChartData, render_many

    directory: Path = args.output
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"{directory}: {error.strerror or error}") from None
    with _connect(settings) as conn:
        stored = set(queries.stored_symbols(conn))
        charted = [symbol for symbol in settings.symbols if symbol in stored]
        charts = [ChartData(symbol, *queries.chart_frames(conn, symbol)) for symbol in charted]
        for symbol, png in zip(charted, render_many(charts), strict=True):
            _write(directory / f"{symbol}.png", png)
        sections = [
            f'<h3>{html.escape(symbol)}</h3><img src="{html.escape(symbol)}.png"'
            f' alt="{html.escape(symbol)} chart" width="800">'
            if symbol in stored
            else f"<h3>{html.escape(symbol)}</h3><p>No prices stored.</p>"
            for symbol in settings.symbols
        ]
        today = settings.today()
        alerts = queries.recent_alerts(conn, days=90, limit=100, today=today)
        stats = queries.anomaly_stats(conn, 30, today)
        quality = queries.detection_quality_table(conn)
    page = _page(settings, today, alerts, stats, quality, sections)
    _write(directory / "index.html", page.encode())
    print(f"{directory / 'index.html'}: {len(sections)} symbols, {len(alerts)} alerts")
    return 0


def _write(path: Path, content: bytes) -> None:
    """`content` to `path`; a path that cannot be written is bad input, in one line."""
    try:
        path.write_bytes(content)
    except OSError as error:
        raise ValueError(f"{path}: {error.strerror or error}") from None


def _page(
    settings: Settings,
    today: dt.date,
    alerts: pd.DataFrame,
    stats: pd.DataFrame,
    quality: pd.DataFrame,
    sections: list[str],
) -> str:
    def table(frame: pd.DataFrame, empty: str) -> str:
        if frame.empty:
            return f"<p>{empty}</p>"
        return frame.to_html(index=False, border=0, classes="t", float_format="{:.4g}".format)

    shown = alerts[["timestamp", "symbol", "p_value", "return_pct", "methods", "label"]]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>MarketPulse report {today}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
table.t {{ border-collapse: collapse; margin-bottom: 1.5em; font-size: 90%; }}
table.t th, table.t td {{ padding: 0.2em 0.6em; border-bottom: 1px solid #ddd; text-align: right; }}
img {{ max-width: 100%; height: auto; }}
</style></head><body>
<h1>MarketPulse report, {today}</h1>
<p>Watchlist: {html.escape(", ".join(settings.symbols))}.</p>
<h2>Latest alerts (90 days)</h2>
{table(shown, "No alerts in the last 90 days.")}
<h2>Anomalies in the last 30 days</h2>
{table(stats, "No anomalies in the last 30 days.")}
<h2>Detection quality</h2>
{table(quality, "No detection quality scored yet.")}
<h2>Charts</h2>
{"".join(sections)}
</body></html>
"""
