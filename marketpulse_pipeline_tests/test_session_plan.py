"""Which sessions each asset processes: the pure rules, for every input Hypothesis can draw."""

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from marketpulse_pipeline.calendar import (
    EARLIEST_SESSION,
    SessionWindow,
    next_session,
    previous_session,
    sessions_between,
)
from marketpulse_pipeline.session_plan import (
    OPEN_END,
    PlanError,
    PriceRequest,
    ahead_of_clock,
    common_span,
    derived_plans,
    mixed_sources,
    price_plans,
)

LATEST = dt.date(2025, 7, 7)
SESSIONS = list(sessions_between(dt.date(2024, 1, 2), LATEST).date)
FIRST_DAY = dt.date(2024, 6, 3)
session = st.sampled_from(SESSIONS)


@st.composite
def span(draw: st.DrawFn) -> SessionWindow:
    first, last = sorted([draw(session), draw(session)])
    return SessionWindow(first, last)


@st.composite
def request(draw: st.DrawFn) -> PriceRequest:
    start, end = sorted([draw(session), draw(session)])
    return PriceRequest(
        start=draw(st.sampled_from([None, start])),
        end=draw(st.sampled_from([None, end])),
        as_of=draw(st.sampled_from([None, draw(session), dt.date(2025, 7, 11)])),
    )


def plan(stored, req, overlap=0):
    return price_plans(
        ["AAPL"], {"AAPL": stored}, req, first_day=FIRST_DAY, latest=LATEST, overlap=overlap
    )["AAPL"]


@given(stored=st.one_of(st.none(), span()), req=request())
def test_prices_never_come_from_the_future_and_never_leave_a_hole(stored, req):
    try:
        window = plan(stored, req).window
    except PlanError:
        return  # e.g. an explicit end before the explicit start's session: refused, not run
    assert window.end <= LATEST
    if stored and not window.is_empty:
        assert window.start <= next_session(stored.end)  # meets or overlaps the stored span
        assert window.end >= previous_session(stored.start)


@given(stored=st.one_of(st.none(), span()), req=request())
def test_an_explicit_window_is_loaded_whole(stored, req):
    if req.start is None:
        return
    try:
        window = plan(stored, req).window
    except PlanError:
        return
    assert window.start <= req.start and window.end >= (req.end or min(req.as_of or LATEST, LATEST))


@given(stored=span(), req=request(), overlap=st.integers(1, 8))
def test_every_load_rereads_stored_sessions_to_notice_a_restatement(stored, req, overlap):
    """Whatever the window, a split since the history was stored changes every stored bar, so
    it shows in the bars re-read."""
    try:
        window = plan(stored, req, overlap).window
    except PlanError:
        return
    if window.is_empty:
        return  # nothing to load: caught up already
    assert len(sessions_between(max(window.start, stored.start), min(window.end, stored.end)))


def test_a_later_window_rereads_the_last_stored_sessions():
    stored = SessionWindow(dt.date(2025, 1, 2), dt.date(2025, 3, 28))
    result = plan(stored, PriceRequest(dt.date(2025, 6, 2), dt.date(2025, 6, 30)), overlap=5)
    assert result.window == SessionWindow(dt.date(2025, 3, 24), dt.date(2025, 6, 30))
    assert result.gap_filled == SessionWindow(dt.date(2025, 3, 31), dt.date(2025, 5, 30))


def test_an_older_window_rereads_the_first_stored_sessions():
    stored = SessionWindow(dt.date(2025, 7, 1), dt.date(2025, 7, 7))
    result = plan(stored, PriceRequest(dt.date(2025, 6, 2), dt.date(2025, 6, 30)), overlap=5)
    assert result.window == SessionWindow(dt.date(2025, 6, 2), dt.date(2025, 7, 7))
    assert result.gap_filled is None


@given(stored=span())
def test_catching_up_starts_after_the_last_stored_session(stored):
    window = plan(stored, PriceRequest()).window
    assert window == SessionWindow(next_session(stored.end), LATEST)


def test_symbols_with_prices_after_the_clock_are_found():
    stored = {
        "AAPL": SessionWindow(dt.date(2025, 6, 2), LATEST),
        "MSFT": SessionWindow(dt.date(2025, 6, 2), dt.date(2025, 7, 8)),
        "TSLA": None,
    }
    assert ahead_of_clock(stored, LATEST) == {"MSFT": dt.date(2025, 7, 8)}


def test_a_symbol_without_prices_starts_at_the_first_day():
    assert plan(None, PriceRequest()).window == SessionWindow(FIRST_DAY, LATEST)


