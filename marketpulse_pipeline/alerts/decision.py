"""One probability per symbol-session from the signals' tail probabilities, and the alert flag.

The signals' probabilities are combined by their harmonic mean (Wilson, 2019): valid whatever
the dependence between the signals (a crash moves return, range and volume together), driven
by the smallest probabilities as a person reading the signals would be — one signal as rare as
one day in 10,000 is an alert, five mildly unusual ones are not — and, unlike the Cauchy
combination, not dragged back by a signal that is unusually *ordinary* (p near 1). A day is an alert
when the combined probability is at most `budget`, which is then about the share of ordinary
days that alert. A day on which at least `market_share` of the watchlist moved unusually in the
same direction is marked `market_wide`: one market event, not one alert per symbol.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

from marketpulse_pipeline.alerts.signals import (
    HISTORY_SESSIONS,
    LONG_BASELINE_SESSIONS,
    RETURN_HISTORY_SESSIONS,
    SIGNALS,
    signal_statistics,
)
from marketpulse_pipeline.calendar import session_offset
from marketpulse_pipeline.detectors.base import day_strings, json_rows, param, stable_id
from marketpulse_pipeline.detectors.calibration import CALIBRATION_SESSIONS, tail_probability

CALIBRATION_WINDOWS = {"return": LONG_BASELINE_SESSIONS}
"""A signal judged against its own past over more than CALIBRATION_SESSIONS: the ten-year
`return` against ten years of itself."""
CONTRIBUTES = 0.01
"""A signal at or below this probability is named among an alert's methods."""
MARKET_MOVE = 0.05
"""A symbol's return at or below this probability counts as moving with the market."""
MIN_MARKET_SYMBOLS = 4
MIN_MARKET_MOVERS = 3


STRICTER = 0.5
"""Each net false-positive label on a symbol's alerts multiplies its budget by this..."""
MAX_STRICTER = 3
"""...up to this many times: labels tighten a noisy symbol, they never silence it."""


@dataclass(frozen=True)
class AlertParams:
    budget: float = param(0.001, "Alert when the combined probability is at most this.")
    benchmark: str = param("SPY", "Symbol market_relative measures each return against.")
    market_share: float = param(
        0.5, "Share of the watchlist moving unusually together that makes a day market-wide."
    )


def harmonic_mean_p(probabilities: np.ndarray) -> np.ndarray:
    """Per row of an (n, k) array, the harmonic mean of its finite probabilities (at most 1)."""
    finite = np.isfinite(probabilities)
    count = finite.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        inverse = np.where(finite, 1 / np.maximum(probabilities, 1e-300), 0.0).sum(axis=1)
        combined = np.minimum(count / inverse, 1.0)
    return np.where(count > 0, combined, np.nan)


def history_start(day: dt.date) -> dt.date:
    """The first session whose prices the scores of `day` read (signals, then calibration)."""
    return session_offset(
        day,
        -max(
            CALIBRATION_SESSIONS + HISTORY_SESSIONS,
            CALIBRATION_WINDOWS["return"] + RETURN_HISTORY_SESSIONS,
        ),
    )


