import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from marketpulse_pipeline.consensus import consensus


def anomaly(symbol, day, method, kind, severity):
    return {
        "symbol": symbol,
        "timestamp": pd.Timestamp(day),
        "method": method,
        "anomaly_type": kind,
        "severity": severity,
    }


ROWS = pd.DataFrame(
    [
        anomaly("AAPL", "2025-07-01", "zscore", "price_spike", 2.0),
        anomaly("AAPL", "2025-07-01", "technical", "rsi_overbought", 1.2),
        anomaly("AAPL", "2025-07-01", "technical", "bollinger_breach_upper", 3.0),
        anomaly("AAPL", "2025-07-01", "iqr", "price_spike", 1.5),
        anomaly("AAPL", "2025-07-02", "volume", "volume_spike", 1.1),
        anomaly("MSFT", "2025-07-01", "moving_average", "trend_break_down", 1.4),
        anomaly("MSFT", "2025-07-01", "isolation_forest", "multivariate", 1.05),
    ]
)


def test_votes_count_methods_not_rows():
    result = consensus(ROWS).set_index(["symbol", "timestamp"])
    aapl = result.loc[("AAPL", pd.Timestamp("2025-07-01"))]
    assert aapl["votes"] == 3
    assert aapl["methods"] == ["iqr", "technical", "zscore"]
    assert aapl["severity"] == 2.0 + 3.0 + 1.5  # each method's strongest
    assert (aapl["strongest_type"], aapl["strongest_method"]) == (
        "bollinger_breach_upper",
        "technical",
    )


def test_every_day_with_an_anomaly_has_a_row_and_min_votes_decides():
    result = consensus(ROWS, min_votes=2)
    assert len(result) == 3
    flags = {
        (row.symbol, row.timestamp.day): row.is_consensus for row in result.itertuples(index=False)
    }
    assert flags == {("AAPL", 1): True, ("AAPL", 2): False, ("MSFT", 1): True}
    assert consensus(ROWS, min_votes=3)["is_consensus"].tolist() == [True, False, False]


def test_no_anomalies_no_rows():
    assert consensus(ROWS.iloc[:0]).empty


METHODS = ["iqr", "isolation_forest", "technical", "volume", "zscore"]


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["AAPL", "MSFT", "SPY"]),
            st.integers(1, 5),
            st.sampled_from(METHODS),
            st.floats(0.5, 9),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_each_day_lists_its_methods_once_by_name(flags):
    rows = pd.DataFrame(
        [anomaly(s, f"2025-07-0{day}", m, "price_spike", severity) for s, day, m, severity in flags]
    ).sample(frac=1, random_state=0)
    result = consensus(rows).set_index(["symbol", "timestamp"])
    expected = rows.groupby(["symbol", "timestamp"])["method"].agg(lambda m: sorted(set(m)))
    assert result["methods"].to_dict() == expected.to_dict()
    assert (result["votes"] == result["methods"].map(len)).all()
