"""Deterministic, realistic daily bars with labelled anomalies: the demo and test source.

Each symbol's history is simulated session by session from a fixed epoch with its own random
stream (seed and symbol). Every session consumes the same number of draws, so a day's bar depends
only on the seed, the symbol and the days up to it — never on which range was requested — and a
day generated alone equals the same day inside a year-long range.

Model: a stochastic-volatility random walk (volatility clustering) that slowly reverts to the
symbol's price level; volume grows with the absolute return. Anomalies are planted into the
returns before the bars are built, so open/high/low/close stay consistent on every day, and each
one is reported by `injected_anomalies` as ground truth.

Splits are planted too, from a stream of their own (so they move no other number): a forward
split when the traded price is at or above the symbol's level, a reverse split when below.
The source serves history as a vendor does — split-adjusted as of its `as_of` day — so history
read before a split and read again after it differs by the ratio. `corporate_actions` reports
the splits: they are ground truth that no detector may flag.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from marketpulse_pipeline.calendar import SessionWindow, sessions_between
from marketpulse_pipeline.sources.base import (
    BAR_DTYPES,
    BAR_VALUES,
    CORPORATE_ACTION_DTYPES,
    INJECTED_DTYPES,
    PriceSource,
    conform,
)

EPOCH = dt.date(2000, 1, 3)
"""First simulated session: the state every symbol's path starts from."""

DEFAULT_SEED = 42
DEFAULT_RATE = 0.01
TRADING_DAYS_PER_YEAR = 252
VOL_PERSISTENCE = 0.97  # AR(1) coefficient of log-volatility: calm and stormy spells
VOL_OF_VOL = 0.35  # stationary standard deviation of log-volatility
PRICE_REVERSION = 0.99  # log-price pulls back to the symbol's level (half-life ~3 months)
TREND_BREAK_SESSIONS = 10
SPLIT_RATE = 1 / 1500  # a split every six years or so per symbol
SPLIT_RATIOS = (2, 3, 4, 5)
_SPLIT_STREAM = 1  # the splits' random stream, apart from the bars'

ANOMALY_KINDS = (
    "price_shock_up",
    "price_shock_down",
    "volume_spike",
    "trend_break",
    "intraday_crash",
)


@dataclass(frozen=True)
class SymbolProfile:
    """Typical price level, annualized volatility and daily share volume of a symbol."""

    price: float
    annual_volatility: float
    volume: float


PROFILES = {
    "AAPL": SymbolProfile(170.0, 0.28, 55e6),
    "GOOGL": SymbolProfile(140.0, 0.30, 25e6),
    "MSFT": SymbolProfile(370.0, 0.25, 22e6),
    "AMZN": SymbolProfile(145.0, 0.32, 40e6),
    "TSLA": SymbolProfile(240.0, 0.55, 100e6),
    "NVDA": SymbolProfile(480.0, 0.50, 45e6),
    "META": SymbolProfile(320.0, 0.38, 15e6),
    "SPY": SymbolProfile(450.0, 0.16, 75e6),
    "QQQ": SymbolProfile(380.0, 0.22, 40e6),
}


def _symbol_key(symbol: str) -> int:
    """A stable 64-bit number per symbol (Python's hash() changes between processes)."""
    return int.from_bytes(hashlib.blake2b(symbol.encode(), digest_size=8).digest(), "big")


def profile_for(symbol: str) -> SymbolProfile:
    """The seed symbols' profiles; any other symbol gets a plausible one derived from its name."""
    if symbol in PROFILES:
        return PROFILES[symbol]
    u = np.random.default_rng(_symbol_key(symbol)).random(3)
    return SymbolProfile(
        price=round(20.0 * np.exp(3.0 * u[0]), 2),
        annual_volatility=0.20 + 0.40 * u[1],
        volume=1e6 * np.exp(4.0 * u[2]),
    )


# Columns of the per-session draw matrix: every session consumes exactly one row.
(
    _Z_RETURN,
    _Z_VOLATILITY,
    _Z_GAP,
    _Z_VOLUME,
    _U_HIGH,
    _U_LOW,
    _U_EVENT,
    _U_KIND,
    _U_SIZE,
    _U_SHAPE,
) = range(10)
_DRAWS_PER_SESSION = 10


@dataclass(frozen=True)
class _Path:
    sessions: pd.DatetimeIndex
    bars: np.ndarray  # open, high, low, close, volume per session (a row each), never split
    events: pd.DataFrame  # INJECTED_DTYPES without symbol


