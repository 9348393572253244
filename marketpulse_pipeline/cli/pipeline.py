"""Commands that run the pipeline (demo, update, backfill) and manage its database."""

import argparse
import dataclasses
import datetime as dt
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from marketpulse_pipeline.benchmark import SCENARIOS, Sizes
from marketpulse_pipeline.calendar import (
    EARLIEST_SESSION,
    SessionWindow,
    closing_bell,
    next_session,
    previous_session,
    session_offset,
)
from marketpulse_pipeline.cli.reads import whole_argument
from marketpulse_pipeline.session_plan import PriceRequest
from marketpulse_pipeline.settings import Settings, SettingsError, parse_date, parse_symbols


def add_commands(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser(
        "demo", help="materialize the watchlist's last N sessions (synthetic)"
    )
    demo.add_argument(
        "--days",
        type=whole_argument(1, MAX_SESSIONS),
        default=250,
        help=f"trading days to load, 1..{MAX_SESSIONS} (default 250)",
    )
    _verbose(demo)
    demo.set_defaults(handler=_demo)

    update = commands.add_parser(
        "update",
        help="what the daily schedule runs: catch every asset of the watchlist up through the"
        " latest completed session",
    )
    _verbose(update)
    update.set_defaults(handler=_update)

    backfill = commands.add_parser("backfill", help="load prices for a window of days")
    backfill.add_argument("--start", required=True, type=_date, help="first day (YYYY-MM-DD)")
    backfill.add_argument(
        "--end", type=_date, help="last day, at most the latest completed session (the default)"
    )
    backfill.add_argument("--symbols", type=_symbols, help="comma-separated (default: watchlist)")
    _verbose(backfill)
    backfill.set_defaults(handler=_backfill)

    bench = commands.add_parser("bench", help="measure the pipeline against its floors")
    bench.add_argument(
        "--scenarios",
        type=_choices(set(SCENARIOS)),
        default=",".join(SCENARIOS),
        help=f"comma-separated: {', '.join(SCENARIOS)} (default: all)",
    )
    sizes = Sizes()
    for name, help_text in (
        ("demo_days", "sessions of the demo"),
        ("scale_symbols", "symbols of the scale backfill"),
        ("scale_days", "sessions of the scale backfill"),
        ("wide_symbols", "symbols of the wide daily run (a year of history each)"),
        ("long_symbols", "symbols of the long backfills"),
        ("api_requests", "requests of the API load test"),
        ("api_clients", "concurrent clients of the API load test"),
    ):
        flag = "--" + name.replace("_", "-")
        default = getattr(sizes, name)
        bench.add_argument(flag, type=int, default=default, help=f"{help_text} ({default})")
    bench.add_argument("--daily-years", type=_years, default="2,10", help="(default 2,10)")
    bench.add_argument("--long-years", type=_years, default="5,20", help="(default 5,20)")
    bench.add_argument("--json", type=Path, help="also write the numbers to this file")
    bench.set_defaults(handler=_bench)

    db = commands.add_parser("db", help="the database MarketPulse uses")
    db_commands = db.add_subparsers(required=True, metavar="ACTION")
    db_commands.add_parser("url", help="print the database URL").set_defaults(handler=_db_url)
    db_commands.add_parser("stop", help="stop the embedded server").set_defaults(handler=_db_stop)
    db_commands.add_parser(
        "remove-future",
        help="move bars dated after the latest completed session to rejected_prices, and drop"
        " every row computed for those days",
    ).set_defaults(handler=_db_remove_future)


MAX_SESSIONS = 10_000  # about 40 years of sessions


def _verbose(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--verbose", action="store_true", help="also show Dagster's log, tracebacks included"
    )


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
    chosen = {name: getattr(args, name) for name in Sizes.__dataclass_fields__}
    results = run_benchmark(args.scenarios, settings.latest_session(), Sizes(**chosen))
    print(f"\nmarketpulse bench, {dt.date.today()}, {os.cpu_count()} cores:\n")
    print(report(results))
    print(f"\nbenchmark took {time.perf_counter() - began:.0f}s")
    if args.json:
        args.json.write_text(json.dumps(as_json(results), indent=2))
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
    end = settings.latest_session()
    start = session_offset(end, -(args.days - 1))
    print(
        f"MarketPulse demo: {len(settings.symbols)} symbols x {args.days} sessions ({start}..{end})"
    )
    settings = dataclasses.replace(settings, source="synthetic")
    split = _last_split(settings, SessionWindow(next_session(start), end))
    if split is not None and _stored_through(settings) < previous_session(split[1]):
        # show a restatement: load the prices as served before the split (once: a database
        # already holding later prices is past it)
        symbol, day, ratio = split
        eve = previous_session(day)
        split = f"a {ratio:g}:1 split" if ratio >= 1 else f"a 1:{1 / ratio:g} reverse split"
        print(
            f"first the prices as the source served them on {eve}: {symbol} has {split} on"
            f" {day}, so the run after restates {symbol}'s history"
        )
        before = dataclasses.replace(settings, now=closing_bell(eve))
        request = PriceRequest(start, eve)
        prices = ["stock_prices", "injected_anomalies"]  # one multi-asset
        if _materialize(args, before, settings.symbols, request, assets=prices):
            return 1
    return _materialize(args, settings, settings.symbols, PriceRequest(start, end))


def _stored_through(settings: Settings) -> dt.date:
    """The last session any watchlist symbol has prices for (EARLIEST_SESSION when none)."""
    from marketpulse_pipeline.storage.database import connect, resolve_url

    with connect(resolve_url(settings.database_url, settings.home)) as conn:
        last = conn.execute(
            'SELECT max("timestamp") FROM stock_prices WHERE symbol = ANY(%s)',
            [list(settings.symbols)],
        ).fetchone()[0]
    return last or EARLIEST_SESSION


def _last_split(settings: Settings, window: SessionWindow) -> tuple[str, dt.date, float] | None:
    """The watchlist's last split that the synthetic source planted in `window`, if any."""
    from marketpulse_pipeline.sources.synthetic import SyntheticSource

    source = SyntheticSource(seed=settings.seed, as_of=window.end)
    actions = source.corporate_actions(settings.symbols, window)
    splits = actions[actions["kind"] == "split"].sort_values("timestamp")
    if splits.empty:
        return None
    last = splits.iloc[-1]
    return last["symbol"], last["timestamp"].date(), float(last["value"])


def _update(args: argparse.Namespace, settings: Settings) -> int:
    print(
        f"MarketPulse update: {len(settings.symbols)} symbols through {settings.latest_session()}"
    )
    return _materialize(args, settings, settings.symbols, PriceRequest())


def _backfill(args: argparse.Namespace, settings: Settings) -> int:
    request = PriceRequest(args.start, args.end)
    return _materialize(args, settings, args.symbols or settings.symbols, request)


def _materialize(
    args: argparse.Namespace,
    settings: Settings,
    symbols: Sequence[str],
    request: PriceRequest,
    assets: Sequence[str] | None = None,
) -> int:
    """Run the whole graph (or only `assets`) for `symbols`, then print what is stored."""
    latest = settings.latest_session()
    request.check(latest)  # a bad window is refused before anything runs
    if request.start is None and settings.start_date > latest:
        raise SettingsError(
            f"MARKETPULSE_START_DATE={settings.start_date} is after {latest}, the latest"
            " completed session: a symbol without prices would load nothing"
        )
    from marketpulse_pipeline.definitions import build_definitions
    from marketpulse_pipeline.instance import dagster_instance
    from marketpulse_pipeline.runner import log_path, run_pipeline
    from marketpulse_pipeline.storage.database import resolve_url

    began = time.perf_counter()
    url = resolve_url(settings.database_url, settings.home)
    print(f"database: {_redacted(url)}; source: {settings.source}")
    log_dir = settings.home / "logs"
    with dagster_instance() as instance:
        outcomes = run_pipeline(
            build_definitions(settings),
            instance,
            symbols,
            start=request.start,
            end=request.end,
            verbose=args.verbose,
            log_dir=log_dir,
            assets=assets,
        )
    start, end = request.start or settings.start_date, request.end or settings.latest_session()
    if assets is None:
        _print_summary(url, symbols, start, end)
    print(f"took {time.perf_counter() - began:.1f}s")
    failed = [outcome for outcome in outcomes if not outcome.success or outcome.failures]
    if failed:
        lines = [line for outcome in failed for line in outcome.failures]
        logs = [log_path(log_dir, o.run_id) for o in failed if log_path(log_dir, o.run_id).exists()]
        print("\nfailed:\n  " + "\n  ".join(lines), file=sys.stderr)
        if logs:
            print(
                f"full errors: {', '.join(map(str, logs))} (or run with --verbose)", file=sys.stderr
            )
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


def _db_remove_future(args: argparse.Namespace, settings: Settings) -> int:
    from marketpulse_pipeline.storage.database import connect, resolve_url
    from marketpulse_pipeline.storage.repair import remove_future

    latest = settings.latest_session()
    with connect(resolve_url(settings.database_url, settings.home)) as conn:
        removed = remove_future(conn, latest)
    if not removed:
        print(f"no row is dated after {latest}, the latest completed session")
        return 0
    counts = ", ".join(f"{table} {rows}" for table, rows in removed.items())
    print(f"removed rows dated after {latest}: {counts} (prices kept in rejected_prices)")
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
