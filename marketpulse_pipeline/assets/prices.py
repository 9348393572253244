"""Raw daily prices: the source's bars through the quality gate into `stock_prices`, and the
synthetic source's ground truth into `injected_anomalies`."""

import datetime as dt
from collections.abc import Iterator, Mapping

import dagster as dg
import pandas as pd
import psycopg

from marketpulse_pipeline.assets.metadata import (
    KINDS,
    OWNERS,
    Stopwatch,
    per_symbol,
    report_partitions,
    run_wide,
    sample,
    table_metadata,
)
from marketpulse_pipeline.calendar import EARLIEST_SESSION, SessionWindow, missing_sessions
from marketpulse_pipeline.prices.quality_gate import GateResult, gate_bars
from marketpulse_pipeline.resources import (
    ClockResource,
    PostgresResource,
    PriceSourceResource,
    WindowResource,
)
from marketpulse_pipeline.schemas import CorporateActions, InjectedAnomalies
from marketpulse_pipeline.session_plan import (
    PlanError,
    ahead_of_clock,
    mixed_sources,
    price_plans,
)
from marketpulse_pipeline.sources.base import (
    fetch_bars,
    fetch_corporate_actions,
    fetch_injected,
)
from marketpulse_pipeline.storage.tables import (
    CORPORATE_ACTIONS,
    INJECTED_ANOMALIES,
    REJECTED_PRICES,
    STOCK_PRICES,
    log_restatements,
    read_window,
    replace_prices,
    replace_window,
    restated_bars,
    row_counts,
    span_counts,
    stored_holes,
    stored_sources,
    stored_spans,
)

RESTATEMENT_OVERLAP = 5
"""Stored sessions every catch-up reads again: how a vendor's restated history is noticed."""
GAP_CHECK = "every_session_has_a_bar"
LOADED_CHECK = "every_symbol_loaded"
REJECTED_CHECK = "no_rejected_rows"
CLOCK_MOVED_BACK = (
    "stored prices run past the latest completed session (was the clock moved back?): not"
    " loaded, since bars after the clock cannot be re-read to notice a split; `marketpulse db"
    " remove-future` removes those rows"
)
"""The `every_symbol_loaded` line for symbols whose stored prices run past the clock."""


