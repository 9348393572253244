"""Charts: images that decode, with the marks where the data puts them — pixels, not golden
files — and the CLI's `chart` and `report` on a real database."""

import datetime as dt
import io
import multiprocessing
import threading

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from marketpulse_pipeline.calendar import session_offset, sessions_between
from marketpulse_pipeline.cli import main
from marketpulse_pipeline.delivery.charts import (
    METHOD_STYLES,
    PARALLEL_FROM,
    ChartData,
    quality_chart,
    render,
    render_many,
)
from marketpulse_pipeline_tests.test_notifications import LATEST, add_alert, add_prices

ALERT_RED = (0xDE, 0x2D, 0x26)
DAYS = sessions_between(dt.date(2025, 1, 2), dt.date(2025, 6, 30))


def frame(n: int = len(DAYS)) -> pd.DataFrame:
    close = 100 + np.sin(np.arange(n) / 6) * 5
    return pd.DataFrame(
        {
            "timestamp": DAYS[:n],
            "close": close,
            "volume": 1e6 + 1e5 * np.cos(np.arange(n)),
            "sma_20": close - 1,
            "bb_upper": close + 4,
            "bb_lower": close - 4,
            "rsi_14": 50 + 10 * np.sin(np.arange(n) / 4),
        }
    )


def pixels(png: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    return np.asarray(image.convert("RGB")).astype(int)


def columns_of(image: np.ndarray, colour: tuple[int, int, int], tolerance: int = 40) -> np.ndarray:
    close = np.abs(image - np.array(colour)).sum(axis=2) <= tolerance
    return np.flatnonzero(close.any(axis=0))


def expected_column(image: np.ndarray, day: int) -> float:
    """Where session `day` falls: the price axes span 8 %..80 % of the width (fixed margins)
    with a 1 % margin inside."""
    width = image.shape[1]
    inside = 0.01 + 0.98 * day / (len(DAYS) - 1)
    return width * (0.08 + 0.72 * inside)


@pytest.mark.parametrize("day", [20, 70, 110])
def test_an_alert_is_a_red_star_at_its_day(day):
    alerts = pd.DataFrame({"timestamp": [DAYS[day]], "p_value": [0.0004], "label": [None]})
    none = pd.DataFrame(columns=["timestamp", "method"])
    image = pixels(render(ChartData("TEST", frame(), none, alerts)))
    assert image.shape[:2] == (520, 800)
    red = columns_of(image, ALERT_RED)
    legend = red >= 0.8 * image.shape[1]  # the legend's own star, right of the axes
    on_axes = red[~legend]
    assert len(on_axes) > 0
    assert abs(np.median(on_axes) - expected_column(image, day)) < 0.02 * image.shape[1]


def test_without_alerts_there_is_no_red_star_and_labels_turn_it_hollow():
    none = pd.DataFrame(columns=["timestamp", "method"])
    quiet = pd.DataFrame(columns=["timestamp", "p_value", "label"])
    assert len(columns_of(pixels(render(ChartData("TEST", frame(), none, quiet))), ALERT_RED)) == 0
    wrong = pd.DataFrame(
        {"timestamp": [DAYS[50]], "p_value": [0.0004], "label": ["false_positive"]}
    )
    assert len(columns_of(pixels(render(ChartData("TEST", frame(), none, wrong))), ALERT_RED)) == 0


def test_each_method_has_its_own_mark_at_its_day():
    chosen = {"isolation_forest": 40, "volume": 90}
    anomalies = pd.DataFrame(
        {"timestamp": [DAYS[day] for day in chosen.values()], "method": list(chosen)}
    )
    quiet = pd.DataFrame(columns=["timestamp", "p_value", "label"])
    image = pixels(render(ChartData("TEST", frame(), anomalies, quiet)))
    for method, day in chosen.items():
        pure = np.array([int(METHOD_STYLES[method][1][i : i + 2], 16) for i in (1, 3, 5)])
        colour = tuple(0.8 * pure + 0.2 * 255)  # drawn at alpha 0.8 over white
        found = columns_of(image, colour, tolerance=30)
        found = found[found < 0.8 * image.shape[1]]
        assert abs(np.median(found) - expected_column(image, day)) < 0.02 * image.shape[1], method


def test_an_empty_window_says_so_and_svg_works():
    none = pd.DataFrame(columns=["timestamp", "method"])
    quiet = pd.DataFrame(columns=["timestamp", "p_value", "label"])
    empty = frame().iloc[:0]
    assert pixels(render(ChartData("TEST", empty, none, quiet))).shape[:2] == (520, 800)
    assert render(ChartData("TEST", frame(), none, quiet), "svg").startswith(b"<?xml")


@pytest.mark.parametrize("other_thread", [False, True], ids=["forked", "another thread alive"])
def test_charts_drawn_in_processes_are_the_serial_ones_in_order(other_thread):
    running = threading.Event()
    if other_thread:  # a process with more than one thread must not fork: drawn serially
        threading.Thread(target=running.wait, daemon=True).start()
    none = pd.DataFrame(columns=["timestamp", "method"])
    charts = [
        ChartData(
            f"S{day}",
            frame(),
            none,
            pd.DataFrame({"timestamp": [DAYS[day]], "p_value": [0.0004], "label": [None]}),
        )
        for day in range(10, 10 + 2 * PARALLEL_FROM, 2)
    ]
    try:
        drawn = render_many(charts, dpi=40)
    finally:
        running.set()
    assert drawn == [render(chart, dpi=40) for chart in charts]
    assert len(set(drawn)) == len(charts)  # each its own picture, in the order asked
    assert not multiprocessing.active_children()  # no worker left behind


def test_the_quality_chart_has_a_bar_per_method():
    overall = pd.DataFrame(
        {"precision": [0.9, 0.1], "recall": [0.5, 0.8], "f1": [0.64, 0.18]},
        index=["alert", "zscore"],
    )
    image = pixels(quality_chart(overall))
    assert len(columns_of(image, (0x31, 0x82, 0xBD))) > 0  # precision bars
    assert len(columns_of(image, (0xE6, 0x55, 0x0D))) > 0  # recall bars


def test_chart_and_report_from_the_cli(env, conn, tmp_path, capsys):
    add_prices(conn, "AAPL")
    add_alert(conn, "AAPL", LATEST, 0.0004)
    out = tmp_path / "aapl.png"
    assert main(["chart", "AAPL", "-o", str(out)]) == 0
    assert pixels(out.read_bytes()).shape[:2] == (520, 800)
    assert len(columns_of(pixels(out.read_bytes()), ALERT_RED)) > 0
    assert main(["chart", "AAPL", "--days", "10", "-o", str(tmp_path / "a.svg")]) == 0
    capsys.readouterr()

    assert main(["chart", "ZZZZ"]) == 2
    assert (
        capsys.readouterr().err.strip() == "marketpulse: error: no prices stored for symbol 'ZZZZ'"
    )
    far = session_offset(LATEST, 300).isoformat()
    assert main(["chart", "AAPL", "--start", far, "-o", str(out)]) == 2
    assert "AAPL has no prices in that window" in capsys.readouterr().err
    assert main(["chart", "AAPL", "-o", str(tmp_path / "a.jpg")]) == 2
    assert main(["chart", "AAPL", "-o", str(tmp_path)]) == 2  # a directory
    assert main(["chart", "AAPL", "--start", "2025-12-01", "--end", "2025-11-01"]) == 2
    assert main(["report", "-o", str(out)]) == 2  # a file, not a directory
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 4 and "is after --end" in errors[2]

    report = tmp_path / "report"
    assert main(["report", "-o", str(report)]) == 0
    page = (report / "index.html").read_text()
    assert '<img src="AAPL.png"' in page and "No prices stored" in page  # the others
    assert "2025-12-31" in page  # the alert
    assert "http" not in page.replace("http-equiv", "")  # nothing fetched: no CDN
    assert pixels((report / "AAPL.png").read_bytes()).shape[:2] == (520, 800)


def test_a_large_run_charts_its_strongest_alerts_and_a_small_one_every_partition():
    from marketpulse_pipeline.assets.alerts import chart_choice

    symbols = [f"S{i:02d}" for i in range(30)]
    scores = pd.DataFrame(
        {
            "symbol": ["S07", "S07", "S20", "S03", "S11"],
            "p_value": [0.0004, 0.00001, 0.0002, 0.5, 0.0009],
            "is_alert": [True, True, True, False, True],
        }
    )
    assert chart_choice(symbols[:25], scores, 25) == symbols[:25]
    chosen = chart_choice(symbols, scores, 5)
    assert chosen == ["S07", "S20", "S11", "S00", "S01"]  # strongest first, then in order
    assert chart_choice(symbols, scores, 0) == []
