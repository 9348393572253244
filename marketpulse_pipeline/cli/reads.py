"""Commands that read results (alerts, anomalies, stats, latest, history, health) and record
feedback.

Each answers from the same SQL view or function a `psql` user would query; tables for people,
`--json` for scripts.
"""

import argparse
import datetime as dt
import getpass
import json
import math
import sys
from collections.abc import Callable

import pandas as pd
import psycopg

from marketpulse_pipeline.detectors import ANOMALY_TYPES, METHODS
from marketpulse_pipeline.settings import Settings, SettingsError, parse_symbols, whole_number
from marketpulse_pipeline.storage import queries
from marketpulse_pipeline.storage.database import (
    connect,
    connect_readonly,
    embedded_url_if_running,
    resolve_url,
)
from marketpulse_pipeline.storage.deliveries import undelivered

ANOMALY_COLUMNS = ["id", "symbol", "timestamp", "method", "anomaly_type", "score", "label"]
MAX_DAYS = 36500  # a century: anything longer is a typo
MAX_LIMIT = 100_000  # more rows than a terminal or a script reading JSON should be handed


def add_commands(commands: argparse._SubParsersAction) -> None:
    anomalies = _command(commands, "anomalies", "recent anomalies, newest first", _anomalies)
    anomalies.add_argument("--symbol", type=_symbol)
    anomalies.add_argument("--method", choices=METHODS)
    anomalies.add_argument("--type", dest="anomaly_type", choices=ANOMALY_TYPES)
    anomalies.add_argument(
        "--days", type=_days, default=7, help=f"market days back, 1 to {MAX_DAYS} (default 7)"
    )
    anomalies.add_argument(
        "--limit", type=_limit, default=50, help=f"rows at most, 1 to {MAX_LIMIT} (default 50)"
    )

    alerts = _command(
        commands, "alerts", "recent alerts (the rare sessions), newest first", _alerts
    )
    alerts.add_argument("--symbol", type=_symbol, help="one ticker symbol (default: all)")
    alerts.add_argument(
        "--days", type=_days, default=30, help=f"days back, 1 to {MAX_DAYS} (default 30)"
    )
    alerts.add_argument(
        "--limit", type=_limit, default=50, help=f"rows at most, 1 to {MAX_LIMIT} (default 50)"
    )
    alerts.add_argument(
        "--undelivered",
        action="store_true",
        help="instead, the notifications that did not go out: pending, failed, given up",
    )

    stats = _command(commands, "stats", "anomaly counts: total, per method, symbol, type", _stats)
    stats.add_argument(
        "--days", type=_days, default=30, help=f"days back, 1 to {MAX_DAYS} (default 30)"
    )

    latest = _command(commands, "latest", "a symbol's latest bar", _latest)
    latest.add_argument("symbol", type=_symbol)

    history = _command(commands, "history", "a symbol's bars over the last N days", _history)
    history.add_argument("symbol", type=_symbol)
    history.add_argument(
        "--days", type=_days, default=30, help=f"days back, 1 to {MAX_DAYS} (default 30)"
    )

    _command(commands, "health", "schema version, freshness; exit 1 when stale", _health)

    label = _command(
        commands, "label", "mark an anomaly or alert false_positive or confirmed", _label
    )
    label.add_argument(
        "anomaly_id", type=_anomaly_id, metavar="ID", help="an anomaly's or an alert's id"
    )
    label.add_argument("--as", dest="label", required=True, choices=queries.LABELS)
    label.add_argument("--note")


def _command(
    commands: argparse._SubParsersAction,
    name: str,
    help_text: str,
    handler: Callable[[argparse.Namespace, Settings], int],
) -> argparse.ArgumentParser:
    parser = commands.add_parser(name, help=help_text)
    parser.add_argument("--json", action="store_true", help="print JSON records for scripts")
    parser.set_defaults(handler=handler)
    return parser


def _symbol(text: str) -> str:
    """One ticker symbol: a list would silently read only its first symbol."""
    try:
        symbols = parse_symbols(text, "symbol")
    except SettingsError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if len(symbols) != 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not one ticker symbol")
    return symbols[0]


