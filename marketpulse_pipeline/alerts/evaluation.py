"""How good the alert flag is, measured: `python -m marketpulse_pipeline.alerts.evaluation`.

- On the synthetic market: the watchlist over years of history, every alert scored against the
  planted anomalies (`quality.detection_quality`: precision, recall and F1 per kind).
- On real markets: the S&P 500 and the NASDAQ Composite, 1999-2018, as shipped inside the
  `arch` package (`pip install -e '.[evaluation]'`; no download), against well-known market
  events: how many the flag catches (on the day or the next session), on what share of days.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Sequence

import numpy as np
import pandas as pd

from marketpulse_pipeline.alerts.decision import AlertParams, alert_scores, is_alert
from marketpulse_pipeline.calendar import SessionWindow
from marketpulse_pipeline.quality import detection_quality, explained
from marketpulse_pipeline.settings import DEFAULT_SYMBOLS

MARKET_EVENTS = {
    "2000-04-14": "dot-com crash: the NASDAQ's worst week ends (S&P 500 -5.8 %)",
    "2001-09-17": "markets reopen after the September 11 attacks (-4.9 %)",
    "2007-02-27": "Shanghai sell-off and subprime fears (-3.5 %)",
    "2008-09-15": "Lehman Brothers files for bankruptcy (-4.7 %)",
    "2008-09-29": "the House rejects the TARP bailout (-8.8 %)",
    "2008-10-13": "largest daily gain since 1939 after bank rescues (+11.6 %)",
    "2008-10-15": "recession fears (-9.0 %)",
    "2008-12-01": "NBER declares the recession (-8.9 %)",
    "2010-05-06": "flash crash (closed -3.2 %, down 9 % intraday)",
    "2011-08-08": "first trading day after the US downgrade (-6.7 %)",
    "2015-08-24": "China's devaluation sell-off (-3.9 %)",
    "2016-06-24": "Brexit referendum result (-3.6 %)",
    "2018-02-05": "volatility spike, 'Volmageddon' (-4.1 %)",
}
"""Well-known US market days of 1999-2018, with the S&P 500's close-to-close move. Sources:
Wikipedia, "List of largest daily changes in the S&P 500" and the article on each event."""


SYNTHETIC_HISTORY = SessionWindow(dt.date(2014, 1, 2), dt.date(2025, 12, 31))
SYNTHETIC_SCORED_FROM = dt.date(2020, 1, 2)
DEFAULTS = AlertParams()
LOOSER = AlertParams(budget=0.004)
"""The largest budget at which the flag stays within 1 % of the real indices' days."""
LABELLING = AlertParams(budget=0.006)
"""A user who runs a loose budget, and so has false alerts to label."""


def synthetic(
    seed: int = 42,
    symbols: Sequence[str] = DEFAULT_SYMBOLS,
    history: SessionWindow = SYNTHETIC_HISTORY,
    scored_from: dt.date = SYNTHETIC_SCORED_FROM,
    params: AlertParams = DEFAULTS,
) -> pd.DataFrame:
    """Precision, recall and F1 of the alert flag per planted kind, from `scored_from` (the
    years before are the signals' and the calibration's history)."""
    bars, truth = _synthetic_market(seed, symbols, history, scored_from)
    scores = alert_scores(bars, params)
    return _quality(scores[scores["timestamp"] >= pd.Timestamp(scored_from)], truth)


def labels_raise_precision(
    seed: int = 42, symbols: Sequence[str] = DEFAULT_SYMBOLS, params: AlertParams = LABELLING
) -> pd.DataFrame:
    """A user labels every alert of the first half of the scored years — false positive when no
    planted anomaly lies within a session of it, confirmed otherwise — on the alert's day; the
    labels tighten the budget of the symbols they name from the next session on. The precision
    and recall of the second half, without and with those labels."""
    history, start = SYNTHETIC_HISTORY, SYNTHETIC_SCORED_FROM
    bars, truth = _synthetic_market(seed, symbols, history, start)
    middle = pd.Timestamp(start) + (pd.Timestamp(history.end) - pd.Timestamp(start)) / 2
    plain = alert_scores(bars, params)
    first = plain[plain["is_alert"] & plain["timestamp"].between(pd.Timestamp(start), middle)]
    right = explained(first, truth)
    labels = first.assign(
        labelled_on=first["timestamp"].dt.date,
        label=np.where(right, "confirmed", "false_positive"),
    )[["symbol", "labelled_on", "label"]]
    # labels change only the budget: the same probabilities, flagged again
    labelled = plain.assign(is_alert=is_alert(plain, params, labels))
    rows = [
        {
            "second half": name,
            **_quality(scores[scores["timestamp"] > middle], truth).iloc[0][
                ["detections", "precision", "recall", "f1"]
            ],
        }
        for name, scores in (("without labels", plain), ("with labels", labelled))
    ]
    return pd.DataFrame(rows).assign(false_positive_labels=int((~right).sum()))