def build_price_assets(partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    """`stock_prices` and `injected_anomalies`, written together from one read of the source."""

    @dg.multi_asset(
        specs=[
            dg.AssetSpec(
                "stock_prices",
                description=(
                    "Daily OHLCV bars per symbol and NYSE session that passed the quality gate."
                    " Refused bars go to `rejected_prices` with the reason."
                ),
                group_name="prices",
                kinds=KINDS,
                owners=OWNERS,
                metadata=table_metadata(STOCK_PRICES),
            ),
            dg.AssetSpec(
                "injected_anomalies",
                description=(
                    "Ground truth: the anomalies the synthetic source planted (none for real data)."
                ),
                group_name="prices",
                kinds=KINDS,
                owners=OWNERS,
                metadata=table_metadata(INJECTED_ANOMALIES),
            ),
        ],
        check_specs=[
            dg.AssetCheckSpec(
                GAP_CHECK,
                asset="stock_prices",
                description=(
                    "Every session from the symbol's first stored day through the window has a"
                    " valid bar (up to MARKETPULSE_MAX_MISSING_SESSIONS per symbol). Beyond that,"
                    " the symbol's computed assets stop before its first missing session — a gap"
                    " would corrupt every rolling window — while the other symbols go on."
                ),
            ),
            dg.AssetCheckSpec(
                LOADED_CHECK,
                asset="stock_prices",
                description=(
                    "Every symbol's window was loaded. A symbol that was not — the source failed"
                    " for it (a vendor error, a missing file), or its stored prices run past the"
                    " latest completed session (the clock was moved back) — keeps its stored"
                    " rows and is caught up by the next run; the other symbols go on."
                ),
            ),
            dg.AssetCheckSpec(
                REJECTED_CHECK,
                asset="stock_prices",
                description="The source delivered no bar that the quality gate refused.",
            ),
        ],
        **per_symbol(partitions),
        name="stock_prices",  # the step is named after the table it fills
    )
    def prices(
        context: dg.AssetExecutionContext,
        database: PostgresResource,
        price_source: PriceSourceResource,
        window: WindowResource,
        clock: ClockResource,
    ) -> Iterator[dg.MaterializeResult]:
        symbols = context.partition_keys
        latest = clock.latest()
        source = price_source.build(as_of=latest)
        timer = Stopwatch()
        with database.outcome(context, "stock_prices") as problems, database.connect() as conn:
            database.hold_symbols(context)
            spans = stored_spans(conn, STOCK_PRICES, symbols)
            refused = {  # bars from after the clock cannot be re-read to notice a split
                symbol: f"{symbol}: stored prices run to {end}, after {latest}: was the clock"
                " moved back? (`marketpulse db remove-future`)"
                for symbol, end in ahead_of_clock(spans, latest).items()
            }
            symbols = [s for s in symbols if s not in refused]
            request = window.request()
            plans = price_plans(
                symbols,
                spans,
                request,
                first_day=price_source.first_session(),
                latest=latest,
                holes={s: h.first for s, h in stored_holes(conn, symbols).items()},
                overlap=RESTATEMENT_OVERLAP,
            )
            mixed = mixed_sources(stored_sources(conn, symbols), plans, source.name)
            if mixed:
                raise PlanError(
                    f"stored prices of {', '.join(mixed)} come from another source than"
                    f" {source.name!r}, and this window would not replace them all: one"
                    " symbol's history never mixes sources (use another database, or load"
                    " the whole stored range from one source)"
                )
            for symbol, plan in plans.items():
                if plan.gap_filled:
                    context.log.warning(
                        f"{symbol}: also loading {plan.gap_filled} so that the stored history"
                        " has no hole"
                    )
            planned = {symbol: plan.window for symbol, plan in plans.items()}
            with timer.stage("source"):
                raw, failed = fetch_bars(source, planned)
                failed |= refused
                # A symbol the source failed for keeps its rows; the others go on.
                windows = {s: w for s, w in planned.items() if s not in failed}
            with timer.stage("validation"):
                gate = gate_bars(raw, windows, source.name)
                stored = read_window(conn, STOCK_PRICES, windows)
                restated = restated_bars(stored, gate.stored)
            if not restated.empty:  # the vendor rewrote history: read all of it again
                whole = {s: _union(spans[s], windows[s]) for s in restated["symbol"]}
                with timer.stage("source"):
                    again, failed_again = fetch_bars(source, whole)
                failed |= failed_again
                raw = pd.concat([raw[~raw["symbol"].isin(list(whole))], again], ignore_index=True)
                windows = {s: whole.get(s, w) for s, w in windows.items() if s not in failed}
                restated = restated[~restated["symbol"].isin(list(failed))]
                with timer.stage("validation"):
                    gate = gate_bars(raw, windows, source.name)
                stored = None  # the windows grew: the write reads them again
            with timer.stage("source"):
                injected = fetch_injected(source, windows)
                actions = fetch_corporate_actions(source, windows).assign(source=source.name)
            with timer.stage("validation"):
                injected = InjectedAnomalies.validate(injected)
                actions = CorporateActions.validate(actions[list(CORPORATE_ACTIONS.column_names)])
            for symbol, reason in failed.items():
                problems.add(reason, [symbol])
            for row in restated.itertuples(index=False):
                context.log.warning(
                    f"{row.symbol}: {source.name} restated its history from"
                    f" {row.first_changed:%Y-%m-%d} (stored / new close {row.factor:.6g}):"
                    f" reloading it from {windows[row.symbol].start}"
                )
            with timer.stage("write"), conn.transaction():
                changed = replace_prices(conn, gate.stored, windows, stored)
                logged = _restatements(restated, changed, gate.stored)
                log_restatements(conn, logged, source.name, context.run.run_id)
                rejected = gate.rejected.assign(run_id=context.run.run_id)
                replace_window(conn, REJECTED_PRICES, rejected, windows)
                replace_window(conn, INJECTED_ANOMALIES, injected, windows)
                replace_window(conn, CORPORATE_ACTIONS, actions, windows)
            with timer.stage("gap_check"):
                gaps = _stored_gaps(conn, windows)
            gap_check = _gap_check(gaps, price_source.max_missing_sessions)
            over = _over_tolerance(gaps, price_source.max_missing_sessions)
            for symbol, missing in over.groupby("symbol"):
                problems.add(f"{GAP_CHECK}: {_describe_gaps(missing)}", [symbol])
            stored = row_counts(conn, STOCK_PRICES, windows)
            planted = row_counts(conn, INJECTED_ANOMALIES, windows)

        report_partitions(
            context,
            windows,
            {
                "rows_stored": gate.stored,
                "rows_rejected": gate.rejected,
                "sessions_missing": gaps,
                "splits": actions[actions["kind"] == "split"],
                "dividends": actions[actions["kind"] == "dividend"],
            },
            asset_key="stock_prices",
            stored=stored,
            extra={
                row.symbol: {
                    "restated_from": row.first_changed.isoformat(),
                    "restatement_factor": float(row.factor),
                }
                for row in logged.itertuples(index=False)
            },
        )
        report_partitions(
            context,
            windows,
            {"anomalies_injected": injected},
            asset_key="injected_anomalies",
            stored=planted,
        )
        context.log.info(
            f"{source.name}: {len(gate.stored) + len(gate.rejected)} bars in,"
            f" {len(gate.stored)} stored, {len(gate.rejected)} rejected,"
            f" {len(gaps)} sessions missing; prices changed for {len(changed)} symbols"
        )
        yield dg.MaterializeResult(
            asset_key="stock_prices",
            metadata={
                "source": source.name,
                **run_wide(
                    {
                        "rows_in": len(gate.stored) + len(gate.rejected),
                        "rows_stored": len(gate.stored),
                        "rows_rejected": len(gate.rejected),
                        "symbols_changed": len(changed),
                        "first_change": min(changed.values()).isoformat() if changed else "none",
                        "restatements": dg.MetadataValue.md(_restatements_table(logged)),
                    }
                ),
                **timer.metadata(),
            },
            check_results=[gap_check, _loaded_check(failed, refused), _rejected_check(gate)],
        )
        yield dg.MaterializeResult(
            asset_key="injected_anomalies", metadata={"anomalies_injected": len(injected)}
        )

    return prices


def _restatements_table(logged: pd.DataFrame) -> str:
    """This run's restated histories as a Markdown table (run-wide: one row per symbol)."""
    if logged.empty:
        return "none"
    lines = ["| symbol | first changed | stored / new close | bars replaced |", "|---|---|---|---|"]
    lines += [
        f"| {r.symbol} | {r.first_changed} | {r.factor:.6g} | {r.rows_replaced} |"
        for r in logged.itertuples(index=False)
    ]
    return "\n".join(lines)


def _union(stored: SessionWindow, window: SessionWindow) -> SessionWindow:
    """The stored history and the run's window together: what a restated symbol reloads."""
    return SessionWindow(min(stored.start, window.start), max(stored.end, window.end))


def _stored_gaps(conn: psycopg.Connection, windows: Mapping[str, SessionWindow]) -> pd.DataFrame:
    """Sessions without a bar, from each symbol's first stored day through its window: a hole
    left by an earlier run keeps failing the check until it is repaired. Counting first keeps
    the daily run's cost flat as history grows; only a symbol with a hole has its days read."""
    history = {s: SessionWindow(EARLIEST_SESSION, w.end) for s, w in windows.items()}
    counted = span_counts(conn, STOCK_PRICES, history)
    spans = {}
    for symbol, window in windows.items():
        first, rows = counted.get(symbol, (window.start, 0))
        span = SessionWindow(first if window.is_empty else min(first, window.start), window.end)
        if rows < len(span.sessions()):
            spans[symbol] = span
    stored = read_window(conn, STOCK_PRICES, spans, columns=["symbol", "timestamp"])
    return missing_sessions(stored, spans)


def _restatements(
    restated: pd.DataFrame, changed: Mapping[str, dt.date], stored: pd.DataFrame
) -> pd.DataFrame:
    """Each restated symbol whose prices changed: from its first changed session (which a whole
    re-read finds earlier than the overlap did), the factor, and the bars written from there."""
    first = pd.to_datetime(stored["symbol"].map({s: pd.Timestamp(d) for s, d in changed.items()}))
    rows = stored[stored["timestamp"] >= first]["symbol"].value_counts()
    logged = restated[restated["symbol"].isin(list(changed))]
    return logged.assign(
        first_changed=logged["symbol"].map(changed),
        rows_replaced=logged["symbol"].map(rows).fillna(0).astype(int),
    )


def _describe_gaps(gaps: pd.DataFrame) -> str:
    """The missing sessions in a line: how many per symbol, and the first few."""
    parts = []
    for symbol, days in gaps.groupby("symbol")["timestamp"]:
        shown = ", ".join(f"{d:%Y-%m-%d}" for d in days.head(3))
        more = f" and {len(days) - 3} more" if len(days) > 3 else ""
        parts.append(f"{symbol} has no bar for {shown}{more}")
    return "; ".join(parts)


def _over_tolerance(gaps: pd.DataFrame, tolerance: int) -> pd.DataFrame:
    """The gaps of the symbols missing more than `tolerance` sessions."""
    return gaps[gaps.groupby("symbol")["timestamp"].transform("size") > tolerance]


def _gap_check(gaps: pd.DataFrame, tolerance: int) -> dg.AssetCheckResult:
    offenders = _over_tolerance(gaps, tolerance)["symbol"].unique()
    return dg.AssetCheckResult(
        check_name=GAP_CHECK,
        passed=len(offenders) == 0,
        metadata={
            "summary": _describe_gaps(gaps) or "none",
            "sessions_missing": len(gaps),
            "symbols_over_tolerance": ", ".join(offenders) or "none",
            "tolerance_per_symbol": tolerance,
            "sample": sample(gaps.assign(timestamp=gaps["timestamp"].dt.date)),
        },
    )


def _loaded_check(failed: Mapping[str, str], refused: Mapping[str, str]) -> dg.AssetCheckResult:
    """Every symbol loaded; the ones refused for a clock moved back are named on one line."""
    reasons = [reason for symbol, reason in failed.items() if symbol not in refused]
    if refused:
        reasons.append(f"{', '.join(refused)}: {CLOCK_MOVED_BACK}")
    return dg.AssetCheckResult(
        check_name=LOADED_CHECK,
        passed=not failed,
        metadata={
            "summary": "; ".join(reasons) or "none",
            "symbols_failed": ", ".join(failed) or "none",
        },
    )


def _describe_rejected(rejected: pd.DataFrame) -> str:
    """How many bars were refused, and the first one's place and reason."""
    if rejected.empty:
        return "none"
    first = rejected.iloc[0]
    return f"{len(rejected)} bars refused, the first at {first['source_ref']}: {first['reason']}"


def _rejected_check(gate: GateResult) -> dg.AssetCheckResult:
    rejected = gate.rejected
    return dg.AssetCheckResult(
        check_name=REJECTED_CHECK,
        passed=rejected.empty,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "summary": _describe_rejected(rejected),
            "rows_rejected": len(rejected),
            "sample": sample(
                rejected.assign(timestamp=pd.to_datetime(rejected["timestamp"]).dt.date)[
                    ["symbol", "timestamp", "source_ref", "reason"]
                ]
            ),
        },
    )
