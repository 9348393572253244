"""The CLI's ephemeral Dagster instance: a batch of events in one transaction, watchers told
once it is stored (pure Dagster storage; no run, no database)."""

import threading
import time

import dagster as dg
import pytest

from marketpulse_pipeline.instance import BatchedInMemoryEventLog


def entry(run_id: str, message: str) -> dg.EventLogEntry:
    return dg.EventLogEntry(
        error_info=None,
        level="INFO",
        user_message=message,
        run_id=run_id,
        timestamp=time.time(),
    )


def test_a_watcher_of_a_batch_may_read_the_log_from_another_thread():
    storage = BatchedInMemoryEventLog()
    heard: list[tuple[str, str]] = []
    read_in_time: list[bool] = []

    def watcher(event: dg.EventLogEntry, cursor: str) -> None:
        heard.append((event.user_message, cursor))
        reader = threading.Thread(target=storage.get_records_for_run, args=("run",))
        reader.start()
        reader.join(timeout=10)  # would hang while the batch held the storage's lock
        read_in_time.append(not reader.is_alive())

    storage.watch("run", None, watcher)
    storage.store_event_batch([entry("run", f"event {i}") for i in range(3)])
    assert [message for message, _ in heard] == ["event 0", "event 1", "event 2"]
    assert all(read_in_time)
    assert len({cursor for _, cursor in heard}) == 3  # each event its own cursor
    stored = storage.get_records_for_run("run").records
    assert [r.event_log_entry.user_message for r in stored] == ["event 0", "event 1", "event 2"]


class FailingOn(BatchedInMemoryEventLog):
    """The batched log, failing to store the event with one message (a full disk, say)."""

    def __init__(self, message: str) -> None:
        super().__init__()
        self.message = message

    def prepare_insert_event(self, event: dg.EventLogEntry) -> object:
        if event.user_message == self.message:
            raise OSError("no space left on device")
        return super().prepare_insert_event(event)


def test_a_failed_batch_stores_and_announces_nothing():
    storage = FailingOn("second")
    heard: list[str] = []
    storage.watch("run", None, lambda event, _: heard.append(event.user_message))
    with pytest.raises(OSError, match="no space"):
        storage.store_event_batch([entry("run", "first"), entry("run", "second")])
    assert heard == []
    assert storage.get_records_for_run("run").records == []  # the first rolled back too
