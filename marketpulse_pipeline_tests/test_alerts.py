"""The alert layer's pure rules: calibrated probabilities, their combination, point in time."""

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketpulse_pipeline.alerts.decision import (
    MAX_STRICTER,
    STRICTER,
    AlertParams,
    alert_scores,
    alert_table,
    harmonic_mean_p,
    history_start,
    label_factor,
)
from marketpulse_pipeline.calendar import SessionWindow, sessions_between
from marketpulse_pipeline.cli import main
from marketpulse_pipeline.detectors.calibration import tail_probability
from marketpulse_pipeline.schemas import AlertScores, validated
from marketpulse_pipeline.sources.synthetic import SyntheticSource
from marketpulse_pipeline_tests.conftest import CLOCK, TODAY

AS_OF = dt.date(2025, 12, 31)
HISTORY = SessionWindow(dt.date(2019, 1, 2), AS_OF)
SYMBOLS = ["AAPL", "MSFT", "SPY", "TSLA"]
P_COLUMNS = ["p_return", "p_volatility_adjusted", "p_range", "p_volume", "p_market_relative"]


@pytest.fixture(scope="module")
def market() -> pd.DataFrame:
    bars = SyntheticSource(seed=42, as_of=AS_OF).bars(SYMBOLS, HISTORY)
    return bars.drop(columns="source_ref").sort_values(["symbol", "timestamp"], ignore_index=True)


@pytest.fixture(scope="module")
def scores(market) -> pd.DataFrame:
    return alert_scores(market, AlertParams())


@pytest.mark.parametrize(
    "draw",
    [
        lambda rng, n: np.abs(rng.standard_normal(n)),
        lambda rng, n: rng.exponential(1.0, n),
        lambda rng, n: np.abs(rng.standard_t(5, n)),
    ],
    ids=["half-normal", "exponential", "student-t5"],
)
def test_probabilities_are_calibrated_for_ordinary_days(draw):
    """Independent draws from one distribution: p <= a about a share a of the time."""
    rng = np.random.default_rng(7)
    values = draw(rng, 12_000)
    p = tail_probability(np.zeros(len(values)), values)
    p = p[np.isfinite(p)]
    for level in (0.5, 0.05, 0.01):
        assert (p <= level).mean() == pytest.approx(level, rel=0.3)
    assert (p <= 0.001).mean() < 0.004  # the fitted tail stays within a few times the level


@settings(max_examples=25, deadline=None)
@given(cut=st.integers(100, 1_900), seed=st.integers(0, 2**32 - 1))
def test_a_probability_reads_only_the_days_before(cut, seed):
    """Changing or removing everything after day D leaves every probability up to D."""
    values = np.random.default_rng(seed).standard_normal(2_000)
    keys = np.zeros(len(values))
    full = tail_probability(keys, values)
    changed = values.copy()
    changed[cut + 1 :] = 50.0
    np.testing.assert_array_equal(tail_probability(keys, changed)[: cut + 1], full[: cut + 1])
    np.testing.assert_array_equal(
        tail_probability(keys[: cut + 1], values[: cut + 1]), full[: cut + 1]
    )


def test_a_statistic_beyond_its_past_gets_a_smaller_probability_the_further_out():
    values = np.abs(np.random.default_rng(1).standard_normal(400))
    p = [tail_probability(np.zeros(401), np.r_[values, x])[-1] for x in (4.0, 6.0, 8.0)]
    assert 0 < p[2] < p[1] < p[0] < 1 / 253


@settings(max_examples=50, deadline=None)
@given(st.lists(st.one_of(st.floats(1e-12, 1.0), st.just(float("nan"))), min_size=1, max_size=6))
def test_the_combination_lies_between_the_smallest_p_and_k_times_it(ps):
    p = np.array([ps])
    combined = harmonic_mean_p(p)[0]
    finite = p[np.isfinite(p)]
    if not len(finite):
        assert np.isnan(combined)
        return
    assert (
        finite.min() * (1 - 1e-9) <= combined <= min(len(finite) * finite.min(), 1.0) * (1 + 1e-9)
    )
    assert harmonic_mean_p(p[:, ::-1])[0] == pytest.approx(combined)