def test_an_older_window_is_widened_to_meet_the_stored_history_and_says_so():
    stored = SessionWindow(dt.date(2025, 6, 2), dt.date(2025, 7, 7))
    result = plan(stored, PriceRequest(dt.date(2025, 1, 2), dt.date(2025, 3, 28)))
    assert result.window == SessionWindow(dt.date(2025, 1, 2), dt.date(2025, 5, 30))
    assert result.gap_filled == SessionWindow(dt.date(2025, 3, 31), dt.date(2025, 5, 30))


def test_a_later_window_is_widened_back_to_the_stored_history():
    stored = SessionWindow(dt.date(2025, 1, 2), dt.date(2025, 3, 28))
    result = plan(stored, PriceRequest(dt.date(2025, 6, 2), dt.date(2025, 6, 30)))
    assert result.window == SessionWindow(dt.date(2025, 3, 31), dt.date(2025, 6, 30))


def test_an_adjacent_window_needs_no_filling():
    stored = SessionWindow(dt.date(2025, 7, 3), dt.date(2025, 7, 7))
    assert plan(stored, PriceRequest(dt.date(2025, 6, 2), dt.date(2025, 7, 2))).gap_filled is None


def test_a_tick_previewed_for_a_future_day_stops_at_the_latest_completed_session():
    stored = SessionWindow(dt.date(2025, 6, 2), dt.date(2025, 7, 2))
    window = plan(stored, PriceRequest(as_of=dt.date(2025, 7, 11))).window
    assert window == SessionWindow(dt.date(2025, 7, 3), LATEST)


@pytest.mark.parametrize(
    ("req", "message"),
    [
        (PriceRequest(dt.date(2025, 7, 1), dt.date(2025, 6, 30)), "after its end"),
        (PriceRequest(dt.date(2025, 7, 1), dt.date(2025, 7, 11)), "latest completed NYSE session"),
        (PriceRequest(dt.date(2025, 7, 8)), "latest completed NYSE session"),
        (PriceRequest(dt.date(2025, 7, 5), dt.date(2025, 7, 6)), "holds no NYSE session"),
    ],
)
def test_windows_that_cannot_run_are_refused_with_a_reason(req, message):
    with pytest.raises(PlanError, match=message):
        req.check(LATEST)


def test_sources_mix_only_when_rows_of_another_survive_the_window():
    plans = {"AAPL": plan(None, PriceRequest(dt.date(2025, 6, 2), dt.date(2025, 7, 7)))}
    inside = [("AAPL", "csv", dt.date(2025, 6, 2), dt.date(2025, 6, 30))]
    outside = [("AAPL", "csv", dt.date(2025, 3, 3), dt.date(2025, 6, 30))]
    assert mixed_sources(inside, plans, "synthetic") == []
    assert mixed_sources(outside, plans, "synthetic") == ["AAPL (csv, 2025-03-03..2025-06-30)"]
    assert mixed_sources(outside, plans, "csv") == []


@given(mine=st.one_of(st.none(), session), upstream=st.one_of(st.none(), span()))
def test_a_computed_asset_replaces_everything_after_its_last_valid_session(mine, upstream):
    result = derived_plans(["AAPL"], {"AAPL": mine}, {"AAPL": upstream})["AAPL"]
    assert result.replace_from == (next_session(mine) if mine else EARLIEST_SESSION)
    assert result.replaced == SessionWindow(result.replace_from, OPEN_END)
    if upstream is None:
        assert result.compute.is_empty and result.valid_through is None
        return
    assert result.valid_through == upstream.end  # valid through its upstream afterwards
    if not result.compute.is_empty:  # computes inside its upstream, from where it replaces
        assert upstream.start <= result.compute.start and result.compute.end == upstream.end
        assert result.compute.start >= result.replace_from
    if mine is None or mine < upstream.end:  # every session it lacks is computed
        expected = max(result.replace_from, upstream.start)
        assert result.compute == SessionWindow(expected, upstream.end)
    else:
        assert result.compute.is_empty


def test_consensus_waits_for_its_slowest_upstream():
    spans = [SessionWindow(dt.date(2025, 1, 2), dt.date(2025, 7, 7)), None]
    assert common_span(spans) is None
    spans[1] = SessionWindow(dt.date(2025, 1, 2), dt.date(2025, 7, 2))
    assert common_span(spans) == SessionWindow(dt.date(2025, 1, 2), dt.date(2025, 7, 2))