def whole_argument(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a whole number from `low` to `high`."""

    def parse(text: str) -> int:
        try:
            return whole_number(text, low, high)
        except SettingsError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return parse


_days = whole_argument(1, MAX_DAYS)
_limit = whole_argument(1, MAX_LIMIT)
_anomaly_id = whole_argument(-(2**63), 2**63 - 1)  # a signed 64-bit hash (a PostgreSQL bigint)


def _connect(settings: Settings) -> psycopg.Connection:
    """Reads need only SELECT: they never migrate or write."""
    return connect_readonly(resolve_url(settings.database_url, settings.home))


def _anomalies(args: argparse.Namespace, settings: Settings) -> int:
    with _connect(settings) as conn:
        found = queries.recent_anomalies(
            conn,
            symbol=args.symbol,
            method=args.method,
            anomaly_type=args.anomaly_type,
            days=args.days,
            limit=args.limit,
            today=settings.today(),
        )
    _show(found, args.json, ANOMALY_COLUMNS)
    return 0


def _alerts(args: argparse.Namespace, settings: Settings) -> int:
    if args.undelivered:
        with _connect(settings) as conn:
            if args.symbol:
                queries.require_symbol(conn, args.symbol)
            _show(undelivered(conn, args.symbol), args.json)
        return 0
    with _connect(settings) as conn:
        found = queries.recent_alerts(
            conn, symbol=args.symbol, days=args.days, limit=args.limit, today=settings.today()
        )
    if args.json:
        _show(found, True)
        return 0
    _show(_alert_lines(found), False)
    return 0


def _alert_lines(found: pd.DataFrame) -> pd.DataFrame:
    """One line per alert with its id (what `label` takes) and label, and one per market-wide
    session however many symbols it moved (their ids are in `--json`)."""
    if found.empty:
        return found
    lines = found.assign(
        id=found["id"].astype(str),
        p_value=found["p_value"].map("{:.2g}".format),
        methods=found["methods"].map(", ".join),
        return_pct=found["return_pct"].round(2),
        label=found["label"].fillna(""),
    )
    wide = lines[lines["market_wide"]]
    market = wide.groupby("timestamp", sort=False).agg(
        symbol=("symbol", _market_symbols),
        p_value=("p_value", "first"),  # the strongest: rows come smallest p first
        methods=("methods", "first"),
        return_pct=("return_pct", lambda r: round(r.median(), 2)),
    )
    market = market.reset_index().assign(id="", label="")
    rows = pd.concat([lines[~lines["market_wide"]], market], ignore_index=True)
    rows = rows.sort_values("timestamp", ascending=False, kind="stable")
    return rows[["timestamp", "symbol", "id", "p_value", "return_pct", "methods", "label"]]


def _market_symbols(symbols: pd.Series) -> str:
    if len(symbols) == 1:
        return f"{symbols.iloc[0]} (market-wide day)"
    return f"market-wide: {', '.join(symbols)} (median return)"


def _stats(args: argparse.Namespace, settings: Settings) -> int:
    with _connect(settings) as conn:
        _show(queries.anomaly_stats(conn, args.days, settings.today()), args.json)
    return 0


def _latest(args: argparse.Namespace, settings: Settings) -> int:
    with _connect(settings) as conn:
        _show(queries.latest_price(conn, args.symbol), args.json)
    return 0


def _history(args: argparse.Namespace, settings: Settings) -> int:
    with _connect(settings) as conn:
        _show(queries.price_history(conn, args.symbol, args.days, settings.today()), args.json)
    return 0


def _health(args: argparse.Namespace, settings: Settings) -> int:
    """A probe: never starts the embedded server, never writes; exit 1 when anything is wrong."""
    url = settings.database_url or embedded_url_if_running(settings.home)
    if url is None:
        print("marketpulse: embedded PostgreSQL is not running", file=sys.stderr)
        return 1
    with connect_readonly(url) as conn:
        health = queries.pipeline_health(conn, list(settings.symbols), settings.now)
    _show(health, args.json)
    problems = queries.health_problems(health)
    for line in problems:
        print(line, file=sys.stderr)
    return 1 if problems else 0


def _label(args: argparse.Namespace, settings: Settings) -> int:
    with connect(resolve_url(settings.database_url, settings.home)) as conn:  # it writes
        recorded = queries.label_anomaly(
            conn, args.anomaly_id, args.label, args.note, getpass.getuser(), at=settings.now
        )
    _show(recorded, args.json)
    return 0


def _show(frame: pd.DataFrame, as_json: bool, columns: list[str] | None = None) -> None:
    if as_json:
        print(json.dumps([_plain(row) for row in frame.to_dict("records")], indent=2))
    elif frame.empty:
        print("(no rows)")
    else:
        shown = frame[columns or list(frame.columns)]
        print(shown.astype("object").where(shown.notna(), "").to_string(index=False))


def _plain(row: dict) -> dict:
    """A record JSON can hold: dates as ISO text, NaN as null."""
    out = {}
    for key, value in row.items():
        if value is pd.NaT:
            value = None
        elif isinstance(value, dt.date | dt.datetime | pd.Timestamp):
            value = value.isoformat()
        elif isinstance(value, float) and math.isnan(value):
            value = None
        out[key] = value
    return out
