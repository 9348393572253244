"""The Isolation Forest's two engines and its kept models.

The engines grow different random trees, so they are compared as the issue asks: rank
correlation of the scores each gives the same rows, and overlap of the days each flags. A kept
model must give exactly the rows a fresh fit gives, and anything it was fitted from changing
must refit it.
"""

import datetime as dt
import itertools
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from marketpulse_pipeline.calendar import SessionWindow
from marketpulse_pipeline.detectors.base import ModelCache
from marketpulse_pipeline.detectors.isolation_forest import (
    FEATURES,
    IsolationForestParams,
    detect,
    fit,
    model_version,
    refit_points,
)
from marketpulse_pipeline.features.indicators import compute_features
from marketpulse_pipeline.sources.synthetic import SyntheticSource

SYMBOLS = ["AAPL", "TSLA", "SPY"]


@pytest.fixture(scope="module")
def market() -> pd.DataFrame:
    """Three synthetic symbols (planted anomalies included), 2022-2025 scored."""
    bars = SyntheticSource().bars(
        SYMBOLS, SessionWindow(dt.date(2021, 1, 4), dt.date(2025, 12, 31))
    )
    frame = bars.merge(compute_features(bars), on=["symbol", "timestamp"])
    return frame.assign(in_window=frame["timestamp"] >= pd.Timestamp("2022-01-01"))


def flagged_days(found: pd.DataFrame) -> set[tuple[str, pd.Timestamp]]:
    return set(zip(found["symbol"], found["timestamp"], strict=True))


def test_the_engines_rank_the_same_rows_alike(market):
    """Each refit point's model from either engine, scoring the quarter it serves: median rank
    correlation 0.95 on the watchlist (min 0.81); here the bar is set below what was measured."""
    values = market[list(FEATURES)].to_numpy("float64")
    complete = np.isfinite(values).all(axis=1)
    stamps = market["timestamp"].to_numpy()
    points = refit_points("quarter")
    points = points[(points >= "2022-01-01") & (points < "2025-10-01")]
    correlations = []
    for symbol in SYMBOLS:
        own = (market["symbol"] == symbol).to_numpy() & complete
        for point, following in itertools.pairwise(points):
            train = own & (stamps < point) & (stamps >= point - pd.Timedelta(days=365))
            scored = own & (stamps >= point) & (stamps < following)
            by_engine = [
                fit(values[train], IsolationForestParams(engine=engine), "").scores(values[scored])
                for engine in ("isotree", "scikit-learn")
            ]
            correlations.append(spearmanr(*by_engine).statistic)
    assert np.median(correlations) > 0.9
    assert min(correlations) > 0.7


def test_the_engines_flag_mostly_the_same_days(market):
    """Measured on the nine watchlist symbols 2021-2025: Jaccard 0.74, and 84 % of the days
    scikit-learn flags are flagged by isotree too."""
    ours = flagged_days(detect(market, IsolationForestParams()))
    theirs = flagged_days(detect(market, IsolationForestParams(engine="scikit-learn")))
    assert len(ours & theirs) / len(ours | theirs) > 0.6
    assert len(ours & theirs) / len(theirs) > 0.75
    # the same contamination: both flag about a tenth of the scored days
    assert len(ours) == pytest.approx(len(theirs), rel=0.15)


def test_each_engine_is_deterministic_and_the_seed_matters(market):
    half_year = market.assign(in_window=market["timestamp"] >= pd.Timestamp("2025-07-01"))
    for engine in ("isotree", "scikit-learn"):
        params = IsolationForestParams(engine=engine)
        first = detect(half_year, params)
        pd.testing.assert_frame_equal(first, detect(half_year, params))
        assert not first.equals(detect(half_year, IsolationForestParams(engine=engine, seed=7)))


def stored(models: ModelCache) -> ModelCache:
    """A new cache holding what `models` would write: the next run's view of the table."""
    return ModelCache(
        {symbol: (point, version, blob) for symbol, point, version, blob in models.to_store()}
    )


