"""Which sessions each asset processes: the one place that decides it (pure, no I/O).

Two rules keep every sequence of loads, re-runs, kills and catch-ups equal to one run from
scratch:

- **Prices** fetch the run's window — explicit, or catching up from the symbol's last stored
  session — never past the latest completed session, and widened so that a symbol's stored
  history has no hole the pipeline made itself.
- **Computed assets** ignore the run's window. Each keeps, per symbol, the session through which
  its rows are valid (`valid_through`); a change of stored prices from session D on lowers that
  to the session before D, in the same transaction as the change. A run then replaces every row
  from the first invalid session on, computing through its upstream's last valid session.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from marketpulse_pipeline.calendar import (
    EARLIEST_SESSION,
    SessionWindow,
    next_session,
    previous_session,
    session_offset,
    sessions_between,
)

OPEN_END = dt.date(9999, 12, 31)
"""The end of a replacement that runs to the last row, whatever its date."""


class PlanError(ValueError):
    """A window that cannot be processed; the message names it and what would work."""


@dataclass(frozen=True)
class PriceRequest:
    """A run's window, as configured: all empty means catch up through the latest session."""

    start: dt.date | None = None
    end: dt.date | None = None
    as_of: dt.date | None = None

    def check_shape(self) -> None:
        """Refuse a window that is backwards or holds no session (no clock needed)."""
        for name, day in (("start", self.start), ("end", self.end), ("as_of", self.as_of)):
            if day and day < EARLIEST_SESSION:
                raise PlanError(
                    f"window {name} {day} is before {EARLIEST_SESSION},"
                    " the calendar's first session"
                )
        if self.start and self.end and self.start > self.end:
            raise PlanError(f"window start {self.start} is after its end {self.end}")
        if self.start and self.end and not len(sessions_between(self.start, self.end)):
            raise PlanError(f"window {self.start}..{self.end} holds no NYSE session")

    def check(self, latest: dt.date) -> None:
        """Refuse a window that is empty, backwards or in the future, before anything runs."""
        self.check_shape()
        if self.end and self.end > latest:
            raise PlanError(
                f"window end {self.end} is after {latest}, the latest completed NYSE session"
            )
        if self.start and self.start > latest:
            raise PlanError(
                f"window start {self.start} is after {latest}, the latest completed NYSE session"
            )
        if self.start and not len(sessions_between(self.start, self.end or latest)):
            raise PlanError(f"window {self.start}..{self.end or latest} holds no NYSE session")


@dataclass(frozen=True)
class PricePlan:
    """The sessions a run fetches for one symbol and replaces in `stock_prices`."""

    window: SessionWindow
    gap_filled: SessionWindow | None = None
    """Sessions added to the requested window so that the stored history stays contiguous."""


def ahead_of_clock(
    stored: Mapping[str, SessionWindow | None], latest: dt.date
) -> dict[str, dt.date]:
    """Symbols whose stored prices run past `latest` (the clock was moved back), and their last
    stored session. They are not loaded: a load compares re-read bars with stored ones to notice
    a split, and bars from after the clock cannot be re-read."""
    return {s: span.end for s, span in stored.items() if span and span.end > latest}


def price_plans(
    symbols: Iterable[str],
    stored: Mapping[str, SessionWindow | None],
    request: PriceRequest,
    *,
    first_day: dt.date,
    latest: dt.date,
    holes: Mapping[str, dt.date] | None = None,
    overlap: int = 0,
) -> dict[str, PricePlan]:
    """Each symbol's price window.

    Catching up runs from the session after the symbol's last stored one (or `first_day`)
    through `as_of` — or from the first session missing inside its stored history (`holes`),
    so a bar a source lacked is asked for again until it comes. An explicit window is taken as
    given, then widened to meet the stored history when it would leave sessions between them
    missing. Every window of a symbol with stored history re-reads at least `overlap` stored
    sessions (or all, if fewer), so that a vendor's restated history — a split since the
    history was stored — is noticed whatever the order of loads. Nothing after `latest` — the
    latest completed session — is ever fetched, whatever `end` or `as_of` say, provided no
    stored span runs past it (see `ahead_of_clock`).
    """
    request.check(latest)
    through = min(request.as_of or latest, latest)
    holes = holes or {}
    plans = {}
    for symbol in symbols:
        span = stored.get(symbol)
        if request.start is None:
            start = next_session(span.end) if span else first_day
            if span and overlap > 0:
                start = max(span.start, session_offset(span.end, 1 - overlap))
            start = min(start, holes.get(symbol, start))
            plans[symbol] = PricePlan(SessionWindow(start, request.end or through))
            continue
        window = SessionWindow(request.start, request.end or through)
        plans[symbol] = _meet_stored(window, span, overlap)
    return plans


