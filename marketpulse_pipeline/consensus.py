"""Consensus: how many methods flagged a symbol on a day, and how strongly, combined."""

from __future__ import annotations

import numpy as np
import pandas as pd

_DTYPES = {
    "symbol": "str",
    "timestamp": "datetime64[ns]",
    "votes": "int64",
    "methods": "object",
    "severity": "float64",
    "strongest_type": "str",
    "strongest_method": "str",
    "is_consensus": "bool",
}


def consensus(anomalies: pd.DataFrame, min_votes: int = 2) -> pd.DataFrame:
    """One row per symbol and day with at least one anomaly.

    `votes` counts distinct methods; `severity` sums each voting method's strongest severity
    (severity 1 = at that method's threshold), so more agreement and stronger signals both
    raise it; the strongest anomaly names the type. `is_consensus` is votes >= `min_votes`.
    """
    if anomalies.empty:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in _DTYPES.items()})
    ranked = anomalies.sort_values(
        ["symbol", "timestamp", "severity", "method", "anomaly_type"],
        ascending=[True, True, False, True, True],
        kind="stable",
    )
    per_method = ranked.drop_duplicates(
        ["symbol", "timestamp", "method"]
    )  # each method's strongest
    days = per_method.groupby(["symbol", "timestamp"], sort=True)
    result = days.agg(
        votes=("method", "size"),
        severity=("severity", "sum"),
        strongest_type=("anomaly_type", "first"),
        strongest_method=("method", "first"),
    ).reset_index()
    # each day's methods by name: the days in the same order, split where the next one starts
    named = per_method.sort_values(["symbol", "timestamp", "method"], kind="stable")["method"]
    starts = np.cumsum(result["votes"].to_numpy())[:-1]
    result["methods"] = [list(day) for day in np.split(named.to_numpy(dtype=object), starts)]
    result["is_consensus"] = result["votes"] >= min_votes
    return result[list(_DTYPES)].astype({k: v for k, v in _DTYPES.items() if v != "object"})
