import datetime as dt

import pytest

from marketpulse_pipeline.calendar import (
    EARLIEST_SESSION,
    closure_reason,
    latest_completed_session,
    next_session,
    previous_session,
    session_offset,
    sessions_between,
)

HOLIDAYS_2025 = {
    dt.date(2025, 1, 1): "New Year's Day",
    dt.date(2025, 4, 18): "Good Friday",
    dt.date(2025, 7, 4): "July 4th",
    dt.date(2025, 11, 27): "Thanksgiving",
    dt.date(2025, 12, 25): "Christmas",
}


def test_sessions_skip_weekends_and_holidays():
    days = {d.date() for d in sessions_between(dt.date(2025, 1, 1), dt.date(2025, 12, 31))}
    assert len(days) == 250
    assert not any(d.weekday() >= 5 for d in days)
    assert not days & set(HOLIDAYS_2025)
    assert dt.date(2025, 7, 3) in days and dt.date(2025, 12, 24) in days


@pytest.mark.parametrize("day,name", HOLIDAYS_2025.items())
def test_closure_reason_names_the_holiday(day, name):
    assert closure_reason(day) == name


def test_closure_reason_weekend():
    assert closure_reason(dt.date(2025, 7, 5)) == "weekend"


@pytest.mark.parametrize(
    "now,expected",
    [
        # 15:59 New York on a regular day: that session has not closed yet
        (dt.datetime(2025, 7, 2, 19, 59, tzinfo=dt.UTC), dt.date(2025, 7, 1)),
        # 2025-07-03 closed early at 13:00 New York (17:00 UTC)
        (dt.datetime(2025, 7, 3, 17, 0, tzinfo=dt.UTC), dt.date(2025, 7, 3)),
        # on the July 4th holiday and the weekend after it, the 3rd is the latest session
        (dt.datetime(2025, 7, 6, 12, 0, tzinfo=dt.UTC), dt.date(2025, 7, 3)),
        # 18:30 New York, when the schedule fires
        (dt.datetime(2025, 7, 7, 22, 30, tzinfo=dt.UTC), dt.date(2025, 7, 7)),
    ],
)
def test_latest_completed_session(now, expected):
    assert latest_completed_session(now) == expected


def test_lookbacks_count_sessions_and_stop_at_the_calendars_first():
    assert session_offset(dt.date(2025, 7, 7), -2) == dt.date(2025, 7, 2)  # weekend, July 4th
    assert session_offset(dt.date(1990, 3, 1), -500) == EARLIEST_SESSION
    assert previous_session(EARLIEST_SESSION) == EARLIEST_SESSION
    assert next_session(dt.date(2025, 7, 3)) == dt.date(2025, 7, 7)