def _meet_stored(window: SessionWindow, span: SessionWindow | None, overlap: int) -> PricePlan:
    """`window` widened to meet the stored `span` and re-read `overlap` of its sessions, and
    the sessions that filled a hole between them."""
    if span is None or (window.start <= span.end and window.end >= span.start):
        return PricePlan(window)  # overlapping: the stored sessions inside it are re-read
    if window.end < span.start:  # before the stored history: up to it, and into it
        gap = SessionWindow(next_session(window.end), previous_session(span.start))
        end = session_offset(span.start, overlap - 1) if overlap > 0 else gap.end
        widened = SessionWindow(window.start, min(end, span.end))
    else:  # after it: back to it, and into it
        gap = SessionWindow(next_session(span.end), previous_session(window.start))
        start = session_offset(span.end, 1 - overlap) if overlap > 0 else gap.start
        widened = SessionWindow(max(start, span.start), window.end)
    return PricePlan(widened, None if gap.is_empty else gap)


def mixed_sources(
    stored_sources: Iterable[tuple[str, str, dt.date, dt.date]],
    plans: Mapping[str, PricePlan],
    source: str,
) -> list[str]:
    """Symbols whose stored prices from another source would survive this run's write.

    `stored_sources` holds (symbol, source, first, last) per stored source of a symbol. Rows of
    another source inside the window are replaced and harmless; rows outside it would leave a
    history spliced from two sources.
    """
    mixed = []
    for symbol, other, first, last in stored_sources:
        window = plans[symbol].window
        if other != source and (first < window.start or last > window.end):
            mixed.append(f"{symbol} ({other}, {first}..{last})")
    return mixed


@dataclass(frozen=True)
class DerivedPlan:
    """What a computed asset does for one symbol."""

    compute: SessionWindow
    """Sessions whose rows are computed (empty when there is nothing new)."""
    replace_from: dt.date
    """Every row from this session on is replaced: the stale ones and the new ones."""
    valid_through: dt.date | None
    """The asset's `valid_through` after the write: its upstream's."""

    @property
    def replaced(self) -> SessionWindow:
        """The rows a write replaces."""
        return SessionWindow(self.replace_from, OPEN_END)


def derived_plans(
    symbols: Iterable[str],
    valid_through: Mapping[str, dt.date | None],
    upstream: Mapping[str, SessionWindow | None],
) -> dict[str, DerivedPlan]:
    """Each symbol's plan for an asset valid through `valid_through`, computed from an upstream
    whose rows are valid over `upstream` (first stored session .. last valid session)."""
    plans = {}
    for symbol in symbols:
        mine, source = valid_through.get(symbol), upstream.get(symbol)
        replace_from = next_session(mine) if mine else EARLIEST_SESSION
        if source is None or source.is_empty:
            nothing = SessionWindow(replace_from, replace_from - dt.timedelta(days=1))
            plans[symbol] = DerivedPlan(nothing, replace_from, None)
            continue
        compute = SessionWindow(max(replace_from, source.start), source.end)
        plans[symbol] = DerivedPlan(compute, replace_from, source.end)
    return plans


def common_span(spans: Iterable[SessionWindow | None]) -> SessionWindow | None:
    """The sessions over which every one of several upstreams is valid."""
    spans = list(spans)
    if not spans or any(span is None for span in spans):
        return None
    return SessionWindow(max(s.start for s in spans), min(s.end for s in spans))