@pytest.mark.parametrize("days", [1, 7, 60])
def test_the_last_days_scored_alone_equal_the_backfill_bit_for_bit(market, scores, days):
    """The daily run scores a day or a few from the history they need: the same bits."""
    last = np.sort(market["timestamp"].unique())[-days:]
    needed = market[
        market["timestamp"] >= pd.Timestamp(history_start(pd.Timestamp(last[0]).date()))
    ]
    wanted = needed["timestamp"].isin(last).to_numpy()
    alone = alert_scores(needed.reset_index(drop=True), AlertParams(), score=wanted)[wanted]
    inside = scores[scores["timestamp"].isin(last)]
    pd.testing.assert_frame_equal(
        alone.reset_index(drop=True), inside.reset_index(drop=True), check_exact=True
    )


def test_a_window_scored_alone_equals_the_same_window_in_a_backfill(market, scores):
    """Chunking: scores of the last year from just the history they need equal the backfill's."""
    last_year = SessionWindow(dt.date(2025, 1, 2), AS_OF)
    needed = market[market["timestamp"] >= pd.Timestamp(history_start(last_year.start))]
    wanted = (needed["timestamp"] >= pd.Timestamp(last_year.start)).to_numpy()
    alone = alert_scores(needed.reset_index(drop=True), AlertParams(), score=wanted)[wanted]
    inside = scores[scores["timestamp"] >= pd.Timestamp(last_year.start)]
    pd.testing.assert_frame_equal(
        alone.reset_index(drop=True), inside.reset_index(drop=True), check_exact=True
    )


def test_alerts_are_rare_and_name_their_signals(scores):
    scored = scores[scores["p_value"].notna()]
    alerts = scored[scored["is_alert"]]
    assert 0 < len(alerts) <= 0.01 * len(scored)
    assert all(len(methods) for methods in alerts["methods"])
    assert scored.loc[scored["symbol"] == "SPY", "p_market_relative"].isna().all()
    assert scored.loc[scored["symbol"] != "SPY", "p_market_relative"].notna().any()


def test_alerts_find_the_planted_price_shocks(market, scores):
    truth = SyntheticSource(seed=42, as_of=AS_OF).injected_anomalies(SYMBOLS, HISTORY)
    shocks = truth[truth["kind"].isin(["price_shock_up", "price_shock_down"])]
    scored = scores[scores["p_value"].notna()]
    shocks = shocks[shocks["timestamp"].isin(scored["timestamp"])]
    alerted = scored.loc[scored["is_alert"], ["symbol", "timestamp"]]
    found = shocks.merge(alerted, on=["symbol", "timestamp"])
    assert len(shocks) >= 10 and len(found) >= 0.8 * len(shocks)


def test_without_the_benchmark_the_market_relative_signal_is_off(market):
    alone = market[market["symbol"] != "SPY"].reset_index(drop=True)
    scores = alert_scores(alone, AlertParams())
    assert scores["p_market_relative"].isna().all() and scores["p_value"].notna().any()


def test_a_day_most_of_the_watchlist_falls_together_is_market_wide(market):
    crashed = market.copy()
    day = pd.Timestamp("2025-06-16")
    after = crashed["timestamp"] >= day
    crashed.loc[after, ["open", "high", "low", "close"]] *= 0.85  # everything gaps down 15 %
    scores = alert_scores(crashed, AlertParams())
    on_day = scores[scores["timestamp"] == day]
    assert on_day["market_wide"].all() and on_day["is_alert"].all()
    # independent symbols rarely move together by chance
    assert scores.loc[scores["timestamp"] != day, "market_wide"].mean() < 0.002


def test_the_table_rows_pass_their_model(scores):
    some = scores[scores["symbol"] != "AAPL"]  # a slice, as the asset writes: not 0..n
    table = validated(AlertScores, alert_table(some))
    assert table["is_alert"].sum() == some["is_alert"].sum() > 0
    alerted = table[table["is_alert"]]
    assert (
        alerted["details"].notna().all() and table.loc[~table["is_alert"], "details"].isna().all()
    )


