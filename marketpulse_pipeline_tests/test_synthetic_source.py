import datetime as dt

import numpy as np
import pandas as pd
import pytest

from marketpulse_pipeline.calendar import SessionWindow, previous_session, sessions_between
from marketpulse_pipeline.sources.synthetic import (
    ANOMALY_KINDS,
    EPOCH,
    PROFILES,
    SPLIT_RATIOS,
    SyntheticSource,
)

YEAR_2025 = SessionWindow(dt.date(2025, 1, 1), dt.date(2025, 12, 31))
WATCHLIST = list(PROFILES)
AS_OF = YEAR_2025.end  # the vendor's today: every request below is served as of it


@pytest.fixture(scope="module")
def year() -> pd.DataFrame:
    return SyntheticSource(seed=7, anomaly_rate=0.02, as_of=AS_OF).bars(WATCHLIST, YEAR_2025)


def test_same_seed_gives_identical_bars(year):
    again = SyntheticSource(seed=7, anomaly_rate=0.02, as_of=AS_OF).bars(WATCHLIST, YEAR_2025)
    pd.testing.assert_frame_equal(year, again)


def test_another_seed_gives_other_bars(year):
    other = SyntheticSource(seed=8, anomaly_rate=0.02, as_of=AS_OF).bars(WATCHLIST, YEAR_2025)
    assert not np.allclose(year["close"], other["close"])


@pytest.mark.parametrize("day", [dt.date(2025, 1, 2), dt.date(2025, 6, 30), dt.date(2025, 12, 31)])
def test_a_day_alone_equals_the_same_day_inside_a_year(year, day):
    source = SyntheticSource(seed=7, anomaly_rate=0.02, as_of=AS_OF)
    alone = source.bars(WATCHLIST, SessionWindow(day, day))
    inside = year[year["timestamp"] == pd.Timestamp(day)].reset_index(drop=True)
    pd.testing.assert_frame_equal(alone, inside)


def test_chunked_requests_equal_one_request(year):
    source = SyntheticSource(seed=7, anomaly_rate=0.02, as_of=AS_OF)
    halves = pd.concat(
        [
            source.bars(WATCHLIST[::-1], SessionWindow(dt.date(2025, 7, 1), dt.date(2025, 12, 31))),
            source.bars(WATCHLIST[::-1], SessionWindow(dt.date(2025, 1, 1), dt.date(2025, 6, 30))),
        ]
    )
    ordered = halves.sort_values(["symbol", "timestamp"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(
        ordered, year.sort_values(["symbol", "timestamp"]).reset_index(drop=True)
    )


def test_rows_are_exactly_the_sessions(year):
    sessions = sessions_between(YEAR_2025.start, YEAR_2025.end)
    for _, bars in year.groupby("symbol"):
        assert list(bars["timestamp"]) == list(sessions)
    assert not (year["timestamp"].dt.day_of_week >= 5).any()
    assert (
        not year["timestamp"].isin(pd.to_datetime(["2025-04-18", "2025-07-04", "2025-12-25"])).any()
    )


def test_ohlc_is_always_consistent(year):
    assert (year["low"] > 0).all()
    assert (year["low"] <= year[["open", "close"]].min(axis=1)).all()
    assert (year["high"] >= year[["open", "close"]].max(axis=1)).all()
    assert (year["volume"] == year["volume"].round()).all() and (year["volume"] > 0).all()


def test_prices_stay_near_each_symbols_level_once_splits_are_undone(year):
    source = SyntheticSource(seed=7, anomaly_rate=0.02, as_of=AS_OF)
    splits = source.corporate_actions(WATCHLIST, SessionWindow(EPOCH, AS_OF))
    shares = splits.groupby("symbol")["value"].prod().reindex(WATCHLIST, fill_value=1.0)
    medians = year.groupby("symbol")["close"].median() * shares
    assert (shares != 1.0).any()  # some symbol has split, so the test undoes something
    for symbol, profile in PROFILES.items():
        assert 0.5 * profile.price < medians[symbol] < 2.0 * profile.price
        # forward splits when high, reverse when low: the traded level stays within a split
        assert 1 / max(SPLIT_RATIOS) <= shares[symbol] <= max(SPLIT_RATIOS)


def test_a_split_restates_the_history_before_it_by_its_ratio():
    history = SessionWindow(dt.date(2000, 1, 3), AS_OF)
    splits = SyntheticSource(seed=7, as_of=AS_OF).corporate_actions(WATCHLIST, history)
    split = splits.iloc[-1]
    day = split["timestamp"].date()
    before = SessionWindow(day - dt.timedelta(days=30), previous_session(day))
    eve = SyntheticSource(seed=7, as_of=before.end).bars([split["symbol"]], before)
    later = SyntheticSource(seed=7, as_of=day).bars([split["symbol"]], before)
    # stored on the eve, read again on the split day: every bar scaled by the ratio
    np.testing.assert_allclose(eve["close"] / later["close"], split["value"], rtol=1e-4)
    np.testing.assert_allclose(later["volume"] / eve["volume"], split["value"], rtol=1e-4)
    # the vendor does not know a split before its day
    assert (
        SyntheticSource(seed=7, as_of=before.end).corporate_actions([split["symbol"]], before).empty
    )


def test_volatility_clusters_and_volume_follows_absolute_return():
    bars = SyntheticSource(seed=7, anomaly_rate=0.0).bars(
        ["SPY"], SessionWindow(dt.date(2010, 1, 1), dt.date(2025, 12, 31))
    )
    returns = np.log(bars["close"]).diff().dropna()
    squared = returns**2
    # calm and stormy spells: squared returns are autocorrelated (zero for i.i.d. returns)
    assert squared.autocorr(lag=1) > 0.05
    assert np.corrcoef(returns.abs(), np.log(bars["volume"].iloc[1:]))[0, 1] > 0.3


def test_injected_anomalies_are_labelled_and_visible(year):
    source = SyntheticSource(seed=7, anomaly_rate=0.02, as_of=AS_OF)
    truth = source.injected_anomalies(WATCHLIST, YEAR_2025)
    assert set(truth["kind"]) == set(ANOMALY_KINDS)
    assert truth["timestamp"].isin(year["timestamp"]).all()
    bars = year.set_index(["symbol", "timestamp"])
    returns = np.log(year.set_index(["symbol", "timestamp"])["close"]).groupby(level=0).diff()
    for row in truth.itertuples():
        bar = bars.loc[(row.symbol, row.timestamp)]
        if row.kind == "price_shock_up":
            assert returns[(row.symbol, row.timestamp)] > 0.04
        elif row.kind == "price_shock_down":
            assert returns[(row.symbol, row.timestamp)] < -0.04
        elif row.kind == "intraday_crash":
            assert bar["low"] <= bar["open"] * (1 + row.magnitude / 100) + 0.01
            assert bar["low"] < bar["close"] < bar["open"]
        elif row.kind == "volume_spike":
            assert row.magnitude >= 5
        else:
            assert row.duration == 10 and abs(row.magnitude) > 5


def test_no_anomalies_at_rate_zero():
    source = SyntheticSource(seed=7, anomaly_rate=0.0)
    assert source.injected_anomalies(WATCHLIST, YEAR_2025).empty


def test_unknown_symbols_get_a_stable_profile():
    source = SyntheticSource(seed=7)
    first = source.bars(["ZZZZ"], YEAR_2025)
    assert len(first) == 250
    pd.testing.assert_frame_equal(first, SyntheticSource(seed=7).bars(["ZZZZ"], YEAR_2025))
