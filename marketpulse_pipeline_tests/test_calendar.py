import datetime as dt

import pytest

from marketpulse_pipeline.calendar import (
    SessionWindow,
    closure_reason,
    latest_completed_session,
    resolve_windows,
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


def test_catch_up_window_starts_after_the_last_stored_session():
    windows = resolve_windows(
        ["AAPL", "MSFT"],
        {"AAPL": dt.date(2025, 7, 2), "MSFT": None},
        first_day=dt.date(2025, 6, 2),
        as_of=dt.date(2025, 7, 7),
    )
    assert windows["AAPL"] == SessionWindow(dt.date(2025, 7, 3), dt.date(2025, 7, 7))
    assert [d.date() for d in windows["AAPL"].sessions()] == [
        dt.date(2025, 7, 3),
        dt.date(2025, 7, 7),
    ]
    assert windows["MSFT"] == SessionWindow(dt.date(2025, 6, 2), dt.date(2025, 7, 7))


def test_up_to_date_symbol_gets_an_empty_window():
    windows = resolve_windows(
        ["AAPL"],
        {"AAPL": dt.date(2025, 7, 7)},
        first_day=dt.date(2025, 1, 2),
        as_of=dt.date(2025, 7, 7),
    )
    assert windows["AAPL"].is_empty
    assert len(windows["AAPL"].sessions()) == 0


def test_explicit_window_overrides_catch_up():
    windows = resolve_windows(
        ["AAPL"],
        {"AAPL": dt.date(2025, 7, 7)},
        first_day=dt.date(2025, 1, 2),
        as_of=dt.date(2025, 7, 7),
        start=dt.date(2025, 3, 3),
        end=dt.date(2025, 3, 7),
    )
    assert windows["AAPL"] == SessionWindow(dt.date(2025, 3, 3), dt.date(2025, 3, 7))


def test_lookback_counts_sessions_not_calendar_days():
    window = SessionWindow(dt.date(2025, 7, 7), dt.date(2025, 7, 8)).with_lookback(2)
    assert window.start == dt.date(2025, 7, 2)  # skips the weekend and July 4th