@pytest.mark.slow
def test_the_measured_numbers_in_the_readme_hold():
    """`python -m marketpulse_pipeline.alerts.evaluation`: regressions of the alert flag fail."""
    from marketpulse_pipeline.alerts import evaluation

    quality = evaluation.synthetic().set_index("kind")
    for kind in ("price_shock_down", "price_shock_up", "volume_spike"):
        assert quality.at[kind, "recall"] >= 0.9 and quality.at[kind, "f1"] >= 0.8, kind
    assert quality.at["all", "precision"] >= 0.9 and quality.at["all", "flag_rate"] <= 0.01
    for name in ("sp500", "nasdaq"):
        events, rate = evaluation.market_events(name, evaluation.LOOSER)
        assert events["caught"].sum() >= 12 and rate <= 0.01  # 90 % of 13
    labels = evaluation.labels_raise_precision().set_index("second half")
    assert labels.at["with labels", "precision"] > labels.at["without labels", "precision"]


@pytest.mark.slow
def test_alerts_through_the_pipeline_the_cli_and_sql_agree(env, conn, monkeypatch, capsys):
    monkeypatch.setenv("MARKETPULSE_SYMBOLS", ",".join(SYMBOLS))
    monkeypatch.delenv("DAGSTER_HOME")
    assert main(["backfill", "--start", "2024-06-03"]) == 0, capsys.readouterr().err
    capsys.readouterr()
    assert main(["alerts", "--days", "400", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    with conn.cursor() as cur:
        cur.execute("SELECT * FROM recent_alerts(NULL, 400, 50, %s)", [TODAY])
        names = [c.name for c in cur.description]
        stored = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    assert shown and [(a["symbol"], a["timestamp"]) for a in shown] == [
        (a["symbol"], a["timestamp"].isoformat()) for a in stored
    ]
    assert all(a["p_value"] <= AlertParams().budget and a["methods"] for a in shown)
    scored = conn.execute(
        "SELECT count(*), count(p_value), count(*) FILTER (WHERE is_alert) FROM alert_scores"
    ).fetchone()
    assert scored[0] == 4 * len(sessions_between(dt.date(2024, 6, 3), TODAY))
    assert 0 < scored[2] <= 0.02 * scored[1]  # a short history, with planted anomalies

    alert_id = shown[0]["id"]
    assert main(["label", str(alert_id), "--as", "false_positive", "--note", "earnings"]) == 0
    capsys.readouterr()
    assert conn.execute(
        "SELECT symbol, on_alert, labelled_at FROM anomaly_feedback WHERE anomaly_id = %s",
        [alert_id],
    ).fetchone() == (shown[0]["symbol"], True, pd.Timestamp(CLOCK).to_pydatetime())
    assert main(["alerts", "--days", "400"]) == 0  # the text shows the id to label, and labels
    text = capsys.readouterr().out
    assert str(alert_id) in text and "false_positive" in text
    assert main(["alerts", "--days", "400", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert [a["label"] for a in again if a["id"] == alert_id] == ["false_positive"]

    assert main(["alerts", "--symbol", "NOPE"]) == 2  # as for the other read commands
    assert capsys.readouterr().err.strip() == (
        "marketpulse: error: no prices stored for symbol 'NOPE'"
    )


def test_labels_tighten_a_symbols_budget_from_the_next_session_only():
    days = pd.to_datetime(["2025-03-03", "2025-03-04", "2025-03-05", "2025-03-06"])
    scores = pd.DataFrame({"symbol": ["AAPL"] * 4 + ["MSFT"] * 4, "timestamp": [*days, *days]})
    labels = pd.DataFrame(
        {
            "symbol": ["AAPL", "AAPL", "AAPL", "MSFT"],
            "labelled_on": [dt.date(2025, 3, d) for d in (3, 4, 5, 4)],
            "label": ["false_positive", "false_positive", "confirmed", "confirmed"],
        }
    )
    factor = label_factor(scores, labels)
    # AAPL: nothing on the label's own day; 1, then 2 false positives; a confirmation gives one back
    assert factor[:4].tolist() == [1.0, STRICTER, STRICTER**2, STRICTER]
    assert factor[4:].tolist() == [1.0] * 4  # a confirmed alert never loosens below the budget


def test_labels_never_silence_a_symbol():
    days = pd.to_datetime(["2025-03-03", "2025-04-01"])
    scores = pd.DataFrame({"symbol": ["AAPL", "AAPL"], "timestamp": days})
    labels = pd.DataFrame(
        {"symbol": "AAPL", "labelled_on": [dt.date(2025, 3, 3)] * 10, "label": "false_positive"}
    )
    assert label_factor(scores, labels)[-1] == STRICTER**MAX_STRICTER > 0