class SyntheticSource(PriceSource):
    """Simulated bars for any symbol, reproducible from `seed`; anomalies at `anomaly_rate`,
    splits at `split_rate` (per symbol and session).

    `as_of` is the source's today: every bar is adjusted for the splits up to it, as a vendor
    serves history. Unset, a request is served as of its window's last day.
    """

    def __init__(
        self,
        seed: int = DEFAULT_SEED,
        anomaly_rate: float = DEFAULT_RATE,
        split_rate: float = SPLIT_RATE,
        as_of: dt.date | None = None,
    ) -> None:
        for name, rate in (("anomaly_rate", anomaly_rate), ("split_rate", split_rate)):
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {rate}")
        self.seed = seed
        self.anomaly_rate = anomaly_rate
        self.split_rate = split_rate
        self.as_of = as_of
        # Another seed or rate is another history: its name keeps one symbol's rows from mixing.
        changed = [
            f"{k}={v}"
            for k, v, d in (
                ("seed", seed, DEFAULT_SEED),
                ("anomaly_rate", anomaly_rate, DEFAULT_RATE),
                ("split_rate", split_rate, SPLIT_RATE),
            )
            if v != d
        ]
        self.name = f"synthetic({', '.join(changed)})" if changed else "synthetic"
        self._planted: dict[tuple[str, dt.date], pd.DataFrame] = {}
        """What `bars` simulated, kept for the `injected_anomalies` call that follows it: a
        symbol's path is simulated once, not twice (it starts in 1990, whatever the window)."""
        self._splits_served: dict[tuple[str, SessionWindow], pd.DataFrame] = {}
        """The splits `bars` adjusted for, kept for the `corporate_actions` call that follows."""

    def bars(self, symbols: Sequence[str], window: SessionWindow) -> pd.DataFrame:
        start, as_of = pd.Timestamp(window.start), self._as_of(window)
        days, values = [], []
        for symbol in symbols:
            path = self._simulate(symbol, window.end)
            self._planted[symbol, window.end] = path.events
            inside = path.sessions >= start
            sessions = path.sessions[inside]
            splits = self._splits_served[symbol, window] = self._splits(symbol, window)
            values.append(_split_adjusted(path.bars[inside], sessions, splits, as_of))
            days.append(sessions)
        frame = pd.DataFrame(
            np.concatenate(values) if values else np.empty((0, len(BAR_VALUES))),
            columns=list(BAR_VALUES),
        )
        return conform(
            frame.assign(
                symbol=np.repeat(np.asarray(symbols, dtype=object), [len(d) for d in days]),
                timestamp=np.concatenate([d.to_numpy() for d in days]) if days else [],
                source_ref=f"synthetic(seed={self.seed})",
            ),
            BAR_DTYPES,
        )

    def corporate_actions(self, symbols: Sequence[str], window: SessionWindow) -> pd.DataFrame:
        first, last = pd.Timestamp(window.start), pd.Timestamp(window.end)
        frames = []
        for symbol in symbols:
            splits = self._splits_served.pop((symbol, window), None)
            if splits is None:
                splits = self._splits(symbol, window)
            inside = splits[splits["timestamp"].between(first, last)]
            if len(inside):
                frames.append(inside.assign(symbol=symbol))
        actions = pd.concat(frames) if frames else pd.DataFrame(columns=["timestamp", "value"])
        return conform(
            actions.assign(kind="split", source_ref=f"synthetic(seed={self.seed})"),
            CORPORATE_ACTION_DTYPES,
        )

    def injected_anomalies(self, symbols: Sequence[str], window: SessionWindow) -> pd.DataFrame:
        frames = []
        for symbol in symbols:
            events = self._planted.pop((symbol, window.end), None)
            if events is None:
                events = self._simulate(symbol, window.end).events
            frames.append(
                events[events["timestamp"] >= pd.Timestamp(window.start)].assign(symbol=symbol)
            )
        return conform(pd.concat(frames) if frames else pd.DataFrame(), INJECTED_DTYPES)

    def _as_of(self, window: SessionWindow) -> dt.date:
        return self.as_of or window.end

    def _splits(self, symbol: str, window: SessionWindow) -> pd.DataFrame:
        """The symbol's splits through the later of `window`'s end and `as_of`: session and
        ratio (new shares per old share; below 1 for a reverse split)."""
        end = max(window.end, self._as_of(window))
        sessions = sessions_between(EPOCH, end)
        rng = np.random.default_rng([self.seed, _symbol_key(symbol), _SPLIT_STREAM])
        u = rng.random((len(sessions), 2))  # row i is the same whatever the length is
        days = np.flatnonzero(u[:, 0] < self.split_rate)
        ratios, level = [], 1.0
        for i in days:
            size = SPLIT_RATIOS[int(u[i, 1] * len(SPLIT_RATIOS))]
            ratio = float(size) if level <= 1.0 else 1.0 / size  # back toward the usual level
            level *= ratio
            ratios.append(ratio)
        return pd.DataFrame({"timestamp": sessions[days], "value": ratios})

    def _simulate(self, symbol: str, end: dt.date) -> _Path:
        """The symbol's path from EPOCH through `end`."""
        from scipy.signal import lfilter  # here: a second of imports real sources never need
        from scipy.special import ndtri

        if end < EPOCH:
            raise ValueError(f"the synthetic source starts on {EPOCH}; asked for days up to {end}")
        sessions = sessions_between(EPOCH, end)
        n = len(sessions)
        profile = profile_for(symbol)
        rng = np.random.default_rng([self.seed, _symbol_key(symbol)])
        u = rng.random((n, _DRAWS_PER_SESSION))  # row i is the same whatever n is
        z = ndtri(np.clip(u[:, :4], 1e-12, 1 - 1e-12))

        sigma = profile.annual_volatility / np.sqrt(TRADING_DAYS_PER_YEAR)
        log_vol = lfilter(
            [1.0],
            [1.0, -VOL_PERSISTENCE],
            VOL_OF_VOL * np.sqrt(1 - VOL_PERSISTENCE**2) * z[:, _Z_VOLATILITY],
        )
        vol = sigma * np.exp(log_vol - 0.5 * VOL_OF_VOL**2)
        gap = 0.35 * vol * z[:, _Z_GAP]
        intraday = vol * z[:, _Z_RETURN] - gap
        volume_factor = np.ones(n)
        crash_depth = np.zeros(n)

        events = np.flatnonzero(u[:, _U_EVENT] < self.anomaly_rate)
        kinds = [ANOMALY_KINDS[int(u[i, _U_KIND] * len(ANOMALY_KINDS))] for i in events]
        magnitudes, durations = [], []
        for i, kind in zip(events, kinds, strict=True):
            size, shape = u[i, _U_SIZE], u[i, _U_SHAPE]
            duration = 1
            if kind in ("price_shock_up", "price_shock_down"):
                jump = sigma * (6.0 + 4.0 * size) * (1 if kind == "price_shock_up" else -1)
                gap[i] += jump
                magnitude = np.expm1(jump) * 100
            elif kind == "volume_spike":
                magnitude = 5.0 + 5.0 * size
                volume_factor[i] *= magnitude
            elif kind == "trend_break":
                drift = sigma * (0.8 + 0.4 * size) * (1 if shape < 0.5 else -1)
                duration = TREND_BREAK_SESSIONS
                intraday[i : i + duration] += drift
                magnitude = np.expm1(drift * duration) * 100
            else:  # intraday_crash: a deep drop from the open, then a partial recovery
                depth = sigma * (5.0 + 3.0 * size)
                crash_depth[i] = depth
                intraday[i] = np.log1p(-depth * (1.0 - (0.3 + 0.4 * shape)))
                magnitude = -depth * 100
            magnitudes.append(float(magnitude))
            durations.append(duration)

        log_return = gap + intraday
        log_level = lfilter([1.0], [1.0, -PRICE_REVERSION], log_return)
        close = profile.price * np.exp(log_level)
        open_ = close * np.exp(-intraday)
        wick = 0.5 * vol
        high = np.maximum(open_, close) * np.exp(-np.log(u[:, _U_HIGH]) * wick)
        low = np.minimum(open_, close) * np.exp(np.log(u[:, _U_LOW]) * wick)
        low = np.minimum(low, open_ * (1.0 - crash_depth))
        volume = (
            profile.volume
            * np.exp(0.3 * z[:, _Z_VOLUME] - 0.045)
            * (0.5 + 0.6 * np.abs(log_return) / sigma)
            * volume_factor
        )
        bars = np.column_stack([open_, high, low, close, volume])  # BAR_VALUES' order
        return _Path(
            sessions=sessions,
            bars=bars,
            events=pd.DataFrame(
                {
                    "timestamp": sessions[events],
                    "kind": kinds,
                    "magnitude": np.round(magnitudes, 4),
                    "duration": durations,
                }
            ),
        )


def _split_adjusted(
    bars: np.ndarray, sessions: pd.DatetimeIndex, splits: pd.DataFrame, as_of: dt.date
) -> np.ndarray:
    """Bars (open, high, low, close, volume rows) as a vendor serves them on `as_of`: traded in
    cents and whole shares after the splits up to each day, then adjusted for the later splits
    up to `as_of`. Rounding is monotonic and the factors positive, so OHLC stays ordered."""
    done = np.searchsorted(splits["timestamp"].to_numpy(), sessions.to_numpy(), side="right")
    shares = np.concatenate([[1.0], np.cumprod(splits["value"].to_numpy())])
    traded = shares[done]  # shares per original share, on each day
    served = shares[np.searchsorted(splits["timestamp"].to_numpy(), np.datetime64(as_of), "right")]
    later = np.where(sessions.to_numpy() <= np.datetime64(as_of), traded / served, 1.0)
    prices = np.round(np.round(bars[:, :4] / traded[:, None], 2) * later[:, None], 6)
    volume = np.round(np.round(bars[:, 4] * traded) / later)
    return np.column_stack([prices, volume])
