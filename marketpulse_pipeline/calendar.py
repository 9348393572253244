"""NYSE trading sessions and the processing windows built from them.

Every date MarketPulse stores is an NYSE session taken from `exchange-calendars`, so weekends
and holidays (Good Friday, July 4th, Christmas, the ad-hoc closures) never get a row.
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

import exchange_calendars as xcals
import numpy as np
import pandas as pd

EXCHANGE = "XNYS"
EARLIEST_SESSION = dt.date(1990, 1, 2)
MARKET_TIMEZONE = "America/New_York"


@cache
def nyse() -> xcals.ExchangeCalendar:
    """The NYSE calendar from 1990 to about a year ahead, built once per process."""
    with warnings.catch_warnings():
        # exchange-calendars trips a pandas 3.1 deprecation while it builds; nothing for us to do.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        return xcals.get_calendar(EXCHANGE, start=EARLIEST_SESSION.isoformat())


def is_session(day: dt.date) -> bool:
    return bool(nyse().is_session(pd.Timestamp(day)))


def closure_reason(day: dt.date) -> str:
    """Why the NYSE is closed on `day` (weekend, a named holiday, or an unscheduled closure)."""
    if day.weekday() >= 5:
        return "weekend"
    stamp = pd.Timestamp(day)
    names = nyse().regular_holidays.holidays(stamp, stamp, return_name=True)
    return str(names.iloc[0]) if len(names) else "unscheduled closure"


def sessions_between(start: dt.date, end: dt.date) -> pd.DatetimeIndex:
    """All sessions from `start` to `end`, both included (empty when start > end)."""
    if start > end:
        return pd.DatetimeIndex([], dtype="datetime64[ns]")
    return nyse().sessions_in_range(pd.Timestamp(start), pd.Timestamp(end)).astype("datetime64[ns]")


def session_offset(day: dt.date, count: int) -> dt.date:
    """The session `count` sessions after (or, negative, before) the session on or after `day`,
    clamped to the calendar's range: a look-back from early history starts at its first session.
    """
    sessions = nyse().sessions
    anchor = sessions.searchsorted(pd.Timestamp(max(day, EARLIEST_SESSION)))
    position = min(max(anchor + count, 0), len(sessions) - 1)
    return sessions[position].date()


def next_session(day: dt.date) -> dt.date:
    """The first session strictly after `day`."""
    return session_offset(day + dt.timedelta(days=1), 0)


def previous_session(day: dt.date) -> dt.date:
    """The last session strictly before `day` (the calendar's first session at the earliest)."""
    return session_offset(day, -1)


def closing_bell(day: dt.date) -> dt.datetime:
    """The moment session `day` closes (UTC): the first at which it is complete."""
    return nyse().session_close(pd.Timestamp(day)).to_pydatetime()


def latest_completed_session(now: dt.datetime | None = None) -> dt.date:
    """The last session whose closing bell has rung at `now` (default: the current time)."""
    calendar = nyse()
    moment = pd.Timestamp(now or dt.datetime.now(dt.UTC))
    moment = moment.tz_localize("UTC") if moment.tzinfo is None else moment.tz_convert("UTC")
    local_day = pd.Timestamp(moment.tz_convert(MARKET_TIMEZONE).date())
    session = calendar.date_to_session(local_day, direction="previous")
    if calendar.session_close(session) > moment:
        session = calendar.previous_session(session)
    return session.date()


@dataclass(frozen=True, order=True)
class SessionWindow:
    """A closed range of trading days that one materialization processes for a symbol."""

    start: dt.date
    end: dt.date

    @property
    def is_empty(self) -> bool:
        return self.start > self.end

    def sessions(self) -> pd.DatetimeIndex:
        return sessions_between(self.start, self.end)

    def __str__(self) -> str:
        return f"{self.start}..{self.end}"


def missing_sessions(frame: pd.DataFrame, windows: Mapping[str, SessionWindow]) -> pd.DataFrame:
    """`symbol`, `timestamp` of each session in a symbol's window that `frame` has no row for."""
    expected = pd.DataFrame(
        [(symbol, day) for symbol, w in windows.items() for day in w.sessions()],
        columns=["symbol", "timestamp"],
    ).astype({"symbol": "str", "timestamp": "datetime64[ns]"})
    present = expected.merge(frame[["symbol", "timestamp"]], how="left", indicator=True)
    return present.loc[present["_merge"] == "left_only", ["symbol", "timestamp"]].reset_index(
        drop=True
    )


def inside_windows(frame: pd.DataFrame, windows: Mapping[str, SessionWindow]) -> pd.Series:
    """Whether each row's `timestamp` lies inside its `symbol`'s window (False for others)."""
    symbols = list(windows)
    position = pd.Index(symbols).get_indexer(frame["symbol"])
    never = np.datetime64("NaT", "D")
    starts = np.array([np.datetime64(windows[s].start, "D") for s in symbols] + [never])
    ends = np.array([np.datetime64(windows[s].end, "D") for s in symbols] + [never])
    stamps = frame["timestamp"].to_numpy(dtype="datetime64[ns]").astype("datetime64[D]")
    inside = (stamps >= starts[position]) & (stamps <= ends[position])  # -1 picks NaT: False
    return pd.Series(inside, index=frame.index)
