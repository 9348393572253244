"""Each method on small hand-built series: a spike must be caught, a calm series must not."""

import json

import numpy as np
import pandas as pd
import pytest

from marketpulse_pipeline.detectors.iqr import IqrParams
from marketpulse_pipeline.detectors.isolation_forest import IsolationForestParams, refit_point
from marketpulse_pipeline.detectors.moving_average import MovingAverageParams
from marketpulse_pipeline.detectors.technical import TechnicalParams
from marketpulse_pipeline.detectors.volume import VolumeParams
from marketpulse_pipeline.detectors.zscore import ZScoreParams
from marketpulse_pipeline_tests.market import detect, market, zigzag


def with_jump(closes: np.ndarray, day: int, pct: float) -> np.ndarray:
    """The same path with a `pct` move on `day` that persists."""
    out = closes.copy()
    out[day:] *= 1 + pct / 100
    return out


def test_defaults_are_the_documented_ones():
    assert ZScoreParams() == ZScoreParams(window=30, threshold=2.5)
    assert IqrParams() == IqrParams(window=30, multiplier=1.5)
    assert MovingAverageParams() == MovingAverageParams(window=20, threshold_pct=5.0)
    assert VolumeParams() == VolumeParams(window=20, threshold=3.0)
    assert (TechnicalParams().overbought, TechnicalParams().oversold) == (70.0, 30.0)
    forest = IsolationForestParams()
    assert (forest.contamination, forest.training_sessions) == (0.1, 252)


@pytest.mark.parametrize("method", ["zscore", "iqr", "moving_average", "volume", "technical"])
def test_a_calm_series_is_never_flagged(method):
    assert detect(method, market(zigzag(80))).empty


@pytest.mark.parametrize(
    "method,kind",
    [("zscore", "price_spike"), ("iqr", "price_spike"), ("moving_average", "trend_break_up")],
)
def test_a_jump_is_caught_on_its_day(method, kind):
    frame = market(with_jump(zigzag(80), 60, 8.0))
    found = detect(method, frame)
    assert found["timestamp"].tolist()[0] == frame["timestamp"][60]
    assert found["anomaly_type"].iloc[0] == kind
    assert found["method"].eq(method).all()


def test_zscore_baseline_excludes_the_day_itself():
    frame = market(with_jump(zigzag(80), 60, 8.0))
    row = detect("zscore", frame).iloc[0]
    details = json.loads(row["details"])
    previous = frame["return_pct"][30:60]  # the 30 returns before day 60
    assert details["baseline_mean"] == pytest.approx(previous.mean(), abs=1e-6)
    assert details["baseline_std"] == pytest.approx(previous.std(ddof=1), abs=1e-6)
    assert row["score"] == pytest.approx(abs(details["z"]))
    assert details["direction"] == "up" and details["threshold"] == 2.5


def test_zscore_drop_and_threshold():
    frame = market(with_jump(zigzag(80), 60, -8.0))
    assert detect("zscore", frame)["anomaly_type"].tolist() == ["price_drop"]
    assert detect("zscore", frame, threshold=100.0).empty


def test_iqr_score_is_distance_past_the_fence_over_iqr():
    frame = market(with_jump(zigzag(80), 60, 5.0))
    row = detect("iqr", frame).iloc[0]
    details = json.loads(row["details"])
    # returns alternate +0.5 / -0.5 (in %): Q1 = -0.5, Q3 = 0.5, IQR = 1, upper fence 2.0
    assert details["iqr"] == pytest.approx(1.0, abs=1e-3)
    assert details["bound"] == pytest.approx(2.0, abs=1e-3)
    assert row["score"] == pytest.approx(details["return_pct"] - details["bound"], abs=1e-6)


def test_iqr_with_a_flat_baseline_does_not_divide_by_zero():
    closes = np.r_[np.full(40, 100.0), 103.0, 103.0]
    found = detect("iqr", market(closes))
    assert found["timestamp"].tolist() == [market(closes)["timestamp"][40]]
    assert np.isfinite(found["score"]).all() and found["score"].iloc[0] == pytest.approx(3.0)


def test_moving_average_compares_with_the_previous_closes():
    closes = np.r_[np.full(25, 100.0), 106.0]
    row = detect("moving_average", market(closes)).iloc[0]
    details = json.loads(row["details"])
    assert details["moving_average"] == pytest.approx(100.0)  # 106 is not in its own average
    assert details["deviation_pct"] == pytest.approx(6.0)
    assert row["score"] == pytest.approx(1.2)


def test_volume_spike_and_drop():
    volumes = np.where(np.arange(60) % 2 == 0, 1.0e6, 1.2e6)
    volumes[45], volumes[55] = 8e6, 1e5
    found = detect("volume", market(zigzag(60), volumes))
    assert found["anomaly_type"].tolist() == ["volume_spike", "volume_drop"]
    assert found["timestamp"].tolist() == market(zigzag(60))["timestamp"][[45, 55]].tolist()


