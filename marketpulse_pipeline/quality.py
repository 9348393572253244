"""How good each method is against the synthetic source's ground truth.

A detection (a symbol and session a method flagged) is a true positive when it falls within
`tolerance` sessions of an injected anomaly of that symbol — of any session the anomaly lasts,
for a multi-day trend break. An injected anomaly is found when a detection falls in that span.
Precision = true positives / detections, recall = anomalies found / anomalies injected.
Per kind, recall counts that kind's anomalies, and precision is that kind's true positives over
themselves and the false positives (detections matching no anomaly at all): a detection of
another planted kind is neither right nor wrong about this one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from marketpulse_pipeline.calendar import nyse

QUALITY_COLUMNS = [
    "method",
    "kind",
    "detections",
    "events",
    "true_positives",
    "events_found",
    "precision",
    "recall",
    "f1",
    "flag_rate",
    "labelled",
    "false_positive_share",
    *(f"recall_at_{name}" for name in ("0_5pct", "1pct", "2pct")),
]
BUDGETS = {"0_5pct": 0.005, "1pct": 0.01, "2pct": 0.02}
"""Shares of symbol-days: recall of each method's strongest detections within each."""


def _session_number(days: pd.Series) -> np.ndarray:
    """Sessions as consecutive integers, so "within one session" skips weekends and holidays."""
    return nyse().sessions.searchsorted(pd.DatetimeIndex(days).as_unit("ns"))


def detection_quality(
    detections: pd.DataFrame,
    events: pd.DataFrame,
    methods: Sequence[str],
    symbol_days: int,
    labels: pd.DataFrame | None = None,
    tolerance: int = 1,
    ranked: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Quality per method (and per kind, plus kind 'all') of `detections` (symbol, timestamp,
    method) against `events` (symbol, timestamp, kind, duration), over `symbol_days` evaluated.

    `labels` (method, label) adds the share of labelled anomalies users marked false positive.
    `ranked` (symbol, timestamp, method, strength: larger = stronger; the detections, or every
    scored symbol-day of a method that scores them all) adds the recall of each method's
    strongest `BUDGETS` shares of `symbol_days`.
    """
    flagged = detections[["symbol", "timestamp", "method"]].drop_duplicates().copy()
    flagged["session"] = _session_number(flagged["timestamp"])
    truth, covered = _covered(events, tolerance)
    matches = flagged.merge(covered, on=["symbol", "session"])
    at_budget = _recall_at_budgets(ranked, truth, covered, symbol_days)

    rows = []
    for method in methods:
        own = flagged[flagged["method"] == method]
        hits = matches[matches["method"] == method]
        label_rows = labels[labels["method"] == method] if labels is not None else pd.DataFrame()
        labelled = len(label_rows)
        false_share = (
            float((label_rows["label"] == "false_positive").mean()) if labelled else np.nan
        )
        false_positives = len(own) - hits.drop_duplicates(["symbol", "timestamp"]).shape[0]
        for kind in ["all", *sorted(truth["kind"].unique())]:
            of_kind = hits if kind == "all" else hits[hits["kind"] == kind]
            events_of_kind = truth if kind == "all" else truth[truth["kind"] == kind]
            true_positives = of_kind.drop_duplicates(["symbol", "timestamp"]).shape[0]
            found = of_kind["event"].nunique()
            judged = true_positives + false_positives
            precision = true_positives / judged if judged else np.nan
            recall = found / len(events_of_kind) if len(events_of_kind) else np.nan
            rows.append(
                {
                    "method": method,
                    "kind": kind,
                    "detections": len(own),
                    "events": len(events_of_kind),
                    "true_positives": true_positives,
                    "events_found": found,
                    "precision": precision,
                    "recall": recall,
                    "f1": _f1(precision, recall),
                    "flag_rate": len(own) / symbol_days if symbol_days else np.nan,
                    "labelled": labelled,
                    "false_positive_share": false_share,
                    **at_budget.get((method, kind), {}),
                }
            )
    return pd.DataFrame(rows, columns=QUALITY_COLUMNS)


def _covered(events: pd.DataFrame, tolerance: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The events numbered (`event`), and every (symbol, session) each one's tolerance span
    covers — so matching detections is a join, not a cross join."""
    truth = events.reset_index(drop=True).rename_axis("event").reset_index()
    first = _session_number(truth["timestamp"]) - tolerance
    span = (truth["duration"] + 2 * tolerance).to_numpy()
    covered = truth.loc[np.repeat(truth.index, span), ["event", "symbol", "kind"]]
    covered["session"] = np.repeat(first, span) + covered.groupby("event").cumcount().to_numpy()
    return truth, covered


def explained(detections: pd.DataFrame, events: pd.DataFrame, tolerance: int = 1) -> np.ndarray:
    """Per detection (symbol, timestamp), whether an event lies within `tolerance` sessions."""
    _, covered = _covered(events, tolerance)
    keys = covered[["symbol", "session"]].drop_duplicates()
    asked = pd.DataFrame(
        {
            "symbol": detections["symbol"].to_numpy(),
            "session": _session_number(detections["timestamp"]),
        }
    )
    return asked.merge(keys, how="left", indicator=True)["_merge"].eq("both").to_numpy()


def _recall_at_budgets(
    ranked: pd.DataFrame | None, truth: pd.DataFrame, covered: pd.DataFrame, symbol_days: int
) -> dict[tuple[str, str], dict[str, float]]:
    """Per (method, kind), the recall of the method's strongest symbol-days within each budget:
    how well its ranking finds the anomalies, whatever share of days it flags itself."""
    if ranked is None or ranked.empty or not symbol_days:
        return {}
    strongest = (
        ranked.groupby(["method", "symbol", "timestamp"], as_index=False)["strength"]
        .max()
        .sort_values(["method", "strength"], ascending=[True, False], kind="stable")
    )
    strongest["rank"] = strongest.groupby("method").cumcount()
    strongest["session"] = _session_number(strongest["timestamp"])
    hits = strongest.merge(covered, on=["symbol", "session"])
    kinds = {"all": truth, **{k: truth[truth["kind"] == k] for k in truth["kind"].unique()}}
    out: dict[tuple[str, str], dict[str, float]] = {}
    for name, share in BUDGETS.items():
        within = hits[hits["rank"] < round(share * symbol_days)]
        for method in strongest["method"].unique():
            found = within[within["method"] == method]
            for kind, events in kinds.items():
                of_kind = found if kind == "all" else found[found["kind"] == kind]
                recall = of_kind["event"].nunique() / len(events) if len(events) else np.nan
                out.setdefault((method, kind), {})[f"recall_at_{name}"] = recall
    return out


def _f1(precision: float, recall: float) -> float:
    if np.isnan(precision) or np.isnan(recall) or precision + recall == 0:
        return np.nan if np.isnan(precision) or np.isnan(recall) else 0.0
    return 2 * precision * recall / (precision + recall)
