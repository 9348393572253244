"""Daily bars from a directory of per-symbol CSV files (`AAPL.csv`, ...).

Two common layouts are understood:
- Yahoo Finance: `Date,Open,High,Low,Close,Adj Close,Volume` (missing values written `null`)
- Stooq:         `Date,Open,High,Low,Close,Volume`

Only the requested symbols' files are opened and only rows inside the window are returned.
Values that are missing are passed on as NaN, so the quality gate quarantines their rows; text
that is not a date or a number makes the whole file fail with an error naming file, line and column.
Each value's text is passed on too (`open_text`, ...), so a quarantined row keeps the file's text.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from marketpulse_pipeline.calendar import SessionWindow
from marketpulse_pipeline.sources.base import (
    BAR_DTYPES,
    RAW_TEXT_DTYPES,
    PriceSource,
    SourceError,
    conform,
)

LAYOUTS = {
    "yahoo": ["Date", "Open", "High", "Low", "Close", "Adj Close", "Volume"],
    "stooq": ["Date", "Open", "High", "Low", "Close", "Volume"],
}
_FIELDS = ["Open", "High", "Low", "Close", "Volume"]
_MISSING = {"", "null", "nan", "NaN", "NA", "N/A", "-"}


class PriceFileError(SourceError):
    """A price file is missing or cannot be parsed; the message names the file, line and column."""


class CsvSource(PriceSource):
    """Bars read from `<directory>/<SYMBOL>.csv` files."""

    name = "csv"

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def bars(self, symbols: Sequence[str], window: SessionWindow) -> pd.DataFrame:
        frames = [read_price_file(self.path_for(symbol), symbol, window) for symbol in symbols]
        return conform(pd.concat(frames) if frames else pd.DataFrame(), BAR_DTYPES, RAW_TEXT_DTYPES)

    def path_for(self, symbol: str) -> Path:
        for name in (f"{symbol}.csv", f"{symbol.lower()}.csv"):
            if (self.directory / name).is_file():
                return self.directory / name
        raise PriceFileError(f"{self.directory / (symbol + '.csv')}: no price file for {symbol}")


def read_price_file(path: Path, symbol: str, window: SessionWindow) -> pd.DataFrame:
    """The rows of one file dated inside `window`, as raw bars with each value's text."""
    try:
        content = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PriceFileError(f"{path}: no price file for {symbol}") from None
    except UnicodeDecodeError as error:
        raise PriceFileError(f"{path}: not a readable CSV file ({error})") from None
    return parse_price_csv(content, str(path), path.name, symbol, window)


def parse_price_csv(
    content: str, where: str, ref: str, symbol: str, window: SessionWindow
) -> pd.DataFrame:
    """Daily bars in CSV text (a file's, or a vendor's answer) dated inside `window`.

    `where` names the text in errors (a path, a URL); `ref` starts each row's `source_ref`,
    followed by its line number.
    """
    path = where
    try:
        text = pd.read_csv(
            io.StringIO(content),
            dtype=str,
            keep_default_na=False,
            skipinitialspace=True,
            skip_blank_lines=False,
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise PriceFileError(f"{path}: not a readable CSV file ({error})") from None
    _check_header(path, list(text.columns))
    line = pd.Series(np.arange(len(text)) + 2, index=text.index)  # line 1 is the header
    blank = (text == "").all(axis=1)
    text, line = text[~blank], line[~blank]

    dates = pd.to_datetime(text["Date"].str.strip(), format="%Y-%m-%d", errors="coerce")
    _fail_on_unparsed(path, line, text["Date"], dates, "Date", "a YYYY-MM-DD date")
    inside = dates.between(pd.Timestamp(window.start), pd.Timestamp(window.end))
    text, dates, line = text[inside], dates[inside], line[inside]

    values, texts = {}, {}
    for field in _FIELDS:
        raw = text[field].str.strip()
        missing = raw.isin(_MISSING)
        number = pd.to_numeric(raw.mask(missing), errors="coerce")
        _fail_on_unparsed(path, line, raw.mask(missing), number, field, "a number")
        values[field.lower()] = number.astype("float64")
        texts[f"{field.lower()}_text"] = text[field]
    return pd.DataFrame(
        {
            "symbol": symbol,
            "timestamp": dates.astype("datetime64[ns]"),
            **values,
            "source_ref": f"{ref}:" + line.astype(str),
            **texts,
        }
    )


def _check_header(path: str, header: list[str]) -> None:
    names = [name.strip() for name in header]
    if names not in LAYOUTS.values():
        expected = " or ".join(",".join(columns) for columns in LAYOUTS.values())
        raise PriceFileError(f"{path}, line 1: header {','.join(names)!r} is not {expected}")


def _fail_on_unparsed(
    path: str, line: pd.Series, raw: pd.Series, parsed: pd.Series, column: str, expected: str
) -> None:
    bad = parsed.isna() & raw.notna()
    if bad.any():
        first = bad.idxmax()
        raise PriceFileError(
            f"{path}, line {line[first]}, column {column}: {raw[first]!r} is not {expected}"
        )