def _synthetic_market(
    seed: int, symbols: Sequence[str], history: SessionWindow, scored_from: dt.date
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The synthetic bars over `history` (sorted for `alert_scores`) and the anomalies planted
    from `scored_from` on."""
    from marketpulse_pipeline.sources.synthetic import SyntheticSource

    source = SyntheticSource(seed=seed, as_of=history.end)
    bars = source.bars(list(symbols), history).drop(columns="source_ref")
    truth = source.injected_anomalies(list(symbols), SessionWindow(scored_from, history.end))
    return bars.sort_values(["symbol", "timestamp"], ignore_index=True), truth


def _quality(scores: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """The alert flag's quality over the scored rows of `scores`."""
    scored = scores[scores["p_value"].notna()]
    alerts = scored.loc[scored["is_alert"], ["symbol", "timestamp"]].assign(method="alert")
    return detection_quality(alerts, truth, ["alert"], len(scored))


def index_history(name: str) -> pd.DataFrame:
    """Daily bars of `sp500` or `nasdaq`, 1999-2018, from the `arch` package's data."""
    from importlib import import_module

    data = import_module(f"arch.data.{name}").load().reset_index()
    return pd.DataFrame(
        {
            "symbol": name,
            "timestamp": pd.to_datetime(data["Date"]).astype("datetime64[ns]"),
            "open": data["Open"],
            "high": data["High"],
            "low": data["Low"],
            "close": data["Close"],
            "volume": data["Volume"].astype("float64"),
        }
    )


def market_events(name: str, params: AlertParams = DEFAULTS) -> tuple[pd.DataFrame, float]:
    """Each well-known event with the alert's probability on its day and whether the flag
    caught it (that day or the next session), and the share of scored days alerted."""
    scores = alert_scores(index_history(name), params)
    scored = scores[scores["p_value"].notna()].reset_index(drop=True)
    alert = scored["is_alert"].to_numpy()
    position = pd.Index(scored["timestamp"])
    rows = []
    for day, what in MARKET_EVENTS.items():
        i = position.get_loc(pd.Timestamp(day))
        rows.append(
            {
                "event": day,
                "what": what,
                "return_pct": round(float(scored.at[i, "return_pct"]), 2),
                "p_value": float(scored.at[i, "p_value"]),
                "caught": bool(alert[i : i + 2].any()),
            }
        )
    return pd.DataFrame(rows), float(alert.mean())


def main(argv: Sequence[str] = ()) -> int:
    quality = synthetic()
    shown = quality[["kind", "detections", "events", "events_found", "precision", "recall", "f1"]]
    print(f"synthetic market (seed 42, watchlist, 2020-2025 scored), budget {DEFAULTS.budget}:")
    print(shown.round(3).to_string(index=False))
    print(f"flag rate {quality['flag_rate'].iloc[0]:.4f}\n")
    print(f"labels on the first half of the synthetic years (budget {LABELLING.budget}),")
    print("precision in the second half:")
    print(labels_raise_precision().round(3).to_string(index=False), "\n")
    for name in ("sp500", "nasdaq"):
        for params in (DEFAULTS, LOOSER):
            events, rate = market_events(name, params)
            caught = f"caught {events['caught'].sum()} of {len(events)} events"
            print(f"{name}, budget {params.budget}: {caught}, alerts on {rate:.2%} of days")
        table = events.assign(p_value=events["p_value"].map("{:.2g}".format))
        print(table.to_string(index=False), "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
