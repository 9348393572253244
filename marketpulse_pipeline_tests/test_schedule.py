import datetime as dt
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

NEW_YORK = ZoneInfo("America/New_York")


def evaluate(defs: dg.Definitions, day: dt.date):
    schedule = defs.resolve_schedule_def("after_the_close")
    moment = dt.datetime.combine(day, dt.time(18, 30), NEW_YORK)
    with dg.build_schedule_context(scheduled_execution_time=moment) as context:
        return schedule.evaluate_tick(context)


def test_schedule_runs_after_the_close_and_is_on_by_default(make_defs):
    schedule = make_defs().resolve_schedule_def("after_the_close")
    assert schedule.cron_schedule == "30 18 * * 1-5"
    assert schedule.execution_timezone == "America/New_York"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING


def test_a_session_requests_every_symbol_in_one_run(make_defs):
    defs = make_defs(MARKETPULSE_SYMBOLS="AAPL,MSFT,SPY")
    result = evaluate(defs, dt.date(2025, 7, 3))
    [request] = result.run_requests
    assert request.partition_key_range == dg.PartitionKeyRange("AAPL", "SPY")
    assert request.run_config["resources"]["window"]["config"]["as_of"] == "2025-07-03"
    assert request.run_key == "2025-07-03"


@pytest.mark.parametrize(
    "day,reason",
    [
        (dt.date(2025, 7, 4), "July 4th"),
        (dt.date(2025, 4, 18), "Good Friday"),
        (dt.date(2025, 12, 25), "Christmas"),
    ],
)
def test_holidays_are_skipped_with_the_reason(make_defs, day, reason):
    result = evaluate(make_defs(), day)
    assert not result.run_requests
    assert result.skip_message == f"{day} is not an NYSE session ({reason})"
