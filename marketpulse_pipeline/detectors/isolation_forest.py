"""Isolation Forest: days whose combination of features is unusual for the symbol.

One model per symbol and refit point. Refit points are fixed sessions of the trading calendar
(the first session of each quarter by default); the model for a refit point is trained on the
`training_sessions` sessions before it, and it scores every day up to the next refit point. So
which model scores day D depends only on D — never on how a run was chunked — and no model
ever sees a row from the days it scores. A day's tail probability ranks its score among the
model's scores of its training sessions: the year before, as for the other methods.
"""

import datetime as dt
from dataclasses import dataclass
from functools import cache

import numpy as np
import pandas as pd

from marketpulse_pipeline.calendar import nyse, session_offset
from marketpulse_pipeline.detectors.base import Detector, anomaly_rows, object_array, param
from marketpulse_pipeline.detectors.calibration import METHOD_TAIL_SESSIONS, probability_among

FEATURES = ("return_pct", "volume_change_pct", "range_pct", "gap_pct", "rsi_14", "bb_percent_b")
REFIT_PERIODS = {"month": "M", "quarter": "Q", "year": "Y"}


@dataclass(frozen=True)
class IsolationForestParams:
    contamination: float = param(
        0.1, "Share of training rows above the flagging threshold; only sets that threshold."
    )
    training_sessions: int = param(252, "Sessions before a refit point the model is trained on.")
    min_training_rows: int = param(
        126, "Fewer complete rows than this (at the start of a history) means no model yet."
    )
    refit_every: str = param(
        "quarter", "month, quarter or year: the first session of each is a refit point."
    )
    n_estimators: int = param(100, "Trees per model.")
    seed: int = param(42, "Random seed of every model: same data, same forest.")
    top_features: int = param(
        3, "Features listed in the details of a flagged day, most unusual first."
    )


@cache
def refit_points(every: str) -> pd.DatetimeIndex:
    """The first NYSE session of each month, quarter or year."""
    if every not in REFIT_PERIODS:
        raise ValueError(f"refit_every must be one of {', '.join(REFIT_PERIODS)}, not {every!r}")
    sessions = pd.Series(nyse().sessions)
    periods = sessions.dt.to_period(REFIT_PERIODS[every])
    return pd.DatetimeIndex(sessions[periods != periods.shift()]).as_unit("ns")


def refit_point(day: pd.Timestamp | dt.date, every: str) -> pd.Timestamp:
    points = refit_points(every)
    return points[points.searchsorted(pd.Timestamp(day), side="right") - 1]


def history_start(params: IsolationForestParams, start: dt.date) -> dt.date:
    return session_offset(refit_point(start, params.refit_every).date(), -params.training_sessions)


def detect(market: pd.DataFrame, params: IsolationForestParams) -> pd.DataFrame:
    from sklearn.ensemble import IsolationForest  # only here: read commands never load it

    points = refit_points(params.refit_every)
    stamps = market["timestamp"].to_numpy()
    fitted_at = points[points.searchsorted(stamps, side="right") - 1]
    scores = np.full(len(market), np.nan)
    p_values = np.full(len(market), np.nan)
    thresholds = np.full(len(market), np.nan)
    standout: list[object] = [None] * len(market)
    values = market[list(FEATURES)].to_numpy(dtype="float64")
    complete = np.isfinite(values).all(axis=1)
    in_window = market["in_window"].to_numpy(dtype=bool)
    symbols = market["symbol"].to_numpy()

    for symbol in pd.unique(symbols[in_window]):
        own = symbols == symbol
        for point in pd.unique(fitted_at[own & in_window]):
            first = pd.Timestamp(session_offset(point.date(), -params.training_sessions))
            train = own & complete & (stamps >= first) & (stamps < point)
            if train.sum() < params.min_training_rows:
                continue
            mean, std = values[train].mean(axis=0), values[train].std(axis=0)
            std[std == 0] = 1.0
            model = IsolationForest(
                n_estimators=params.n_estimators,
                contamination=params.contamination,
                random_state=params.seed,
            ).fit((values[train] - mean) / std)
            rows = np.flatnonzero(own & in_window & complete & (fitted_at == point))
            if len(rows) == 0:
                continue
            z = (values[rows] - mean) / std
            scores[rows] = -model.score_samples(z)  # the paper's anomaly score, in (0, 1]
            trained = -model.score_samples((values[train] - mean) / std)
            p_values[rows] = probability_among(
                scores[rows],
                np.broadcast_to(trained, (len(rows), len(trained))),
                tail=METHOD_TAIL_SESSIONS,
            )
            thresholds[rows] = -model.offset_
            for row, row_z in zip(rows, z, strict=True):
                order = np.argsort(-np.abs(row_z), kind="stable")[: params.top_features]
                standout[row] = [
                    {"feature": FEATURES[i], "value": values[row, i], "z": row_z[i]} for i in order
                ]
    return anomaly_rows(
        market,
        scores > thresholds,
        "isolation_forest",
        "multivariate",
        score=scores,
        severity=scores / thresholds,
        p_value=p_values,
        details={
            "score": scores,
            "threshold": thresholds,
            "model_fitted_at": np.array([str(p.date()) for p in fitted_at], dtype=object),
            "top_features": object_array(standout),
        },
    )


DETECTOR = Detector(
    method="isolation_forest",
    params=IsolationForestParams,
    detect=detect,
    history_start=history_start,
    description=(
        "Multivariate Isolation Forest over return, volume change, range, gap, RSI and %b,"
        " standardized on the training window; one model per symbol and refit point (first"
        " session of each quarter), trained on the 252 sessions before it with a fixed seed;"
        " `contamination` sets the threshold from the training scores. Type multivariate,"
        " score = normalized anomaly score (0..1); details list the features that stood out."
    ),
    anomaly_types=("multivariate",),
)
