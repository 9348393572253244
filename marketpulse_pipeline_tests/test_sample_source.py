import datetime as dt

import pytest

from marketpulse_pipeline.calendar import SessionWindow, sessions_between
from marketpulse_pipeline.sources.sample import SampleSource

pytest.importorskip("bokeh_sampledata", reason="the sample source needs the [sample] extra")
AUTUMN_2012 = SessionWindow(dt.date(2012, 10, 1), dt.date(2012, 11, 30))  # with Hurricane Sandy


def test_sample_bars_are_real_sessions():
    bars = SampleSource().bars(["AAPL", "IBM"], AUTUMN_2012)
    sessions = sessions_between(AUTUMN_2012.start, AUTUMN_2012.end)
    assert dt.date(2012, 10, 29) not in set(sessions.date)  # the exchange closed for the storm
    for _, frame in bars.groupby("symbol"):
        assert list(frame["timestamp"]) == list(sessions)
    assert (bars["low"] <= bars[["open", "close"]].min(axis=1)).all()


def test_unknown_sample_symbol_is_an_error():
    with pytest.raises(ValueError, match="no data for NVDA; it holds AAPL, FB, GOOG, IBM, MSFT"):
        SampleSource().bars(["NVDA"], AUTUMN_2012)


def test_sample_source_through_the_pipeline(make_defs, instance, conn):
    from marketpulse_pipeline.runner import run_pipeline

    defs = make_defs(MARKETPULSE_SOURCE="sample", MARKETPULSE_SYMBOLS="AAPL,MSFT")
    [outcome, _quality] = run_pipeline(
        defs,
        instance,
        ["AAPL", "MSFT"],
        start=AUTUMN_2012.start,
        end=AUTUMN_2012.end,
        progress=print,
    )
    assert outcome.success
    count, sources = conn.execute(
        "SELECT count(*), array_agg(DISTINCT source) FROM stock_prices"
    ).fetchone()
    assert count == 2 * len(sessions_between(AUTUMN_2012.start, AUTUMN_2012.end))
    assert sources == ["sample"]
