"""The Dagster instance the CLI's runs go to, and what makes an ephemeral one cheap.

A run records one materialization per asset and symbol: 13,000 events for a thousand symbols'
evening. On Dagster's ephemeral instance each event is a transaction of its own on an in-memory
SQLite database (four connections, two PRAGMAs each); here a step's materializations are written
in one transaction instead, and planned once per asset — the instance is read by no one after
the run, so nothing is given up.
"""

import logging
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
from dagster._core.instance import InstanceType
from dagster._core.launcher.sync_in_memory_run_launcher import SyncInMemoryRunLauncher
from dagster._core.run_coordinator import DefaultRunCoordinator
from dagster._core.storage.event_log import InMemoryEventLogStorage, SqlEventLogStorage
from dagster._core.storage.event_log.base import EventLogCursor
from dagster._core.storage.noop_compute_log_manager import NoOpComputeLogManager
from dagster._core.storage.root import TemporaryLocalArtifactStorage
from dagster._core.storage.runs import InMemoryRunStorage
from sqlalchemy.engine import Connection

LOCAL_INSTANCE = """\
# Written by marketpulse: the Dagster instance of this home (for `dagster dev` too).
telemetry:
  enabled: false
run_coordinator:  # the daemon looks for queued runs every second, not every five
  module: dagster.core.run_coordinator
  class: QueuedRunCoordinator
  config:
    dequeue_interval_seconds: 1
"""

EVENT_BATCH_SIZE = 1000
"""Events per write when batching (`DAGSTER_EVENT_BATCH_SIZE`): the deployments' value too."""


def dagster_instance() -> dg.DagsterInstance:
    """The instance of `$DAGSTER_HOME` when it is set, so the runs show in `dagster dev` started
    with the same home; otherwise an ephemeral one. A persistent instance records an event per
    asset partition, which costs the demo about four seconds; the tables are the same either way.
    """
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        return ephemeral_instance()
    directory = Path(home).expanduser()
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "dagster.yaml"
    if not config.exists():
        config.write_text(LOCAL_INSTANCE)
    return dg.DagsterInstance.from_config(str(directory))


def ephemeral_instance() -> dg.DagsterInstance:
    """Dagster's ephemeral instance (`DagsterInstance.ephemeral()`), its event log writing a
    batch of events in one transaction."""
    return dg.DagsterInstance(
        instance_type=InstanceType.EPHEMERAL,
        local_artifact_storage=TemporaryLocalArtifactStorage(),
        run_storage=InMemoryRunStorage(),
        event_storage=BatchedInMemoryEventLog(),
        compute_log_manager=NoOpComputeLogManager(),
        run_coordinator=DefaultRunCoordinator(),
        run_launcher=SyncInMemoryRunLauncher(),
    )


class BatchedInMemoryEventLog(InMemoryEventLogStorage):
    """The in-memory event log, storing a batch (`store_event_batch`) in one transaction: every
    write of the batch reuses its connection, other threads wait for the batch to end. Should
    one event fail, the transaction rolls back and Dagster stores the events one by one. The
    run's watchers hear of a batch's events once it is stored, outside the lock.

    An asset's index row holds its latest materialization, overwritten by each: in a batch,
    only the last materialization of each asset writes it, leaving the row a loop would."""

    def __init__(self) -> None:
        super().__init__()
        self._batch: tuple[int, Connection] | None = None
        self._superseded = False

    @contextmanager
    def _connect(self) -> Iterator[Connection]:
        batch = self._batch
        if batch is not None and batch[0] == threading.get_ident():
            yield batch[1]
            return
        with super()._connect() as conn:
            yield conn

    def store_event_batch(self, events: Sequence[dg.EventLogEntry]) -> None:
        superseded = _superseded_materializations(events)
        with super()._connect() as conn:  # holds the storage's lock until the batch is stored
            self._batch = (threading.get_ident(), conn)
            try:
                for position, event in enumerate(events):
                    self._superseded = position in superseded
                    SqlEventLogStorage.store_event(self, event)
            finally:
                self._batch, self._superseded = None, False
        for event in events:  # once committed, and outside the lock: a watcher may read
            self._announce(event)

    def _announce(self, event: dg.EventLogEntry) -> None:
        """What the in-memory log's `store_event` does once an event is stored: tell the run's
        watchers (`watch`), each with the event's cursor."""
        self._storage_id += 1
        cursor = str(EventLogCursor.from_storage_id(self._storage_id))
        for handler in list(self._handlers[event.run_id]):
            try:
                handler(event, cursor)
            except Exception:
                logging.exception("Exception in callback for event watch on run %s.", event.run_id)

    def _store_asset_event(self, conn: Connection, event: dg.EventLogEntry, event_id: int) -> None:
        if not self._superseded:
            super()._store_asset_event(conn, event, event_id)


def _superseded_materializations(events: Sequence[dg.EventLogEntry]) -> set[int]:
    """Positions of the materializations followed, in `events`, by another of the same asset."""
    last: dict[dg.AssetKey, int] = {}
    for position, event in enumerate(events):
        if event.dagster_event is not None and event.dagster_event.is_step_materialization:
            last[event.dagster_event.asset_key] = position
    return {
        position
        for position, event in enumerate(events)
        if event.dagster_event is not None
        and event.dagster_event.is_step_materialization
        and last[event.dagster_event.asset_key] != position
    }


_EPHEMERAL_RUN = {
    "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "true",
    "DAGSTER_EVENT_BATCH_SIZE": str(EVENT_BATCH_SIZE),
}


@contextmanager
def ephemeral_run_settings(instance: dg.DagsterInstance) -> Iterator[None]:
    """On an ephemeral instance, one "planned" event per asset for the run's partitions rather
    than one per partition (half a run's events), and a step's materializations written in
    batches. Their cost — a failed run's partitions not marked failed, a step that dies midway
    leaving its batch unstored — falls on no one: nobody reads the instance after the run.
    Dagster reads both switches from the environment: set only while this run executes."""
    if instance.is_persistent:
        yield
        return
    previous = {name: os.environ.get(name) for name in _EPHEMERAL_RUN}
    os.environ.update(_EPHEMERAL_RUN)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                del os.environ[name]
            else:
                os.environ[name] = value
