"""Commands that run the pipeline (demo, backfill) and manage the embedded database."""

import argparse
import dataclasses
import datetime as dt
import sys
import time
from collections.abc import Sequence

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

    db = commands.add_parser("db", help="the database MarketPulse uses")
    db_commands = db.add_subparsers(required=True, metavar="ACTION")
    db_commands.add_parser("url", help="print the database URL").set_defaults(handler=_db_url)
    db_commands.add_parser("stop", help="stop the embedded server").set_defaults(handler=_db_stop)


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
    with dagster_instance(settings.home) as instance:
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
    from marketpulse_pipeline.storage.tables import (
        REJECTED_PRICES,
        STOCK_PRICES,
        anomalies_per_method,
        strongest_consensus,
        table_summary,
    )

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
