import dagster as dg
import numpy as np
import pandas as pd
import pytest

from marketpulse_pipeline.quality import detection_quality

# Injected: a shock on Mon 2025-07-07, a 10-session trend break from 2025-07-15, a volume spike.
EVENTS = pd.DataFrame(
    {
        "symbol": ["A", "A", "B"],
        "timestamp": pd.to_datetime(["2025-07-07", "2025-07-15", "2025-07-10"]),
        "kind": ["price_shock_up", "trend_break", "volume_spike"],
        "duration": [1, 10, 1],
    }
)
DETECTIONS = pd.DataFrame(
    {
        "symbol": ["A", "A", "A", "A", "B"],
        "timestamp": pd.to_datetime(
            ["2025-07-03", "2025-07-07", "2025-07-07", "2025-07-28", "2025-07-01"]
        ),
        "method": ["zscore", "zscore", "zscore", "zscore", "zscore"],
    }
)


def quality(**kwargs) -> pd.DataFrame:
    result = detection_quality(DETECTIONS, EVENTS, ["zscore", "iqr"], symbol_days=100, **kwargs)
    return result.set_index(["method", "kind"])


def test_known_counts():
    # 07-03 (Thu) is one session before 07-07 (Fri 07-04 is a holiday): within tolerance.
    # 07-28 lies inside the trend break (07-15 + 10 sessions); B 07-01 matches nothing.
    overall = quality().loc[("zscore", "all")]
    assert overall["detections"] == 4  # two rows on 07-07 are one symbol-day
    assert overall["true_positives"] == 3 and overall["events_found"] == 2
    assert overall["precision"] == pytest.approx(3 / 4)
    assert overall["recall"] == pytest.approx(2 / 3)
    assert overall["f1"] == pytest.approx(2 * 0.75 * (2 / 3) / (0.75 + 2 / 3))
    assert overall["flag_rate"] == pytest.approx(4 / 100)


def test_per_kind():
    result = quality()
    assert result.loc[("zscore", "price_shock_up"), "recall"] == 1.0
    assert result.loc[("zscore", "price_shock_up"), "true_positives"] == 2
    # against the one false positive (B 07-01), not the trend-break detection
    assert result.loc[("zscore", "price_shock_up"), "precision"] == pytest.approx(2 / 3)
    assert result.loc[("zscore", "trend_break"), "precision"] == pytest.approx(1 / 2)
    assert result.loc[("zscore", "trend_break"), "recall"] == 1.0
    assert result.loc[("zscore", "volume_spike"), "recall"] == 0.0


def test_a_method_that_found_nothing():
    iqr = quality().loc[("iqr", "all")]
    assert iqr["detections"] == 0 and iqr["recall"] == 0.0 and np.isnan(iqr["precision"])


def test_no_tolerance_means_the_same_day():
    assert quality(tolerance=0).loc[("zscore", "all"), "true_positives"] == 2


def test_labels_give_the_false_positive_share():
    labels = pd.DataFrame(
        {
            "method": ["zscore", "zscore", "zscore", None],
            "label": ["false_positive", "confirmed", "false_positive", "confirmed"],
        }
    )
    result = quality(labels=labels)
    assert result.loc[("zscore", "all"), "labelled"] == 3
    assert result.loc[("zscore", "all"), "false_positive_share"] == pytest.approx(2 / 3)
    assert np.isnan(result.loc[("iqr", "all"), "false_positive_share"])


def test_quality_runs_after_the_detectors_on_the_daily_automation(make_defs, instance):
    defs = make_defs()
    sensor = defs.resolve_sensor_def("default_automation_condition_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    asset = defs.resolve_assets_def("detection_quality")
    assert asset.automation_conditions_by_key[dg.AssetKey("detection_quality")] is not None
    quality = dg.AssetKey("detection_quality")
    first = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    assert first.get_num_requested(quality) == 0  # nothing has been detected yet
    instance.report_runless_asset_event(
        dg.AssetMaterialization("anomalies_zscore", partition="AAPL")
    )
    after = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
    assert after.get_num_requested(quality) == 1
    again = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=after.cursor)
    assert again.get_num_requested(quality) == 0  # once per update, not on every tick


def test_recall_at_a_budget_takes_the_strongest_days_only():
    # 100 symbol-days: the 1 % budget is the single strongest day, the 2 % budget two.
    ranked = DETECTIONS.assign(strength=[5.0, 1.0, 1.0, 9.0, 3.0])  # 07-28 (trend) strongest
    result = detection_quality(
        DETECTIONS, EVENTS, ["zscore"], symbol_days=100, ranked=ranked
    ).set_index(["method", "kind"])
    assert result.loc[("zscore", "all"), "recall_at_1pct"] == pytest.approx(1 / 3)
    assert result.loc[("zscore", "trend_break"), "recall_at_1pct"] == 1.0
    assert result.loc[("zscore", "price_shock_up"), "recall_at_1pct"] == 0.0
    # the next strongest, 07-03 (5.0), is within a session of the shock
    assert result.loc[("zscore", "price_shock_up"), "recall_at_2pct"] == 1.0
    assert result.loc[("zscore", "all"), "recall_at_2pct"] == pytest.approx(2 / 3)


def test_without_a_ranking_no_recall_at_budgets():
    assert quality()[["recall_at_0_5pct", "recall_at_1pct", "recall_at_2pct"]].isna().all().all()
