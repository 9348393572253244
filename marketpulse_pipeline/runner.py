"""Run the pipeline in-process, as the CLI does: as few Dagster runs as the partitions allow.

A run covers a contiguous range of symbol partitions, so the whole watchlist is one run and any
subset is one run per contiguous stretch of it (then the earlier stretches' computed assets once
more: a later stretch's prices may change what their market-wide rows read).
"""

import datetime as dt
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
from dagster._core.definitions.job_base import InMemoryJob
from dagster._core.execution.api import execute_run
from dagster._core.remote_origin import (
    RegisteredCodeLocationOrigin,
    RemoteJobOrigin,
    RemoteRepositoryOrigin,
)

from marketpulse_pipeline.automation import AFTER_RUN_JOB, CODE_LOCATION, DAILY_JOB
from marketpulse_pipeline.instance import ephemeral_run_settings

ProgressFn = Callable[[str], None]
PRICES = dg.AssetKey("stock_prices")
_SKIPPED = "Dependencies for step"  # Dagster's note on each step after a failure: noise here


def _console(verbose: bool) -> dict:
    """Dagster's own console log: its tracebacks only when asked for (`--verbose`)."""
    level = "DEBUG" if verbose else "CRITICAL"
    return {"loggers": {"console": {"config": {"log_level": level}}}}


@dataclass
class RunOutcome:
    run_id: str
    symbols: list[str]
    success: bool
    failures: list[str] = field(default_factory=list)
    """One line per failed step or check: what failed, for which symbols, and the root cause."""


def contiguous_ranges(ordered: Sequence[str], wanted: Sequence[str]) -> list[list[str]]:
    """`wanted` split into runs of consecutive partition keys of `ordered`."""
    unknown = sorted(set(wanted) - set(ordered))
    if unknown:
        raise ValueError(f"not in the watchlist: {', '.join(unknown)} (set MARKETPULSE_SYMBOLS)")
    chosen = set(wanted)
    ranges: list[list[str]] = []
    previous_taken = False
    for key in ordered:
        taken = key in chosen
        if taken and not previous_taken:
            ranges.append([])
        if taken:
            ranges[-1].append(key)
        previous_taken = taken
    return ranges


def run_pipeline(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    symbols: Sequence[str],
    *,
    start: dt.date | None = None,
    end: dt.date | None = None,
    as_of: dt.date | None = None,
    progress: ProgressFn = print,
    verbose: bool = False,
    log_dir: Path | None = None,
    assets: Sequence[str] | None = None,
) -> list[RunOutcome]:
    """Materialize every asset (or only `assets`) for `symbols` over the window, showing
    progress as steps finish.

    A failed step's full error (with its traceback) goes to `log_dir/<run id>.log` when given.
    """
    job = defs.resolve_job_def(DAILY_JOB)
    ordered = job.partitions_def.get_partition_keys()
    window = {
        name: day.isoformat()
        for name, day in (("start", start), ("end", end), ("as_of", as_of))
        if day is not None
    }
    run_config = {"resources": {"window": {"config": window}}, **_console(verbose)}
    ranges = contiguous_ranges(ordered, symbols)

    def launch(chunk: list[str], selection: Sequence[dg.AssetKey] | None) -> RunOutcome:
        reporter = _Reporter(progress, log_dir)
        tags = _range_tags(chunk)
        return _launch(job, instance, reporter, chunk, run_config, tags, selection)

    outcomes = [
        launch(chunk, [dg.AssetKey(a) for a in assets] if assets else None) for chunk in ranges
    ]
    if not assets and len(ranges) > 1:
        # A later range's new prices (a benchmark's, the market's share) made the earlier
        # ranges' market-wide rows stale (MARKET_TARGETS): bring them up to date, no fetching.
        fetched = defs.resolve_assets_def(PRICES).keys
        computed = [key for key in job.asset_layer.selected_asset_keys if key not in fetched]
        outcomes += [launch(chunk, computed) for chunk in ranges[:-1]]
    if assets:
        return outcomes
    # Then score the detectors and send the new alerts, over every symbol (the daemon's
    # automation sensor does this too).
    outcomes.append(
        _launch(
            defs.resolve_job_def(AFTER_RUN_JOB),
            instance,
            _Reporter(progress, log_dir),
            [],
            _console(verbose),
            LOCATION_TAGS,
        )
    )
    return outcomes


