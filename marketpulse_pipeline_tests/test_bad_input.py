"""Bad input fails with one clear line naming what is wrong, never a traceback or a password.

Settings, command-line arguments and price files each get the values people actually mistype
(or vendors actually send): a wrong URL, a negative seed, an empty watchlist, absurd counts,
volumes beyond 64 bits. Where a rule holds for every input, Hypothesis checks it.
"""

import datetime as dt
import math
import tempfile
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketpulse_pipeline import cli
from marketpulse_pipeline.calendar import SessionWindow
from marketpulse_pipeline.cli import reads
from marketpulse_pipeline.prices.quality_gate import gate_bars
from marketpulse_pipeline.runner import run_pipeline
from marketpulse_pipeline.settings import (
    DEFAULT_SYMBOLS,
    Settings,
    SettingsError,
    normalise_database_url,
    parse_symbols,
    redact_url,
)
from marketpulse_pipeline.sources import CsvSource, SyntheticSource
from marketpulse_pipeline.sources.base import fetch_bars

JULY_7 = SessionWindow(dt.date(2025, 7, 7), dt.date(2025, 7, 7))
WEEK = SessionWindow(dt.date(2025, 7, 1), dt.date(2025, 7, 7))
HEADER = "Date,Open,High,Low,Close,Volume\n"
UNREACHABLE = "postgresql://marketpulse:PASS@127.0.0.1:1/market?connect_timeout=2"


