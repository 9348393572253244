"""Every method finds the synthetic source's injected price shocks on a demo-sized run."""

import datetime as dt

import pandas as pd
import pytest

from marketpulse_pipeline.calendar import SessionWindow, session_offset
from marketpulse_pipeline.detectors import DETECTORS
from marketpulse_pipeline.features.indicators import compute_features
from marketpulse_pipeline.settings import DEFAULT_SYMBOLS
from marketpulse_pipeline.sources.synthetic import SyntheticSource
from marketpulse_pipeline_tests.market import detect

END = dt.date(2025, 12, 31)
DEMO = SessionWindow(session_offset(END, -249), END)  # 250 sessions, as `marketpulse demo`
HISTORY = SessionWindow(session_offset(DEMO.start, -300), END)  # warm-up for every method

# Share of injected up/down price shocks each method flags on the day (seed 42, 9 symbols).
MINIMUM_RECALL = {
    "zscore": 0.9,
    "iqr": 0.9,
    "isolation_forest": 0.9,
    "moving_average": 0.8,
    "volume": 0.7,
    "technical": 0.6,
    "volatility_adjusted": 0.9,
    "market_relative": 0.8,  # not SPY's own: SPY is the benchmark
}


@pytest.fixture(scope="module")
def market_and_shocks():
    source = SyntheticSource(seed=42)
    prices = source.bars(list(DEFAULT_SYMBOLS), HISTORY).drop(columns="source_ref")
    market = prices.merge(compute_features(prices), on=["symbol", "timestamp"])
    market["in_window"] = market["timestamp"] >= pd.Timestamp(DEMO.start)
    truth = source.injected_anomalies(list(DEFAULT_SYMBOLS), DEMO)
    shocks = truth[truth["kind"].isin(["price_shock_up", "price_shock_down"])]
    return market, shocks


@pytest.mark.parametrize("method", list(DETECTORS))
def test_method_recalls_injected_price_shocks(market_and_shocks, method):
    market, shocks = market_and_shocks
    assert len(shocks) >= 10
    found = detect(method, market)[["symbol", "timestamp"]].drop_duplicates()
    hits = shocks.merge(found, on=["symbol", "timestamp"], how="inner")
    recall = len(hits) / len(shocks)
    print(f"{method}: recall of {len(shocks)} injected price shocks = {recall:.2f}")
    assert recall >= MINIMUM_RECALL[method]


@pytest.mark.parametrize("method", list(DETECTORS))
def test_every_flagged_day_gets_a_tail_probability_and_shocks_are_rare(market_and_shocks, method):
    """With a year of scores before the window, each flag says how rare its day is for its
    symbol; an injected shock is rarer than the method's typical flag."""
    market, shocks = market_and_shocks
    found = detect(method, market)
    assert found["p_value"].between(0, 1, inclusive="right").all()
    on_shocks = found.merge(shocks[["symbol", "timestamp"]], on=["symbol", "timestamp"])
    assert on_shocks["p_value"].median() < found["p_value"].median()
    assert on_shocks["p_value"].median() <= 0.05
