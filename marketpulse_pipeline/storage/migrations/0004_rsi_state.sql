-- Wilder's averages behind rsi_14, so a run continues the RSI recursion from the stored row
-- before its window instead of re-reading the whole history (same values, bounded reads).
ALTER TABLE price_features
    ADD COLUMN rsi_avg_gain double precision CHECK (rsi_avg_gain >= 0),
    ADD COLUMN rsi_avg_loss double precision CHECK (rsi_avg_loss >= 0);
COMMENT ON COLUMN price_features.rsi_avg_gain IS 'Wilder average gain after this session (RSI state).';
COMMENT ON COLUMN price_features.rsi_avg_loss IS 'Wilder average loss after this session (RSI state).';
