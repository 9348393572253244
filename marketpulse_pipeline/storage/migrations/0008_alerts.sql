-- The alert layer: every symbol-session's calibrated signals and combined probability, and the
-- relation people act on, `alerts`, the rare sessions whose probability is within the budget.
CREATE TABLE alert_scores (
    symbol                text             NOT NULL,
    "timestamp"           date             NOT NULL,
    p_value               double precision CHECK (p_value BETWEEN 0 AND 1),
    is_alert              boolean          NOT NULL,
    market_wide           boolean          NOT NULL,
    return_pct            double precision,
    p_return              double precision,
    p_volatility_adjusted double precision,
    p_range               double precision,
    p_volume              double precision,
    p_market_relative     double precision,
    methods               text[]           NOT NULL,
    details               jsonb,
    created_at            timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, "timestamp")
);
CREATE INDEX alert_scores_alerts_idx ON alert_scores ("timestamp") WHERE is_alert;
COMMENT ON TABLE alert_scores IS
    'Per symbol and session: each signal''s tail probability against the symbol''s own past,'
    ' their harmonic-mean combination (p_value), and whether it is an alert.';

CREATE VIEW alerts AS
SELECT symbol, "timestamp", p_value, methods, market_wide, return_pct, details
  FROM alert_scores
 WHERE is_alert;
COMMENT ON VIEW alerts IS
    'The sessions to act on: combined probability within the budget, with the signals behind it.';

-- The newest alerts first, as `marketpulse alerts` and a psql user read them.
CREATE FUNCTION recent_alerts(
    p_symbol text DEFAULT NULL,
    p_days   integer DEFAULT 30,
    p_limit  integer DEFAULT 100,
    p_today  date DEFAULT current_date
) RETURNS TABLE (
    symbol text, "timestamp" date, p_value double precision, methods text[],
    market_wide boolean, return_pct double precision, details jsonb
) LANGUAGE sql STABLE AS $$
    SELECT a.symbol, a."timestamp", a.p_value, a.methods, a.market_wide, a.return_pct, a.details
      FROM alerts AS a
     WHERE a."timestamp" > p_today - p_days AND a."timestamp" <= p_today
       AND (p_symbol IS NULL OR a.symbol = p_symbol)
     ORDER BY a."timestamp" DESC, a.p_value, a.symbol
     LIMIT p_limit
$$;