def test_a_kept_model_scores_exactly_as_a_fresh_fit(market):
    params = IsolationForestParams()
    first = ModelCache()
    fresh = detect(market, params, first)
    assert first.fitted == len(SYMBOLS) * 16 and first.reused == 0
    assert [row[0] for row in first.to_store()] == sorted(SYMBOLS)  # each symbol's newest only
    # the next evening: only the last quarter is scored, with the kept models
    latest = market.assign(in_window=market["timestamp"] >= pd.Timestamp("2025-12-01"))
    again = stored(first)
    reused = detect(latest, params, again)
    assert (again.fitted, again.reused) == (0, len(SYMBOLS))
    assert again.to_store() == []  # nothing new to write
    pd.testing.assert_frame_equal(
        reused.reset_index(drop=True),
        fresh[fresh["timestamp"] >= pd.Timestamp("2025-12-01")].reset_index(drop=True),
    )


@pytest.mark.parametrize(
    "change",
    ["a restated bar in the training window", "another engine", "another contamination"],
)
def test_anything_a_model_was_fitted_from_changing_refits_it(market, change):
    params = IsolationForestParams()
    latest = market.assign(in_window=market["timestamp"] >= pd.Timestamp("2025-12-01"))
    first = ModelCache()
    detect(latest, params, first)
    if change == "a restated bar in the training window":
        row = latest.index[(latest["symbol"] == "TSLA") & (latest["timestamp"] == "2025-05-01")]
        latest = latest.copy()
        latest.loc[row, "return_pct"] += 1.0
    elif change == "another engine":
        params = IsolationForestParams(engine="scikit-learn")
    else:
        params = IsolationForestParams(contamination=0.05)
    again = stored(first)
    detect(latest, params, again)
    refitted = 1 if change.startswith("a restated") else len(SYMBOLS)
    assert (again.fitted, again.reused) == (refitted, len(SYMBOLS) - refitted)
    assert len(again.to_store()) == refitted  # the stale ones are replaced


def test_a_rerun_of_an_old_window_keeps_the_newer_model(market):
    params = IsolationForestParams()
    newest = ModelCache()
    detect(
        market.assign(in_window=market["timestamp"] >= pd.Timestamp("2025-12-01")), params, newest
    )
    old = stored(newest)
    detect(market.assign(in_window=market["timestamp"].dt.year == 2023), params, old)
    assert old.fitted == len(SYMBOLS) * 4 and old.to_store() == []


def test_the_version_names_the_data_and_parameters():
    rows = np.random.default_rng(0).normal(size=(200, len(FEATURES)))
    params = IsolationForestParams()
    assert model_version(rows, params) == model_version(rows.copy(), params)
    assert model_version(rows, params) != model_version(rows[1:], params)
    assert model_version(rows, params) != model_version(rows, IsolationForestParams(seed=1))
    # the listed features do not change the model
    assert model_version(rows, params) == model_version(rows, IsolationForestParams(top_features=1))
    with pytest.raises(ValueError, match="engine must be one of"):
        model_version(rows, IsolationForestParams(engine="xgboost"))


def test_neither_engine_warns_on_a_short_training_window():
    rows = np.random.default_rng(0).normal(size=(130, len(FEATURES)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for engine in ("isotree", "scikit-learn"):
            fit(rows, IsolationForestParams(engine=engine), "")


def test_a_kept_model_from_older_fitting_code_or_unreadable_is_refitted(market, monkeypatch):
    from marketpulse_pipeline.detectors import isolation_forest

    params = IsolationForestParams()
    latest = market.assign(in_window=market["timestamp"] >= pd.Timestamp("2025-12-01"))
    first = ModelCache()
    detect(latest, params, first)
    monkeypatch.setattr(isolation_forest, "MODEL_FORMAT", isolation_forest.MODEL_FORMAT + 1)
    upgraded = stored(first)
    detect(latest, params, upgraded)
    assert (upgraded.fitted, upgraded.reused) == (len(SYMBOLS), 0)
    monkeypatch.undo()
    garbled = ModelCache(
        {s: (p, v, b"not a model") for s, (p, v, _) in stored(first).stored.items()}
    )
    detect(latest, params, garbled)
    assert (garbled.fitted, garbled.reused) == (len(SYMBOLS), 0)
