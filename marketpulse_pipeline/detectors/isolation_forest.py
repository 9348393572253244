"""Isolation Forest: days whose combination of features is unusual for the symbol.

One model per symbol and refit point. Refit points are fixed sessions of the trading calendar
(the first session of each quarter by default); the model for a refit point is trained on the
`training_sessions` sessions before it, and it scores every day up to the next refit point. So
which model scores day D depends only on D — never on how a run was chunked — and no model
ever sees a row from the days it scores. A day's tail probability ranks its score among the
model's scores of its training sessions: the year before, as for the other methods.

Two engines grow the same forest (Liu, Ting & Zhou 2008: axis-parallel random splits on
256-row subsamples, depth limit log2 of that, the path-length score 2^(-E[h]/c(n))): `isotree`
(C++, some 40 times faster to fit) by default, scikit-learn on request. Their random trees
differ, so their scores agree in rank, not bit for bit; each is deterministic for a seed.
"""

import datetime as dt
import hashlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from functools import cache
from importlib.metadata import version as package_version

import numpy as np
import pandas as pd

from marketpulse_pipeline.calendar import nyse, session_offset
from marketpulse_pipeline.detectors.base import (
    Detector,
    ModelCache,
    anomaly_rows,
    object_array,
    param,
)
from marketpulse_pipeline.detectors.calibration import METHOD_TAIL_SESSIONS, probability_among
from marketpulse_pipeline.features.rolling import group_bounds, in_threads

FEATURES = ("return_pct", "volume_change_pct", "range_pct", "gap_pct", "rsi_14", "bb_percent_b")
REFIT_PERIODS = {"month": "M", "quarter": "Q", "year": "Y"}
ENGINES = ("isotree", "scikit-learn")
SUBSAMPLE = 256
"""Rows each tree is grown on: the paper's ψ, and both engines' default."""
MODEL_FORMAT = 1
"""Part of every model's version: raise it with any change to how `fit` builds a model, so a
kept model from older code is refitted, never reused."""


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
    engine: str = param(
        "isotree",
        "isotree (C++, the default) or scikit-learn: the same algorithm, other random trees.",
    )


@dataclass(frozen=True)
class FittedModel:
    """A forest and what scoring with it needs: the training rows' standardization, their own
    scores (a day's tail probability ranks among them) and the flagging threshold."""

    version: str
    """What it was fitted from: the engine and its release, the parameters, the training rows."""
    mean: np.ndarray
    std: np.ndarray
    training_scores: np.ndarray
    threshold: float
    forest: object = field(repr=False)

    def standardized(self, values: np.ndarray) -> np.ndarray:
        return (values - self.mean) / self.std

    def scores(self, values: np.ndarray) -> np.ndarray:
        """The paper's anomaly score in (0, 1] of raw feature rows (0.5: an ordinary row)."""
        z = self.standardized(values)
        if hasattr(self.forest, "score_samples"):  # scikit-learn's is the score negated
            return -self.forest.score_samples(z)
        return self.forest.predict(z)


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


def model_version(training: np.ndarray, params: IsolationForestParams) -> str:
    """Names everything a model depends on, so a change of any (a restated bar too) refits."""
    if params.engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {params.engine!r}")
    settings = sorted((k, v) for k, v in asdict(params).items() if k != "top_features")
    digest = hashlib.blake2b(digest_size=16)
    digest.update(
        f"{MODEL_FORMAT}|{SUBSAMPLE}|{FEATURES}|{_release(params.engine)}|{settings}".encode()
    )
    digest.update(np.ascontiguousarray(training, dtype="float64").tobytes())
    return digest.hexdigest()


@cache
def _release(engine: str) -> str:
    return f"{engine} {package_version(engine)}"


def fit(training: np.ndarray, params: IsolationForestParams, version: str) -> FittedModel:
    """A forest on complete raw feature rows, standardized by their own mean and deviation."""
    mean, std = training.mean(axis=0), training.std(axis=0)
    std[std == 0] = 1.0
    z = (training - mean) / std
    if params.engine == "isotree":
        from isotree import IsolationForest  # only here: read commands never load an engine

        forest: object = IsolationForest(
            ndim=1,  # axis-parallel splits: the original algorithm, not the extended one
            sample_size=min(SUBSAMPLE, len(z)),
            ntrees=params.n_estimators,
            missing_action="fail",
            penalize_range=False,
            nthreads=1,
            random_seed=params.seed,
        ).fit(z)
    else:
        from sklearn.ensemble import IsolationForest as SklearnForest

        forest = SklearnForest(
            n_estimators=params.n_estimators,
            max_samples=min(SUBSAMPLE, len(z)),
            random_state=params.seed,
        ).fit(z)
    unscored = FittedModel(version, mean, std, np.empty(0), np.nan, forest)
    trained = unscored.scores(training)
    # contamination, as both engines mean it: that share of the training rows scores above it
    threshold = float(np.quantile(trained, 1 - params.contamination))
    return FittedModel(version, mean, std, trained, threshold, forest)