def test_rsi_entering_a_zone_is_reported_once():
    # 30 calm days, then a steady climb: RSI crosses 70 once and stays above it
    closes = np.r_[zigzag(30), zigzag(30)[-1] * np.cumprod(np.full(15, 1.01))]
    frame = market(closes)
    found = detect("technical", frame)
    rsi_rows = found[found["anomaly_type"].str.startswith("rsi")]
    assert rsi_rows["anomaly_type"].tolist() == ["rsi_overbought"]
    entry = frame.index[frame["timestamp"] == rsi_rows["timestamp"].iloc[0]][0]
    assert frame["rsi_14"][entry] > 70 >= frame["rsi_14"][entry - 1]
    assert (frame["rsi_14"][entry:] > 70).all()  # still overbought, but not reported again
    details = json.loads(rsi_rows["details"].iloc[0])
    assert details["streak_length"] >= 1 and details["previous_rsi"] <= 70


def test_bollinger_breach_uses_the_bands_before_the_day():
    closes = with_jump(zigzag(40), 35, 4.0)
    frame = market(closes)
    found = detect("technical", frame)
    breach = found[found["anomaly_type"] == "bollinger_breach_upper"]
    assert breach["timestamp"].iloc[0] == frame["timestamp"][35]
    details = json.loads(breach["details"].iloc[0])
    assert details["band"] == pytest.approx(frame["bb_upper"][34], abs=1e-6)
    assert breach["score"].iloc[0] == pytest.approx(
        (closes[35] - frame["bb_upper"][34])
        / ((frame["bb_upper"][34] - frame["bb_middle"][34]) / 2),
        abs=1e-6,
    )


def forest_market(seed: int = 0, n: int = 420) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    closes = 100 * np.cumprod(1 + rng.normal(0, 0.01, n))
    volumes = 1e6 * np.exp(rng.normal(0, 0.1, n))
    return market(closes, volumes, start="2024-01-02")


def test_isolation_forest_flags_an_extreme_day_and_is_reproducible():
    frame = forest_market()
    day = frame.index[frame["timestamp"] >= pd.Timestamp("2025-07-10")][0]
    frame.loc[day, ["return_pct", "volume_change_pct", "range_pct", "gap_pct"]] = [
        15.0,
        600.0,
        20.0,
        12.0,
    ]
    first = detect("isolation_forest", frame)
    assert frame["timestamp"][day] in set(first["timestamp"])
    row = first[first["timestamp"] == frame["timestamp"][day]].iloc[0]
    details = json.loads(row["details"])
    assert details["model_fitted_at"] == "2025-07-01"
    assert details["top_features"][0]["feature"] in {
        "volume_change_pct",
        "range_pct",
        "return_pct",
        "gap_pct",
    }
    assert 0 < row["score"] <= 1 and row["severity"] > 1
    pd.testing.assert_frame_equal(first, detect("isolation_forest", frame))
    assert not detect("isolation_forest", frame, seed=7).equals(first)


def test_isolation_forest_never_trains_on_the_days_it_scores():
    frame = forest_market()
    cut = pd.Timestamp("2025-07-15")
    assert refit_point(cut, "quarter") == pd.Timestamp("2025-07-01")
    changed = frame.copy()
    changed.loc[frame["timestamp"] > cut, "return_pct"] *= 50  # wild rows after the cut
    before, after = detect("isolation_forest", frame), detect("isolation_forest", changed)
    pd.testing.assert_frame_equal(
        before[before["timestamp"] <= cut], after[after["timestamp"] <= cut]
    )
    assert not before[before["timestamp"] > cut].equals(after[after["timestamp"] > cut])


def test_isolation_forest_needs_enough_history():
    assert detect("isolation_forest", forest_market(n=100)).empty


def two_symbols(stock: np.ndarray, index: np.ndarray) -> pd.DataFrame:
    return pd.concat([market(stock, symbol="AAPL"), market(index, symbol="SPY")], ignore_index=True)


def test_a_move_the_market_shares_is_not_market_relative():
    rng = np.random.default_rng(7)
    index = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 320)))
    stock = index * np.exp(np.cumsum(rng.normal(0, 0.004, 320)))  # beta 1, its own noise
    crash = with_jump(index, 300, -9.0), with_jump(stock, 300, -9.0)
    assert detect("market_relative", two_symbols(crash[1], crash[0])).empty
    alone = detect("market_relative", two_symbols(with_jump(stock, 300, -9.0), index))
    assert alone[["symbol", "anomaly_type"]].values.tolist() == [["AAPL", "relative_drop"]]
    assert alone["timestamp"].iloc[0] == market(stock)["timestamp"][300]
    assert json.loads(alone["details"].iloc[0])["benchmark"] == "SPY"


def test_without_its_benchmark_a_symbol_gets_no_market_relative_score():
    rng = np.random.default_rng(7)
    stock = with_jump(100 * np.exp(np.cumsum(rng.normal(0, 0.01, 320))), 300, -20.0)
    assert detect("market_relative", market(stock, symbol="AAPL")).empty
    frame = two_symbols(stock, stock)
    assert detect("market_relative", frame, sector_benchmarks="AAPL=XLK").empty


def test_every_row_carries_the_id_of_its_symbol_day_method_and_type():
    """Labels follow an anomaly through re-runs by this id: the rows' fast path must give
    exactly `anomaly_id` of each row's key."""
    from marketpulse_pipeline.detectors.base import anomaly_id

    found = detect("zscore", market(with_jump(zigzag(80), 60, 8.0)))
    assert len(found) > 0
    assert found["id"].tolist() == [
        anomaly_id(r.symbol, r.timestamp, r.method, r.anomaly_type) for r in found.itertuples()
    ]
