"""The rows every method writes: details as canonical JSON, ids that never change."""

import json

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from marketpulse_pipeline.alerts.decision import AlertParams, alert_scores, alert_table
from marketpulse_pipeline.detectors.base import _plain, anomaly_id, json_rows
from marketpulse_pipeline_tests.market import detect, market, zigzag

floats = st.floats(allow_nan=True, allow_infinity=True, width=64)
columns = st.sampled_from(["floats", "ints", "flags", "texts", "lists"])
standouts = st.lists(  # lists of small records, as the Isolation Forest's top features
    st.dictionaries(st.sampled_from(["z", "feature", "value"]), st.text(max_size=3) | floats),
    max_size=3,
)


@settings(max_examples=200, deadline=None)
@given(st.data(), st.integers(0, 8), st.dictionaries(st.text(max_size=6), columns, max_size=5))
def test_json_rows_are_json_dumps_of_each_row(data, rows, kinds):
    values = {}
    for key, kind in kinds.items():
        if kind == "floats":
            values[key] = np.array(data.draw(st.lists(floats, min_size=rows, max_size=rows)))
        elif kind == "ints":
            ints = st.integers(-(2**62), 2**62)
            values[key] = np.array(data.draw(st.lists(ints, min_size=rows, max_size=rows)))
        elif kind == "flags":
            flags = st.lists(st.booleans(), min_size=rows, max_size=rows)
            values[key] = np.array(data.draw(flags), dtype=bool)
        elif kind == "texts":
            texts = st.lists(st.text(max_size=5), min_size=rows, max_size=rows)
            values[key] = np.array(data.draw(texts), dtype=object)
        else:
            items = st.lists(st.text(max_size=3) | floats | st.booleans(), max_size=3) | standouts
            drawn = data.draw(st.lists(items, min_size=rows, max_size=rows))
            values[key] = np.empty(rows, dtype=object)
            values[key][:] = drawn
    expected = [
        json.dumps(_plain({k: v[i] for k, v in values.items()}), sort_keys=True)
        for i in range(rows)
    ]
    assert json_rows(values, rows) == expected


def test_each_row_keeps_the_id_of_its_symbol_day_method_and_type():
    closes = zigzag(120)
    closes[100:] *= 1.3  # a jump every method sees
    found = detect("zscore", market(closes))
    assert not found.empty
    for row in found.itertuples():
        assert row.id == anomaly_id(row.symbol, row.timestamp, row.method, row.anomaly_type)
        assert json.loads(row.details)["direction"] == "up"


def test_alert_rows_keep_their_ids_and_details_on_alerts_only():
    prices = market(zigzag(400))[["symbol", "timestamp", "open", "high", "low", "close", "volume"]]
    prices.loc[prices.index[-1], "close"] *= 1.4
    table = alert_table(alert_scores(prices, AlertParams()))
    for row in table.itertuples():
        assert row.id == anomaly_id(row.symbol, pd.Timestamp(row.timestamp), "alert", "alert")
    alerted = table[table["is_alert"]]
    assert len(alerted) >= 1
    assert table.loc[~table["is_alert"], "details"].isna().all()
    for details in alerted["details"]:
        assert set(json.loads(details)["statistic"]) >= {"return"}
