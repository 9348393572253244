"""Derived price features: returns, ranges, SMA, RSI and Bollinger bands (pure pandas/numpy)."""