def alert_scores(
    prices: pd.DataFrame,
    params: AlertParams,
    score: np.ndarray | None = None,
    labels: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Per symbol-session of `prices` (symbol, timestamp, OHLCV; sorted by symbol, then day):
    each signal's statistic and tail probability (`p_<signal>`), the combined `p_value`,
    `is_alert`, `market_wide` and the `methods` behind it. Only the rows of `score` (a mask;
    default all) get probabilities: the others are history. `labels` (symbol, labelled_on,
    label) tighten the budget of symbols whose alerts people marked false positive."""
    scores = signal_statistics(prices, params.benchmark)
    keys = scores["symbol"].to_numpy()
    for name in SIGNALS:
        window = CALIBRATION_WINDOWS.get(name, CALIBRATION_SESSIONS)
        scores[f"p_{name}"] = tail_probability(
            keys, scores[name].to_numpy(), window=window, rows=score
        )
    probabilities = scores[[f"p_{name}" for name in SIGNALS]].to_numpy()
    scores["p_value"] = harmonic_mean_p(probabilities)
    scores["is_alert"] = is_alert(scores, params, labels)
    scores["market_wide"] = _market_wide(scores, params.market_share)
    contributes = probabilities <= CONTRIBUTES
    names = np.array(SIGNALS, dtype=object)
    methods: list[list[str]] = [[] for _ in range(len(scores))]
    for row in np.flatnonzero(contributes.any(axis=1)):  # the few rows some signal stands out
        methods[row] = list(names[contributes[row]])
    scores["methods"] = methods
    return scores


def is_alert(
    scores: pd.DataFrame, params: AlertParams, labels: pd.DataFrame | None = None
) -> np.ndarray:
    """Whether each row's `p_value` is within its symbol's budget that day (labels tighten)."""
    budget = params.budget * label_factor(scores, labels)
    return (scores["p_value"] <= budget).to_numpy(dtype=bool)


def label_factor(scores: pd.DataFrame, labels: pd.DataFrame | None) -> np.ndarray:
    """Per row, how much stricter the symbol's budget is that day: STRICTER to the power of its
    false-positive labels less its confirmed ones (0 to MAX_STRICTER), counting only labels
    given before the day — a label on day L changes nothing up to L (point in time)."""
    factor = np.ones(len(scores))
    if labels is None or labels.empty:
        return factor
    vote = labels["label"].map({"false_positive": 1, "confirmed": -1}).fillna(0)
    days = scores["timestamp"].to_numpy(dtype="datetime64[ns]")
    for symbol, given in labels.assign(vote=vote).groupby("symbol"):
        rows = np.flatnonzero(scores["symbol"].to_numpy() == symbol)
        given = given.sort_values("labelled_on")
        net = np.concatenate([[0], given["vote"].cumsum().to_numpy()])
        on = pd.to_datetime(given["labelled_on"]).to_numpy(dtype="datetime64[ns]")
        before = np.searchsorted(on, days[rows], side="left")  # labels strictly before the day
        factor[rows] = STRICTER ** np.clip(net[before], 0, MAX_STRICTER)
    return factor


def _market_wide(scores: pd.DataFrame, share: float) -> pd.Series:
    """Whether at least `share` of the symbols scored on the day moved unusually, one way."""
    moved = scores["p_return"] <= MARKET_MOVE
    day = (
        scores.assign(
            scored=scores["p_return"].notna(),
            down=moved & (scores["return_pct"] < 0),
            up=moved & (scores["return_pct"] > 0),
        )
        .groupby("timestamp")[["scored", "down", "up"]]
        .transform("sum")
    )
    movers = np.maximum(day["down"], day["up"])
    return (
        (movers >= share * day["scored"])
        & (movers >= MIN_MARKET_MOVERS)
        & (day["scored"] >= MIN_MARKET_SYMBOLS)
    )


def alert_table(scores: pd.DataFrame) -> pd.DataFrame:
    """`alert_scores` rows as the table stores them: the numbers behind an alert as JSON."""
    scores = scores.reset_index(drop=True)
    table = scores[["symbol", "timestamp", "p_value", "is_alert", "market_wide", "return_pct"]]
    table = table.assign(**{f"p_{name}": scores[f"p_{name}"] for name in SIGNALS})
    alerted = scores["is_alert"].to_numpy(dtype=bool)
    statistics = json_rows(
        {name: scores.loc[alerted, name].to_numpy() for name in SIGNALS}, int(alerted.sum())
    )
    details = np.full(len(scores), None, dtype=object)
    details[alerted] = [f'{{"statistic": {statistic}}}' for statistic in statistics]
    ids = [
        stable_id(symbol, day, "alert", "alert")  # anomaly_id's key, the days formatted at once
        for symbol, day in zip(table["symbol"], day_strings(table["timestamp"]), strict=True)
    ]
    return table.assign(
        methods=scores["methods"],
        details=pd.Series(details, dtype="str"),
        id=pd.Series(ids, dtype="int64"),
    )