@dataclass(frozen=True)
class _Model:
    """One model's work: the symbol's rows it scores and the rows it is trained on."""

    symbol: str
    point: pd.Timestamp
    scored: np.ndarray
    trained: np.ndarray


def detect(
    market: pd.DataFrame, params: IsolationForestParams, models: ModelCache | None = None
) -> pd.DataFrame:
    """Flag the window's days; `models` lends stored models and collects the ones used."""
    models = models if models is not None else ModelCache()
    points = refit_points(params.refit_every).to_numpy()
    stamps = market["timestamp"].to_numpy()
    fitted_at = points[points.searchsorted(stamps, side="right") - 1]
    values = market[list(FEATURES)].to_numpy(dtype="float64")
    complete = np.isfinite(values).all(axis=1)
    in_window = market["in_window"].to_numpy(dtype=bool)
    work = list(_work(market["symbol"].to_numpy(), stamps, fitted_at, complete, in_window, params))
    versions = [model_version(values[w.trained], params) for w in work]
    stored = [models.get(w.symbol, w.point, v) for w, v in zip(work, versions, strict=True)]

    newest = {w.symbol: i for i, w in enumerate(work)}  # points ascend within a symbol
    z = np.full(values.shape, np.nan)
    scores, p_values, thresholds = (np.full(len(market), np.nan) for _ in range(3))

    def fit_and_score(i: int) -> FittedModel | None:
        """Fill model i's rows; return it if it is its symbol's newest (the one kept)."""
        model = stored[i] or fit(values[work[i].trained], params, versions[i])
        rows = work[i].scored
        z[rows] = model.standardized(values[rows])
        scores[rows] = model.scores(values[rows])
        p_values[rows] = probability_among(
            scores[rows],
            np.broadcast_to(model.training_scores, (len(rows), len(model.training_scores))),
            tail=METHOD_TAIL_SESSIONS,
        )
        thresholds[rows] = model.threshold
        return model if newest[work[i].symbol] == i else None

    # the engines release the GIL; each model writes its own rows; only the newest are kept
    kept = in_threads(fit_and_score, range(len(work)))
    models.fitted += sum(model is None for model in stored)
    for w, model in zip(work, kept, strict=True):
        if model is not None:
            models.keep(w.symbol, w.point, model)
    flagged = scores > thresholds
    return anomaly_rows(
        market,
        flagged,
        "isolation_forest",
        "multivariate",
        score=scores,
        severity=scores / thresholds,
        p_value=p_values,
        details={
            "score": scores,
            "threshold": thresholds,
            "model_fitted_at": np.datetime_as_string(fitted_at, unit="D").astype(object),
            "top_features": _standouts(values, z, flagged & in_window, params.top_features),
        },
    )


def _work(
    symbols: np.ndarray,
    stamps: np.ndarray,
    fitted_at: np.ndarray,
    complete: np.ndarray,
    in_window: np.ndarray,
    params: IsolationForestParams,
) -> Iterator[_Model]:
    """Each (symbol, refit point) with complete rows to score and enough to train on."""
    for group in group_bounds(symbols):
        window, mine, own = in_window[group] & complete[group], fitted_at[group], stamps[group]
        for point in pd.unique(mine[window]):
            first = np.datetime64(
                session_offset(pd.Timestamp(point).date(), -params.training_sessions)
            )
            trained = np.flatnonzero(complete[group] & (own >= first) & (own < point))
            if len(trained) >= params.min_training_rows:
                scored = np.flatnonzero(window & (mine == point))
                yield _Model(
                    str(symbols[group.start]),
                    pd.Timestamp(point),
                    scored + group.start,
                    trained + group.start,
                )


def _standouts(values: np.ndarray, z: np.ndarray, rows: np.ndarray, top: int) -> np.ndarray:
    """Per flagged row, its `top` features furthest from the training mean, in deviations."""
    standout: list[object] = [None] * len(values)
    chosen = np.flatnonzero(rows)
    order = np.argsort(-np.abs(z[chosen]), axis=1, kind="stable")[:, :top]
    for row, features in zip(chosen, order, strict=True):
        standout[row] = [
            {"feature": FEATURES[i], "value": values[row, i], "z": z[row, i]} for i in features
        ]
    return object_array(standout)


DETECTOR = Detector(
    method="isolation_forest",
    params=IsolationForestParams,
    detect=detect,
    history_start=history_start,
    description=(
        "Multivariate Isolation Forest over return, volume change, range, gap, RSI and %b,"
        " standardized on the training window; one model per symbol and refit point (first"
        " session of each quarter), trained on the 252 sessions before it with a fixed seed"
        " (isotree by default, scikit-learn by `engine`); `contamination` sets the threshold"
        " from the training scores. Type multivariate, score = normalized anomaly score (0..1);"
        " details list the features that stood out. Each symbol's newest model is kept in"
        " `detector_models`, so a daily run scores without refitting."
    ),
    anomaly_types=("multivariate",),
    keeps_models=True,
)
