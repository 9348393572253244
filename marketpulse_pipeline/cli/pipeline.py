"""Commands that run the pipeline (demo, backfill) and manage the embedded database."""

import argparse
import dataclasses
import datetime as dt
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from marketpulse_pipeline.calendar import latest_completed_session, session_offset
from marketpulse_pipeline.settings import Settings, SettingsError, parse_date, parse_symbols


def add_commands(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser(
        "demo", help="materialize the watchlist's last N sessions (synthetic)"
    )
    demo.add_argument("--days", type=int, default=250, help="trading days to load (default 250)")
    demo.set_defaults(handler=_demo)

    backfill = commands.add_parser("backfill", help="materialize the pipeline for a window of days")
    backfill.add_argument("--start", required=True, type=_date, help="first day (YYYY-MM-DD)")
    backfill.add_argument("--end", type=_date, help="last day (default: latest completed session)")
    backfill.add_argument("--symbols", type=_symbols, help="comma-separated (default: watchlist)")
    backfill.set_defaults(handler=_backfill)

    bench = commands.add_parser("bench", help="measure the pipeline against its floors")
    bench.add_argument(
        "--scenarios",
        type=_choices({"demo", "daily", "scale"}),
        default="demo,daily,scale",
        help="comma-separated: demo, daily, scale (default: all)",
    )
    bench.add_argument("--demo-days", type=int, default=250)
    bench.add_argument("--daily-years", type=_years, default="2,10", help="(default 2,10)")
    bench.add_argument("--scale-symbols", type=int, default=100)
    bench.add_argument("--scale-days", type=int, default=1260)
    bench.add_argument("--json", type=Path, help="also write the numbers to this file")
    bench.set_defaults(handler=_bench)

    db = commands.add_parser("db", help="the database MarketPulse uses")
    db_commands = db.add_subparsers(required=True, metavar="ACTION")
    db_commands.add_parser("url", help="print the database URL").set_defaults(handler=_db_url)
    db_commands.add_parser("stop", help="stop the embedded server").set_defaults(handler=_db_stop)


def _choices(allowed: set[str]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        chosen = [item.strip() for item in text.split(",") if item.strip()]
        unknown = sorted(set(chosen) - allowed)
        if unknown or not chosen:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(sorted(allowed))}")
        return chosen

    return parse


def _years(text: str) -> list[int]:
    try:
        years = [int(item) for item in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of years"
        ) from None
    if any(year < 1 for year in years):
        raise argparse.ArgumentTypeError("years must be at least 1")
    return years


def _bench(args: argparse.Namespace, settings: Settings) -> int:
    from marketpulse_pipeline.benchmark import as_json, report, run_benchmark

    began = time.perf_counter()
    steps = run_benchmark(
        args.scenarios,
        demo_days=args.demo_days,
        daily_years=args.daily_years,
        scale_symbols=args.scale_symbols,
        scale_days=args.scale_days,
    )
    print(f"\nmarketpulse bench, {dt.date.today()}, {os.cpu_count()} cores:\n")
    print(report(steps))
    print(f"\nbenchmark took {time.perf_counter() - began:.0f}s")
    if args.json:
        args.json.write_text(json.dumps(as_json(steps), indent=2))
    return 0


def _date(text: str) -> dt.date:
    try:
        return parse_date(text, "date")
    except SettingsError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _symbols(text: str) -> tuple[str, ...]:
    try:
        return parse_symbols(text, "--symbols")
    except SettingsError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    if args.days < 1:
        raise ValueError("--days must be at least 1")
    end = latest_completed_session()
    start = session_offset(end, -(args.days - 1))
    print(
        f"MarketPulse demo: {len(settings.symbols)} symbols x {args.days} sessions ({start}..{end})"
    )
    return _materialize(
        dataclasses.replace(settings, source="synthetic"), settings.symbols, start, end
    )


def _backfill(args: argparse.Namespace, settings: Settings) -> int:
    end = args.end or latest_completed_session()
    if args.start > end:
        raise ValueError(f"--start {args.start} is after --end {end}")
    return _materialize(settings, args.symbols or settings.symbols, args.start, end)


def _materialize(settings: Settings, symbols: Sequence[str], start: dt.date, end: dt.date) -> int:
    from marketpulse_pipeline.definitions import build_definitions
    from marketpulse_pipeline.runner import dagster_instance, run_pipeline
    from marketpulse_pipeline.storage.database import resolve_url

    began = time.perf_counter()
    url = resolve_url(settings.database_url, settings.home)
    print(f"database: {_redacted(url)}; source: {settings.source}")
    with dagster_instance() as instance:
        outcomes = run_pipeline(
            build_definitions(settings), instance, symbols, start=start, end=end
        )
    _print_summary(url, symbols, start, end)
    print(f"took {time.perf_counter() - began:.1f}s")
    failed = [failure for outcome in outcomes for failure in outcome.failures]
    if failed or not all(outcome.success for outcome in outcomes):
        failed = failed or ["see the run in the Dagster UI"]
        print("\nfailed:\n  " + "\n  ".join(failed), file=sys.stderr)
        return 1
    return 0


def _print_summary(url: str, symbols: Sequence[str], start: dt.date, end: dt.date) -> None:
    from marketpulse_pipeline.storage.database import connect
    from marketpulse_pipeline.storage.queries import anomalies_per_method, strongest_consensus
    from marketpulse_pipeline.storage.tables import REJECTED_PRICES, STOCK_PRICES, table_summary

    with connect(url) as conn:
        sections = {
            "stock_prices": table_summary(conn, STOCK_PRICES, symbols),
            f"anomalies per method, {start}..{end}": anomalies_per_method(
                conn, symbols, start, end
            ),
            "strongest consensus anomalies": strongest_consensus(conn, symbols, start, end),
        }
        rejected = int(table_summary(conn, REJECTED_PRICES, symbols)["rows"].sum())
    for title, frame in sections.items():
        print(f"\n{title}:\n{frame.to_string(index=False) if len(frame) else '(none)'}")
    print(f"\nrejected rows: {rejected}")


def _db_url(args: argparse.Namespace, settings: Settings) -> int:
    from marketpulse_pipeline.storage.database import resolve_url

    print(resolve_url(settings.database_url, settings.home))
    return 0


def _db_stop(args: argparse.Namespace, settings: Settings) -> int:
    from marketpulse_pipeline.storage.database import stop_embedded

    if settings.database_url:
        print("MARKETPULSE_DATABASE_URL is set: MarketPulse does not manage that server")
        return 0
    stopped = stop_embedded(settings.home)
    print("embedded PostgreSQL stopped" if stopped else "embedded PostgreSQL was not running")
    return 0


def _redacted(url: str) -> str:
    """The URL without its password, for printing."""
    from psycopg.conninfo import conninfo_to_dict

    parts = conninfo_to_dict(url)
    where = parts.get("host", "localhost")
    return f"{parts.get('user', '')}@{where}/{parts.get('dbname', '')}"