def _launch(
    job: dg.JobDefinition,
    instance: dg.DagsterInstance,
    reporter: "_Reporter",
    symbols: list[str],
    run_config: dict,
    tags: dict[str, str],
    asset_selection: list[dg.AssetKey] | None = None,
) -> RunOutcome:
    """One in-process run, reporting its steps as they finish."""
    run_id = str(uuid.uuid4())
    outcome = RunOutcome(run_id=run_id, symbols=symbols, success=False)
    reporter.outcome = outcome
    instance.add_event_listener(run_id, reporter)
    what = f"{symbols[0]}..{symbols[-1]} ({len(symbols)} symbols)" if symbols else job.name
    reporter.progress(f"run {run_id[:8]}: {what}")
    with ephemeral_run_settings(instance):
        result = execute_run(
            InMemoryJob(job),
            instance.create_run_for_job(
                job_def=job,
                run_id=run_id,
                run_config=run_config,
                tags={**job.run_tags, **tags},
                asset_selection=frozenset(asset_selection) if asset_selection else None,
                remote_job_origin=_origin(job.name),
            ),
            instance,
        )
    outcome.success = result.success
    if not result.success and not outcome.failures:
        outcome.failures.append(f"run {run_id[:8]} failed before its steps started")
    return outcome


class _Reporter:
    """Turns a run's events into progress lines and one-line failures; full errors go to a log."""

    def __init__(self, progress: ProgressFn, log_dir: Path | None) -> None:
        self.progress = progress
        self.log_dir = log_dir
        self.outcome: RunOutcome | None = None

    def __call__(self, entry: dg.EventLogEntry) -> None:
        event = entry.dagster_event
        if self.outcome is None:
            return
        if event is None:  # a log message: the pipeline's warnings are for the user
            if entry.level >= logging.WARNING and not entry.user_message.startswith(_SKIPPED):
                self.progress(f"  ! {entry.user_message}")
            return
        where = _symbols(self.outcome.symbols)
        if event.event_type == dg.DagsterEventType.STEP_SUCCESS:
            self.progress(f"  ✓ {event.step_key}")
        elif event.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY:
            self.progress(f"  ↻ {event.step_key}: retrying after a transient database error")
        elif event.event_type == dg.DagsterEventType.STEP_FAILURE:
            error = event.step_failure_data.error
            root = error
            while root is not None and root.cause is not None:  # the user's error, not wrappers
                root = root.cause
            message = " ".join(root.message.split()) if root else "failed"
            line = f"{event.step_key}{where}: {message}"
            self.outcome.failures.append(line)
            self.progress(f"  ✗ {line}")
            self._log(entry, error.to_string() if error else message)
        elif event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            check = event.asset_check_evaluation_data
            if not check.passed:
                line = f"check {check.check_name} on {check.asset_key.to_user_string()}{where}"
                summary = check.metadata.get("summary")
                if summary is not None:
                    line += f": {summary.value}"
                if check.severity == dg.AssetCheckSeverity.WARN:  # reported, not a failure
                    self.progress(f"  ! {line} (warning)")
                    return
                self.outcome.failures.append(line)
                self.progress(f"  ! {line}")

    def _log(self, entry: dg.EventLogEntry, text: str) -> None:
        if self.log_dir is None or self.outcome is None:
            return
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with log_path(self.log_dir, self.outcome.run_id).open("a", encoding="utf-8") as log:
            log.write(f"--- {entry.step_key} at {dt.datetime.fromtimestamp(entry.timestamp)}\n")
            log.write(text + "\n")


def log_path(log_dir: Path, run_id: str) -> Path:
    """Where a failed run's full errors are."""
    return log_dir / f"{run_id}.log"


def _origin(job_name: str) -> RemoteJobOrigin:
    """The job as the UI knows it (code location `marketpulse`): the Overview timeline places
    only runs that carry it, as the runs the UI launches do."""
    location = RegisteredCodeLocationOrigin(CODE_LOCATION)
    return RemoteJobOrigin(RemoteRepositoryOrigin(location, "__repository__"), job_name)


LOCATION_TAGS = {".dagster/repository": f"__repository__@{CODE_LOCATION}"}
"""The label the UI filters a job's runs by (Dagster sets it on the runs it launches)."""


def _range_tags(symbols: list[str]) -> dict[str, str]:
    return {
        **LOCATION_TAGS,
        "dagster/asset_partition_range_start": symbols[0],
        "dagster/asset_partition_range_end": symbols[-1],
    }


def _symbols(symbols: list[str]) -> str:
    if not symbols:
        return ""
    return f" [{symbols[0]}]" if len(symbols) == 1 else f" [{symbols[0]}..{symbols[-1]}]"