def from_env(tmp_path: Path, **variables: str) -> Settings:
    return Settings.from_env({"MARKETPULSE_HOME": str(tmp_path / "home"), **variables})


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No MARKETPULSE_* variable but a throw-away home, for running `cli.main` in-process."""
    for name in (
        "MARKETPULSE_DATABASE_URL",
        "MARKETPULSE_SOURCE",
        "MARKETPULSE_CSV_DIR",
        "MARKETPULSE_SYMBOLS",
        "MARKETPULSE_SEED",
        "MARKETPULSE_START_DATE",
        "MARKETPULSE_NOW",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MARKETPULSE_HOME", str(tmp_path / "home"))
    return monkeypatch


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line(err: str, *names: str) -> None:
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert "Traceback" not in err
    for name in names:
        assert name in err


# 1. MARKETPULSE_DATABASE_URL


@pytest.mark.parametrize(
    "url,normalised",
    [
        ("postgresql://u:p@db:5432/market", "postgresql://u:p@db:5432/market"),
        ("postgres://u@db/market", "postgres://u@db/market"),
        ("postgresql+psycopg2://u:p@db/market", "postgresql://u:p@db/market"),
        (
            "postgresql+psycopg://u:p@db/market?sslmode=require",
            "postgresql://u:p@db/market?sslmode=require",
        ),
        ("host=db dbname=market user=u", "host=db dbname=market user=u"),
    ],
)
def test_database_urls_are_accepted_and_normalised(tmp_path, url, normalised):
    assert normalise_database_url(url) == normalised
    assert from_env(tmp_path, MARKETPULSE_DATABASE_URL=f" {url} ").database_url == normalised


@pytest.mark.parametrize(
    "url",
    [
        "notaurl",
        "mysql://u:PASS@db/market",
        "postgresql://u:PASS@db/market?bogus=1",
        "postgresql://u:PASS%zz@db/market",
        "postgresql://u:PASS%00@db/market",
        "postgresql://u:PASS@[::1/market",
        "postgresql+psycopg2://u:PASS@db/market?x",
        "host=db password=PASS dbname",
        "host=db password='P A S S' dbname",
    ],
)
def test_bad_database_urls_name_the_variable_and_hide_the_password(tmp_path, url):
    with pytest.raises(SettingsError) as error:
        from_env(tmp_path, MARKETPULSE_DATABASE_URL=url)
    message = str(error.value)
    assert message.startswith("MARKETPULSE_DATABASE_URL=") and "\n" not in message
    assert "PASS" not in message and "P A S S" not in message


def test_a_bad_database_url_is_one_line_on_stderr_without_the_password(clean_env, capsys):
    clean_env.setenv("MARKETPULSE_DATABASE_URL", "mysql://u:PASS@db/market")
    code, _, err = run_cli(capsys, "stats")
    assert code == 2
    assert_one_line(err, "MARKETPULSE_DATABASE_URL")
    assert "PASS" not in err


def _passwords() -> st.SearchStrategy[str]:
    """Distinctive passwords: the "PW" prefix appears nowhere else in the messages."""
    text = st.text(
        st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
        min_size=1,
        max_size=20,
    )
    return text.map(lambda tail: "PW" + tail)


URL_FORMS = (
    "url",
    "driver",
    "bad query",
    "bad escape",
    "other scheme",
    "query",
    "keywords",
    "bad keywords",
)


def _url_with(password: str, form: str) -> str:
    encoded = quote(password, safe="")
    keyword = "'" + password.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return {
        "url": f"postgresql://trader:{encoded}@db.example:5432/market",
        "driver": f"postgresql+psycopg2://trader:{encoded}@db.example/market",
        "bad query": f"postgres://trader:{encoded}@db.example/market?bogus",
        "bad escape": f"postgresql://trader:{encoded}%zz@db.example/market",
        "other scheme": f"mysql://trader:{encoded}@db.example/market",
        "query": f"postgresql://db.example/market?user=trader&password={encoded}&x",
        "keywords": f"host=db.example password={keyword} dbname=market",
        "bad keywords": f"host=db.example password={keyword} dbname",
    }[form]


@settings(max_examples=300, deadline=None)
@given(
    password=_passwords(),
    form=st.sampled_from(URL_FORMS),
)
def test_no_database_url_ever_leaks_its_password(password, form):
    url = _url_with(password, form)
    spellings = {password, quote(password, safe="")}
    shown = redact_url(url)
    assert not any(secret in shown for secret in spellings)
    try:
        normalise_database_url(url)
    except SettingsError as error:
        assert not any(secret in str(error) for secret in spellings)
        assert str(error).startswith("MARKETPULSE_DATABASE_URL=")


def test_an_unreachable_database_is_one_line_without_the_password(clean_env, capsys):
    clean_env.setenv("MARKETPULSE_DATABASE_URL", UNREACHABLE)
    code, _, err = run_cli(capsys, "stats")
    assert code == 1
    assert_one_line(err, "database unreachable")
    assert "PASS" not in err


# 2. MARKETPULSE_SEED


@pytest.mark.parametrize("seed", ["-1", "-9223372036854775808", "9223372036854775808", "4.2"])
def test_bad_seeds_name_the_variable(tmp_path, seed):
    with pytest.raises(SettingsError, match=r"^MARKETPULSE_SEED="):
        from_env(tmp_path, MARKETPULSE_SEED=seed)


@settings(deadline=None)
@given(seed=st.integers(min_value=-(2**70), max_value=2**70))
def test_a_seed_is_kept_exactly_or_refused(seed):
    environ = {"MARKETPULSE_SEED": str(seed), "MARKETPULSE_DATABASE_URL": "host=db"}
    if 0 <= seed < 2**63:
        assert Settings.from_env(environ).seed == seed
    else:
        with pytest.raises(SettingsError, match=r"^MARKETPULSE_SEED="):
            Settings.from_env(environ)


# 3. MARKETPULSE_CSV_DIR


def test_the_csv_source_needs_its_directory(tmp_path):
    with pytest.raises(SettingsError, match=r"^MARKETPULSE_CSV_DIR is not set"):
        from_env(tmp_path, MARKETPULSE_SOURCE="csv")
    with pytest.raises(SettingsError, match=r"^MARKETPULSE_CSV_DIR=.* is not a directory"):
        from_env(tmp_path, MARKETPULSE_SOURCE="csv", MARKETPULSE_CSV_DIR=str(tmp_path / "no"))
    chosen = from_env(tmp_path, MARKETPULSE_SOURCE="csv", MARKETPULSE_CSV_DIR=str(tmp_path))
    assert chosen.csv_dir == tmp_path.resolve()


# 4. MARKETPULSE_HOME


def test_a_home_that_cannot_be_created_is_refused(tmp_path):
    (tmp_path / "afile").write_text("")
    home = tmp_path / "afile" / "home"
    with pytest.raises(SettingsError, match=r"^MARKETPULSE_HOME=.* cannot be created"):
        Settings.from_env({"MARKETPULSE_HOME": str(home)})
    with pytest.raises(SettingsError, match=r"^MARKETPULSE_HOME=.* is not a writable directory"):
        Settings.from_env({"MARKETPULSE_HOME": str(tmp_path / "afile")})


def test_the_home_only_matters_for_the_embedded_server(tmp_path):
    (tmp_path / "afile").write_text("")
    home = tmp_path / "afile" / "home"
    chosen = Settings.from_env(
        {"MARKETPULSE_HOME": str(home), "MARKETPULSE_DATABASE_URL": "host=db"}
    )
    assert chosen.home == home
    assert from_env(tmp_path).home == tmp_path / "home"  # not there yet: created on first use


def test_a_bad_home_is_one_line_on_stderr(clean_env, capsys, tmp_path):
    (tmp_path / "afile").write_text("")
    clean_env.setenv("MARKETPULSE_HOME", str(tmp_path / "afile" / "home"))
    code, _, err = run_cli(capsys, "db", "url")
    assert code == 2
    assert_one_line(err, "MARKETPULSE_HOME")


# 5. an explicit empty watchlist


@pytest.mark.parametrize("text", ["", " ", ",", " , "])
def test_an_explicit_empty_watchlist_is_refused(text):
    with pytest.raises(SettingsError, match=r"^--symbols="):
        parse_symbols(text, "--symbols")


def test_only_an_unset_watchlist_means_the_default(tmp_path):
    assert parse_symbols(None, "--symbols") == DEFAULT_SYMBOLS
    assert from_env(tmp_path).symbols == DEFAULT_SYMBOLS


def test_an_empty_symbols_argument_is_one_line_on_stderr(clean_env, capsys):
    code, _, err = run_cli(capsys, "backfill", "--start", "2025-07-01", "--symbols", "")
    assert code == 2
    assert_one_line(err, "--symbols")


# 6. absurd counts, 7. one line for every error


@pytest.mark.parametrize(
    "argv,names",
    [
        (["anomalies", "--days", "99999999999"], ["--days", "36500"]),
        (["anomalies", "--limit", "9999999999999999999"], ["--limit", "100000"]),
        (["anomalies", "--days", "0"], ["--days"]),
        (["stats", "--days", "-3"], ["--days"]),
        (["history", "AAPL", "--days", "1e3"], ["--days"]),
        (["latest", "AAPL,MSFT"], ["symbol"]),
        (["label", str(2**70), "--as", "confirmed"], ["argument ID"]),
        (["no-such-command"], ["invalid choice"]),
    ],
)
def test_bad_arguments_are_one_line_naming_the_argument(clean_env, capsys, argv, names):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and out == ""
    assert_one_line(err, *names)


def test_the_bounds_are_in_the_help(clean_env, capsys):
    code, out, _ = run_cli(capsys, "anomalies", "--help")
    assert code == 0
    assert "1 to 36500" in out and "1 to 100000" in out


@pytest.mark.parametrize(
    "error,code,what",
    [
        (psycopg.errors.NumericValueOutOfRange("out of range\nDETAIL: PASS"), 1, "database error"),
        (psycopg.OperationalError("server closed\n  the connection PASS"), 1, "unreachable"),
        (LookupError("no anomaly with id 7"), 2, "error"),
        (RuntimeError("a bug\nsecond line"), 1, "unexpected RuntimeError"),
    ],
)
def test_handler_errors_are_one_line_without_the_password(
    clean_env, capsys, monkeypatch, error, code, what
):
    def failing(*_: object) -> int:
        raise error

    clean_env.setenv("MARKETPULSE_DATABASE_URL", UNREACHABLE)
    monkeypatch.setattr(reads, "_stats", failing)
    returned, _, err = run_cli(capsys, "stats")
    assert returned == code
    assert_one_line(err, what)
    assert "PASS" not in err


# 8. volumes beyond 64 bits, 9. the file's text kept, 10. rows in = stored + rejected


def write_prices(directory: Path, *rows: str) -> None:
    (directory / "AAPL.csv").write_text(HEADER + "".join(f"{row}\n" for row in rows))


def gate_file(directory: Path, window: SessionWindow = JULY_7):
    bars = CsvSource(directory).bars(["AAPL"], window)
    return bars, gate_bars(bars, {"AAPL": window}, "csv")


@pytest.mark.parametrize("volume", ["1e30", "9999999999999999999", "9223372036854775808", "inf"])
def test_volumes_beyond_64_bits_are_quarantined(tmp_path, volume):
    write_prices(tmp_path, f"2025-07-07,10,11,9,10.5,{volume}")
    _, gate = gate_file(tmp_path)
    assert gate.stored.empty and len(gate.rejected) == 1
    rejected = gate.rejected.iloc[0]
    assert rejected["reason"] == f"volume must be a whole number below 2^63 (got {volume})"
    assert rejected["volume"] == volume and rejected["source_ref"] == "AAPL.csv:2"


def test_rejected_rows_keep_the_files_text(tmp_path):
    write_prices(
        tmp_path,
        "2025-07-01,10.50,11,9,10.5,2409105",
        "2025-07-02,10.50,11,9,null,2409105",
        "2025-07-03,10.50,11,9,10.5,1e30",
        "2025-07-05,10.50,11,9,10.5,2409105",
        "2025-07-07,-1,11,9,10.5,",
    )
    bars, gate = gate_file(tmp_path, WEEK)
    assert len(bars) == len(gate.stored) + len(gate.rejected) == 5
    assert gate.stored["volume"].tolist() == [2409105]
    rejected = gate.rejected.set_index("source_ref")
    assert rejected.loc["AAPL.csv:3", ["open", "close", "volume"]].tolist() == [
        "10.50",
        "null",
        "2409105",
    ]
    assert rejected.loc["AAPL.csv:4", "volume"] == "1e30"
    assert rejected.loc["AAPL.csv:5", "reason"] == "not an NYSE session"
    assert rejected.loc["AAPL.csv:6", ["open", "volume"]].tolist() == ["-1", ""]


def test_only_the_csv_source_brings_the_text_along():
    assert "volume_text" not in fetch_bars(SyntheticSource(seed=1), {"AAPL": WEEK})[0].columns


@settings(max_examples=300, deadline=None)
@given(
    volume=st.one_of(
        st.integers(min_value=-(10**25), max_value=10**25).map(str),
        st.floats().map(repr),
        st.sampled_from(["null", "", "1e30", "9223372036854775807", "9223372036854775808"]),
        st.sampled_from(["9007199254740993", "-0", "+7", "1.0", "2.5e3", "-1e-300", "1e400"]),
    )
)
def test_any_volume_is_stored_whole_or_rejected_with_a_reason(volume):
    with tempfile.TemporaryDirectory() as directory:
        write_prices(Path(directory), f"2025-07-07,10,11,9,10.5,{volume}")
        bars, gate = gate_file(Path(directory))
    assert len(bars) == len(gate.stored) + len(gate.rejected) == 1
    number = math.nan if volume in ("", "null", "nan") else float(volume)
    storable = math.isfinite(number) and number.is_integer() and 0 <= number < 2**63
    assert len(gate.stored) == storable
    if storable:
        assert gate.stored["volume"].iloc[0] == int(number)
    else:
        rejected = gate.rejected.iloc[0]
        assert rejected["volume"] == volume and rejected["reason"]
        assert rejected["source_ref"] == "AAPL.csv:2"


def test_the_pipeline_quarantines_the_files_text(make_defs, instance, conn, tmp_path):
    write_prices(
        tmp_path,
        "2025-07-01,10,11,9,10.5,2409105",
        "2025-07-02,10,11,9,null,2409105",
        "2025-07-03,10,11,9,10.5,1e30",
        "2025-07-07,10,11,9,10.5,9999999999999999999",
    )
    defs = make_defs(
        MARKETPULSE_SOURCE="csv", MARKETPULSE_CSV_DIR=str(tmp_path), MARKETPULSE_SYMBOLS="AAPL"
    )
    run_pipeline(defs, instance, ["AAPL"], start=WEEK.start, end=WEEK.end, progress=lambda _: None)
    stored = conn.execute("SELECT volume FROM stock_prices").fetchall()
    rejected = conn.execute(
        'SELECT close, volume, source_ref, reason FROM rejected_prices ORDER BY "timestamp"'
    ).fetchall()
    assert stored == [(2409105,)] and len(stored) + len(rejected) == 4
    assert [row[:3] for row in rejected] == [
        ("null", "2409105", "AAPL.csv:3"),
        ("10.5", "1e30", "AAPL.csv:4"),
        ("10.5", "9999999999999999999", "AAPL.csv:5"),
    ]
    assert rejected[2][3] == "volume must be a whole number below 2^63 (got 9999999999999999999)"
