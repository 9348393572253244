"""Run the pipeline in-process, as the CLI does: as few Dagster runs as the partitions allow.

A run covers a contiguous range of symbol partitions, so the whole watchlist is one run and any
subset is one run per contiguous stretch of it.
"""

import datetime as dt
import os
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from marketpulse_pipeline.automation import DAILY_JOB, QUALITY_JOB

ProgressFn = Callable[[str], None]
_QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@dataclass
class RunOutcome:
    run_id: str
    symbols: list[str]
    success: bool
    failures: list[str] = field(default_factory=list)


def dagster_instance() -> dg.DagsterInstance:
    """The instance of `$DAGSTER_HOME` when it is set, so the runs show in `dagster dev` started
    with the same home; otherwise an ephemeral one. A persistent instance records an event per
    asset partition, which costs the demo about four seconds; the tables are the same either way.
    """
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        return dg.DagsterInstance.ephemeral()
    directory = Path(home).expanduser()
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "dagster.yaml"
    if not config.exists():
        config.write_text("telemetry:\n  enabled: false\n")
    return dg.DagsterInstance.from_config(str(directory))


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
) -> list[RunOutcome]:
    """Materialize every asset for `symbols` over the window, showing progress as steps finish."""
    job = defs.resolve_job_def(DAILY_JOB)
    ordered = job.partitions_def.get_partition_keys()
    window = {
        name: day.isoformat()
        for name, day in (("start", start), ("end", end), ("as_of", as_of))
        if day is not None
    }
    run_config = {"resources": {"window": {"config": window}}, **_QUIET}
    outcomes = [
        _launch(
            job,
            instance,
            progress,
            chunk,
            run_config,
            {
                "dagster/asset_partition_range_start": chunk[0],
                "dagster/asset_partition_range_end": chunk[-1],
            },
        )
        for chunk in contiguous_ranges(ordered, symbols)
    ]
    # Then score the detectors once, over every symbol (the daemon's sensor does this too).
    outcomes.append(_launch(defs.resolve_job_def(QUALITY_JOB), instance, progress, [], _QUIET, {}))
    return outcomes


def _launch(
    job: dg.JobDefinition,
    instance: dg.DagsterInstance,
    progress: ProgressFn,
    symbols: list[str],
    run_config: dict,
    tags: dict[str, str],
) -> RunOutcome:
    """One in-process run, reporting its steps as they finish."""
    run_id = str(uuid.uuid4())
    outcome = RunOutcome(run_id=run_id, symbols=symbols, success=False)
    instance.add_event_listener(run_id, _reporter(outcome, progress))
    what = f"{symbols[0]}..{symbols[-1]} ({len(symbols)} symbols)" if symbols else job.name
    progress(f"run {run_id[:8]}: {what}")
    result = job.execute_in_process(
        run_config=run_config, instance=instance, run_id=run_id, raise_on_error=False, tags=tags
    )
    outcome.success = result.success
    return outcome


def _reporter(outcome: RunOutcome, progress: ProgressFn) -> Callable[[dg.EventLogEntry], None]:
    def report(entry: dg.EventLogEntry) -> None:
        event = entry.dagster_event
        if event is None:
            return
        if event.event_type == dg.DagsterEventType.STEP_SUCCESS:
            progress(f"  ✓ {event.step_key}")
        elif event.event_type == dg.DagsterEventType.STEP_FAILURE:
            error = event.step_failure_data.error
            while (
                error is not None and error.cause is not None
            ):  # the user's error, not the wrapper
                error = error.cause
            message = error.message.strip() if error else "failed"
            outcome.failures.append(f"{event.step_key}: {message}")
            progress(f"  ✗ {event.step_key}: {message}")
        elif event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            check = event.asset_check_evaluation_data
            if not check.passed:
                progress(
                    f"  ! check {check.check_name} on {check.asset_key.to_user_string()} failed"
                )

    return report
