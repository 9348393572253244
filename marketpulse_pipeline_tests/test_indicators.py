import math
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.signal import lfilter

from marketpulse_pipeline.features.indicators import (
    WilderState,
    _smoothed,
    compute_features,
    wilder,
)
from marketpulse_pipeline.features.rolling import nan_median
from marketpulse_pipeline_tests.market import market


def test_rsi_follows_wilder_seeded_with_the_simple_mean():
    # 14 changes of +1/-1: average gain = average loss = 0.5, so RSI = 50 on the 15th bar.
    closes = [10, 11, 10, 11, 10, 11, 10, 11, 10, 11, 10, 11, 10, 11, 10, 12]
    rsi = wilder(np.array(closes, dtype=float))[0]
    assert np.isnan(rsi[:14]).all()
    assert rsi[14] == pytest.approx(50.0)
    # then +2: gain = (0.5 * 13 + 2) / 14, loss = (0.5 * 13 + 0) / 14 -> 100 * 8.5 / 15
    assert rsi[15] == pytest.approx(100 * 8.5 / 15)


def test_rsi_is_100_when_prices_only_rise_and_50_when_flat():
    assert wilder(np.arange(1.0, 17.0))[0][14:] == pytest.approx([100.0, 100.0])
    assert wilder(np.full(16, 7.0))[0][14:] == pytest.approx([50.0, 50.0])


def test_bollinger_bands_use_the_population_standard_deviation():
    features = compute_features(market(np.arange(1.0, 22.0)).iloc[:, :7])
    assert features["bb_middle"][:19].isna().all() and features["sma_20"][:19].isna().all()
    std = math.sqrt((20**2 - 1) / 12)  # population std of 20 consecutive integers
    row = features.iloc[19]  # the 20th bar: closes 1..20
    assert row["bb_middle"] == pytest.approx(10.5) and row["sma_20"] == pytest.approx(10.5)
    assert row["bb_upper"] == pytest.approx(10.5 + 2 * std)
    assert row["bb_lower"] == pytest.approx(10.5 - 2 * std)
    assert row["bb_percent_b"] == pytest.approx((20 - (10.5 - 2 * std)) / (4 * std))
    assert features.iloc[20]["bb_middle"] == pytest.approx(11.5)  # closes 2..21


def test_returns_range_and_gap_against_the_previous_close():
    prices = pd.DataFrame(
        {
            "symbol": "X",
            "timestamp": pd.to_datetime(["2025-07-01", "2025-07-02", "2025-07-03"]),
            "open": [100.0, 103.0, 99.0],
            "high": [101.0, 106.0, 100.0],
            "low": [99.0, 102.0, 98.0],
            "close": [100.0, 105.0, 99.75],
            "volume": [1000.0, 1500.0, 0.0],
        }
    )
    features = compute_features(prices)
    first, second, third = features.to_dict("records")
    assert all(math.isnan(first[c]) for c in ("return_pct", "gap_pct", "range_pct", "log_return"))
    assert second["return_pct"] == pytest.approx(5.0)
    assert second["log_return"] == pytest.approx(math.log(1.05))
    assert second["gap_pct"] == pytest.approx(3.0)
    assert second["range_pct"] == pytest.approx(4.0)  # (106 - 102) / 100
    assert second["volume_change_pct"] == pytest.approx(50.0)
    assert third["return_pct"] == pytest.approx(-5.0)
    assert third["volume_change_pct"] == pytest.approx(-100.0)


def test_symbols_never_share_a_window():
    both = pd.concat(
        [market(np.arange(1.0, 31.0), symbol="A"), market(np.arange(50.0, 80.0), symbol="B")]
    )
    features = compute_features(both.iloc[:, :7])
    b = features[features["symbol"] == "B"].reset_index(drop=True)
    assert b["return_pct"].isna().iloc[0] and b["sma_20"].isna().iloc[18]
    assert b["sma_20"].iloc[19] == pytest.approx(np.mean(np.arange(50.0, 70.0)))


def test_rsi_resumed_from_stored_state_equals_the_whole_history():
    prices = market(100 * np.cumprod(1 + np.random.default_rng(3).normal(0, 0.01, 300))).iloc[:, :7]
    whole = compute_features(prices)
    cut = 250  # a later run: window from row 250, state stored on row 249, 60 rows of lookback
    state = whole.iloc[cut - 1]
    resumed = compute_features(
        prices.iloc[cut - 60 :],
        resume={
            "TEST": WilderState(state["timestamp"], state["rsi_avg_gain"], state["rsi_avg_loss"])
        },
    )
    later = resumed[resumed["timestamp"] >= whole["timestamp"][cut]].reset_index(drop=True)
    expected = whole.iloc[cut:].reset_index(drop=True)
    pd.testing.assert_frame_equal(later, expected, check_exact=True)


finite_or_not = st.floats(allow_nan=True, allow_infinity=True, width=64)


@given(st.lists(st.lists(finite_or_not, min_size=1, max_size=30), min_size=1, max_size=8))
def test_nan_median_is_numpys_to_the_bit(rows):
    """The rolling baselines' median skips numpy's masked-array path, never its answer."""
    width = max(len(row) for row in rows)
    matrix = np.array([row + [np.nan] * (width - len(row)) for row in rows])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows
        expected = np.nanmedian(matrix, axis=1)
    np.testing.assert_array_equal(nan_median(matrix) + 0.0, expected + 0.0)  # -0.0 == 0.0


@given(
    st.lists(st.floats(0, 1e6), max_size=200),
    st.integers(2, 60),
    st.floats(0, 1e6),
)
def test_wilder_smoothing_is_lfilters_arithmetic_to_the_bit(values, period, previous):
    decay = (period - 1) / period
    x = np.asarray(values, dtype="float64")
    expected = lfilter([1 / period], [1, -decay], x, zi=[decay * previous])[0]
    np.testing.assert_array_equal(_smoothed(x, 1 / period, decay, previous), expected)
